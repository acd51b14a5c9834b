//! Binary tests for the shell completions and man pages (`weft completions`, `weft man`):
//! they run the built `weft` and compare what it prints with the clap model in `weft::cli`
//! and the configuration file types, so a new subcommand or configuration key shows up
//! everywhere or a test names the one it missed. weft(8) and weft.toml(5) are hand-written
//! (docs/man/): weft(8) must describe every subcommand under COMMANDS, and weft.toml(5) must
//! have an entry for every key of src/config/file.rs and src/policy/file.rs in its table's
//! section.
//!
//! If `man` is installed, every page must also render with `man --warnings -l` and print no
//! warning; without it that check is skipped with a note on stderr (install `man-db`).

mod common;

use common::TempDir;

use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;
use weft::cli::Cli;

fn weft(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("spawn weft");
    assert!(
        out.status.success(),
        "weft {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(weft(args).stdout).expect("utf-8 output")
}

/// Names of the subcommands `weft --help` shows.
fn visible_subcommands() -> Vec<String> {
    let cmd = Cli::command();
    let names: Vec<String> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_owned()).collect();
    for expected in ["run", "check-config", "keygen", "ca", "cert", "attach", "detach", "status"] {
        assert!(names.iter().any(|n| n == expected), "clap model lost `{expected}`: {names:?}");
    }
    names
}

/// `man --warnings -l` must render `page` and say nothing on stderr; `false` if no `man`.
fn man_renders_cleanly(page: &Path) -> bool {
    let out = match Command::new("man").arg("--warnings").arg("-l").arg(page).env("MANWIDTH", "80").output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => panic!("spawn man: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {}: {}\n{stderr}",
        page.display(),
        out.status
    );
    assert!(!out.stdout.is_empty(), "man -l {} rendered nothing", page.display());
    true
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let script = stdout(&["completions", "bash"]);
    assert!(script.contains("complete -F"), "not a bash completion script:\n{script}");
    for name in visible_subcommands() {
        assert!(script.contains(&name), "bash completion lacks `{name}`");
    }
    // Nested subcommands and options are completed too.
    for word in ["init", "sign", "show", "--netns", "--config"] {
        assert!(script.contains(word), "bash completion lacks `{word}`");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let zsh = stdout(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef weft"), "zsh script must start with #compdef:\n{zsh}");
    let fish = stdout(&["completions", "fish"]);
    assert!(fish.contains("complete -c weft"), "not a fish completion script:\n{fish}");
    for name in visible_subcommands() {
        assert!(zsh.contains(&name), "zsh completion lacks `{name}`");
        assert!(fish.contains(&name), "fish completion lacks `{name}`");
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["completions", "powershell"])
        .output()
        .expect("spawn weft");
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn generators_stay_out_of_the_main_help() {
    let help = stdout(&["--help"]);
    assert!(help.contains("attach"), "{help}");
    for hidden in ["completions ", "man "] {
        let listed = help.lines().any(|l| l.trim_start().starts_with(hidden));
        assert!(!listed, "`{hidden}` should be hidden from weft --help:\n{help}");
    }
    // ...but each documents itself.
    assert!(stdout(&["completions", "--help"]).contains("bash"));
    assert!(stdout(&["man", "--help"]).contains("--dir"));
}

/// The lines of `page` between `.SH heading` and the next `.SH`.
fn section<'a>(page: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = page.lines().skip_while(|l| {
        l.trim_matches('"') != format!(".SH {heading}") && *l != format!(".SH \"{heading}\"")
    });
    assert!(lines.next().is_some(), "no `.SH {heading}` section");
    lines.take_while(|l| !l.starts_with(".SH ")).collect()
}

/// The tag lines of a section: each line right after a `.TP`.
fn tags<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines.windows(2).filter(|w| w[0] == ".TP").map(|w| w[1]).collect()
}

#[test]
fn weft_8_is_a_page_for_the_daemon_describing_every_command() {
    let page = stdout(&["man"]);
    let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap_or_else(|| panic!("no .TH line:\n{page}"));
    assert!(th.starts_with(".TH WEFT 8 "), "title should be weft(8): {th}");
    assert!(th.contains(env!("CARGO_PKG_VERSION")), "title should carry the version: {th}");
    assert!(!page.contains("@VERSION@"), "the version placeholder is filled in");
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "FILES",
        "ENVIRONMENT",
        "SIGNALS",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        section(&page, heading);
    }
    // Every visible subcommand has a tag in COMMANDS (roff escapes '-' as '\-'), and its
    // subcommands are named in a tag of it (`ca init`, `service add|rm|list`).
    let commands = tags(&section(&page, "COMMANDS"));
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().replace('-', "\\-");
        let own: Vec<&&str> = commands
            .iter()
            .filter(|t| {
                t.strip_prefix(".B ")
                    .and_then(|r| r.strip_prefix(&name))
                    .is_some_and(|r| r.is_empty() || r.starts_with(' '))
            })
            .collect();
        assert!(
            !own.is_empty(),
            "weft(8) COMMANDS has no `.TP` entry for `{}`: {commands:?}",
            sub.get_name()
        );
        for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                own.iter().any(|t| t.contains(nested.get_name())),
                "weft(8) COMMANDS does not name `{} {}`",
                sub.get_name(),
                nested.get_name()
            );
        }
    }
    let environment = section(&page, "ENVIRONMENT").join("\n");
    for var in ["WEFT_SOCKET", "RUST_LOG"] {
        assert!(environment.contains(var), "ENVIRONMENT lacks {var}");
    }
    let signals = section(&page, "SIGNALS").join("\n");
    for sig in ["SIGTERM", "SIGINT", "SIGHUP"] {
        assert!(signals.contains(sig), "SIGNALS lacks {sig}");
    }
    assert!(section(&page, "SEE ALSO").join(" ").contains("weft.toml (5)"), "SEE ALSO names weft.toml(5)");
    assert!(!page.contains("weft\\-help"), "there is no weft-help(8) to refer to");

    let dir = TempDir::new("cli-gen", "stdout");
    let file = dir.0.join("weft.8");
    std::fs::write(&file, &page).expect("write weft.8");
    if !man_renders_cleanly(&file) {
        eprintln!("skipping the `man -l` rendering check: `man` is not installed (apt-get install man-db)");
    }
}

/// `(struct name, keys)` of every `#[derive(... Deserialize ...)]` struct in `source`: its
/// `pub` fields, renamed by `#[serde(... rename = "x")]` where given.
fn file_type_keys(source: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut deserialize = false;
    let mut current: Option<(String, Vec<String>)> = None;
    let mut rename: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[derive(") {
            deserialize = line.contains("Deserialize");
        } else if let Some(rest) =
            line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("pub(super) struct "))
        {
            let name = rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or_default();
            if deserialize && rest.trim_end().ends_with('{') {
                current = Some((name.to_owned(), Vec::new()));
            }
            deserialize = false;
        } else if line == "}" {
            out.extend(current.take());
        } else if let Some((_, keys)) = current.as_mut() {
            if line.starts_with("#[serde(") {
                rename =
                    line.split("rename = \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
            } else if let Some(field) = line.strip_prefix("pub ") {
                let field = field.split(':').next().unwrap_or_default().trim();
                keys.push(rename.take().unwrap_or_else(|| field.to_owned()));
            }
        }
    }
    out
}

#[test]
fn weft_toml_5_documents_every_key_of_the_file_types() {
    let dir = TempDir::new("cli-gen", "toml5");
    weft(&["man", "--dir", dir.0.to_str().expect("utf-8 temp path")]);
    let page = std::fs::read_to_string(dir.0.join("weft.toml.5")).expect("weft man --dir writes weft.toml.5");
    let th = page.lines().find(|l| l.starts_with(".TH ")).expect(".TH line");
    assert!(th.starts_with(".TH WEFT.TOML 5 ") && th.contains(env!("CARGO_PKG_VERSION")), "{th}");
    // Where each file type's keys are documented; a new type must be added here and there.
    let sections = [
        ("NodeFile", "[node]"),
        ("UnderlayFile", "[underlay]"),
        ("NetworkFile", "[[network]]"),
        ("PeerFile", "[[peer]]"),
        ("MembershipFile", "[membership]"),
        ("MetricsFile", "[metrics]"),
        ("DnsFile", "[dns]"),
        ("RelayFile", "[relay]"),
        ("DockerFile", "[docker]"),
        ("ServiceFile", "[[service]]"),
        ("CheckFile", "HEALTH CHECKS"),
        ("PolicyFile", "[network.policy]"),
        ("RuleFile", "[[network.policy.rule]]"),
        ("SelectorTable", "SELECTORS"),
    ];
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for file in ["src/config/file.rs", "src/policy/file.rs"] {
        let source = std::fs::read_to_string(format!("{root}/{file}")).expect("read file types");
        let types = file_type_keys(&source);
        assert!(!types.is_empty(), "no Deserialize structs found in {file}");
        for (name, keys) in types {
            if name == "File" {
                // The top level: every table has its own section.
                for key in keys {
                    let found = [format!("[{key}]"), format!("[[{key}]]")]
                        .iter()
                        .any(|h| page.lines().any(|l| l == format!(".SH \"{h}\"")));
                    assert!(found, "weft.toml(5) has no section for the [{key}] table");
                    checked += 1;
                }
                continue;
            }
            let heading = sections
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| {
                    panic!("{file}: {name} is new: document its keys in weft.toml(5) and map it here")
                })
                .1;
            let documented = tags(&section(&page, heading));
            for key in keys {
                let entry = format!("\\fB{key}\\fR");
                assert!(
                    documented.iter().any(|t| t.starts_with(&entry)),
                    "weft.toml(5) section {heading} lacks an entry for `{key}` ({name} in {file})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} keys found: is the file-type parser still right?");
    if !man_renders_cleanly(&dir.0.join("weft.toml.5")) {
        eprintln!("skipping the `man -l` rendering check: `man` is not installed (apt-get install man-db)");
    }
}

#[test]
fn file_type_parser_reads_fields_and_renames() {
    let src = "#[derive(Debug, Deserialize)]\n#[serde(deny_unknown_fields)]\npub(super) struct AFile {\n    pub x: u8,\n    \
               #[serde(default, rename = \"network\")]\n    pub networks: Vec<N>,\n}\n\n#[derive(Debug)]\npub struct Not {\n    pub y: u8,\n}\n";
    assert_eq!(file_type_keys(src), vec![("AFile".to_owned(), vec!["x".to_owned(), "network".to_owned()])]);
}

#[test]
fn man_dir_writes_a_page_for_every_referenced_subcommand() {
    let dir = TempDir::new("cli-gen", "dir");
    weft(&["man", "--dir", dir.0.to_str().expect("utf-8 temp path")]);
    let mut files: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("read man dir")
        .map(|e| e.expect("dir entry").file_name().into_string().expect("utf-8 name"))
        .collect();
    files.sort();

    let mut expected = vec!["weft.8".to_owned(), "weft.toml.5".to_owned()];
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        expected.push(format!("weft-{}.8", sub.get_name()));
        for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            expected.push(format!("weft-{}-{}.8", sub.get_name(), nested.get_name()));
        }
    }
    expected.sort();
    assert_eq!(
        files, expected,
        "weft(8), weft.toml(5) and one page per visible (sub)subcommand, nothing else"
    );

    // weft.8 in the directory is the page `weft man` prints.
    let main = std::fs::read_to_string(dir.0.join("weft.8")).expect("read weft.8");
    assert_eq!(main, stdout(&["man"]));
    let sign = std::fs::read_to_string(dir.0.join("weft-ca-sign.8")).expect("read weft-ca-sign.8");
    assert!(sign.contains(".TH weft\\-ca\\-sign 8 ") || sign.contains(".TH weft-ca-sign 8 "), "{sign}");
    assert!(sign.contains("\\-\\-public\\-key\\-file"), "options are documented:\n{sign}");
    // A command page with subcommands refers to their pages in section 8.
    let ca = std::fs::read_to_string(dir.0.join("weft-ca.8")).expect("read weft-ca.8");
    assert!(ca.contains("weft\\-ca\\-sign(8)"), "{ca}");

    let mut rendered = true;
    for file in &files {
        rendered &= man_renders_cleanly(&dir.0.join(file));
    }
    if !rendered {
        eprintln!("skipping the `man -l` rendering check: `man` is not installed (apt-get install man-db)");
    }
}

#[test]
fn man_dir_that_does_not_exist_is_an_error() {
    let dir = TempDir::new("cli-gen", "missing");
    let missing = dir.0.join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["man", "--dir"])
        .arg(&missing)
        .output()
        .expect("spawn weft");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writing man pages into") && stderr.contains("nope"), "{stderr}");
}
