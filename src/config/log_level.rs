//! `node.log_level`: the subset of `tracing_subscriber::EnvFilter` syntax weft accepts, checked
//! at load. EnvFilter itself takes any word as a target name, so `"warning"` or `"verbose"`
//! would silently mean "trace events of a module called warning" and the daemon would log
//! nothing at all; here only levels and `target=level` directives pass.

/// The levels, lowest verbosity first.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: a level, or comma-separated directives that are each a level or
/// `target=level` (`info,weft::membership=debug`). The error says what to write instead.
pub fn check(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!("empty; expected a level ({})", LEVELS.join(", ")));
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(target) = target {
            let ok =
                !target.is_empty() && target.chars().all(|c| c.is_ascii_alphanumeric() || "_:-.".contains(c));
            if !ok {
                return Err(format!(
                    "{directive:?}: a target is a module path such as weft::membership; expected \
                     target=level"
                ));
            }
        }
        if !is_level(level) {
            let hint = match suggestion(level) {
                Some(s) => format!("; did you mean {s:?}?"),
                None => String::new(),
            };
            return Err(format!(
                "{level:?} is not a log level: expected one of {}, or comma-separated \
                 target=level directives such as \"info,weft::membership=debug\"{hint}",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// The level people usually mean by a word from another logger.
fn suggestion(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        "warning" | "warnings" => "warn",
        "err" | "critical" | "crit" | "fatal" | "panic" => "error",
        "information" | "notice" | "normal" => "info",
        "verbose" | "debugging" => "debug",
        "all" | "everything" => "trace",
        "none" | "quiet" | "silent" => "off",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn levels_and_directives_pass() {
        for ok in ["info", "WARN", "off", "trace", "info,weft::membership=debug", "warn, hickory_server=off"]
        {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn words_envfilter_would_take_as_targets_are_refused() {
        let e = check("warning").unwrap_err();
        assert!(e.contains("\"warning\" is not a log level") && e.contains("did you mean \"warn\""), "{e}");
        assert!(check("verbose").unwrap_err().contains("\"debug\""));
        assert!(check("info,weft=loud").unwrap_err().contains("\"loud\""));
        assert!(check("info,=debug").unwrap_err().contains("target=level"));
        assert!(check("weft[conn]=debug").unwrap_err().contains("target"));
        assert!(check("").is_err());
        assert!(check("info,").is_err());
    }
}
