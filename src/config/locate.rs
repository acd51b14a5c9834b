//! Names the key a TOML deserialisation error is about. serde reports an unknown or missing
//! field, or a value of the wrong type, with a byte span and a message but no key path; this
//! walks the document's spanned tree to the innermost key at that span and spells its path
//! as the rest of the config errors do (`network[1].vni`, `service[0].check.type`).

use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The key path a deserialisation error at `span` with `message` refers to, or `None` when
/// the text is not even TOML (the parser's own error then says what is wrong).
pub(super) fn key_of_error(text: &str, span: Range<usize>, message: &str) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = String::new();
    // An empty span (a missing top-level table) is about the document itself.
    if !span.is_empty() {
        descend_table(doc.get_ref(), span.start, &mut path);
    }
    // An unknown or missing field is reported at its table; name the field itself.
    if let Some(field) = quoted_field(message, "unknown field") {
        if !path.ends_with(&format!(".{field}")) && path != field {
            push_key(&mut path, &field);
        }
    } else if let Some(field) = quoted_field(message, "missing field") {
        push_key(&mut path, &field);
    }
    (!path.is_empty()).then_some(path)
}

/// The name in ``unknown field `colour`, expected …``.
fn quoted_field(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn descend_table(table: &DeTable<'_>, at: usize, path: &mut String) {
    for (key, value) in table.iter() {
        if contains(key.span(), at) {
            push_key(path, key.get_ref());
            return;
        }
        if contains(value.span(), at) || holds(value, at) {
            push_key(path, key.get_ref());
            descend_value(value, at, path);
            return;
        }
    }
}

fn descend_value(value: &Spanned<DeValue<'_>>, at: usize, path: &mut String) {
    match value.get_ref() {
        DeValue::Table(t) => descend_table(t, at, path),
        DeValue::Array(items) => {
            if let Some((i, item)) =
                items.iter().enumerate().find(|(_, item)| contains(item.span(), at) || holds(item, at))
            {
                path.push_str(&format!("[{i}]"));
                descend_value(item, at, path);
            }
        }
        _ => {}
    }
}

/// Whether a table's entries (which a `[header]` table's own span may not cover) reach `at`.
fn holds(value: &Spanned<DeValue<'_>>, at: usize) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => {
            t.iter().any(|(k, v)| contains(k.span(), at) || contains(v.span(), at) || holds(v, at))
        }
        DeValue::Array(items) => items.iter().any(|item| contains(item.span(), at) || holds(item, at)),
        _ => false,
    }
}

fn contains(span: Range<usize>, at: usize) -> bool {
    span.start <= at && at < span.end.max(span.start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str, at: &str, message: &str) -> Option<String> {
        let start = text.find(at).expect("marker in text");
        key_of_error(text, start..start + at.len(), message)
    }

    #[test]
    fn names_unknown_missing_and_mistyped_keys() {
        let t = "[node]\nname = \"a\"\n\n[underlay]\ncolour = 1\n";
        assert_eq!(
            key(t, "colour", "unknown field `colour`, expected `listen`").as_deref(),
            Some("underlay.colour")
        );
        let t = "bogus = 1\n[node]\nname = \"a\"\n";
        assert_eq!(key(t, "bogus", "unknown field `bogus`, expected `node`").as_deref(), Some("bogus"));
        let t = "[node]\nname = \"a\"\n[[network]]\nname = \"x\"\n[[network]]\nname = \"y\"\nvni = \"q\"\n";
        assert_eq!(
            key(t, "\"q\"", "invalid type: string \"q\", expected u32").as_deref(),
            Some("network[1].vni")
        );
        let t = "[node]\nname = \"a\"\n[[service]]\nname = \"x\"\ncheck = { type = \"tcp\", bogus = 2 }\n";
        assert_eq!(
            key(t, "bogus", "unknown field `bogus`, expected `type`").as_deref(),
            Some("service[0].check.bogus")
        );
        // A missing field is reported at its table's header (or an inline table's braces).
        let t = "[node]\nname = \"a\"\n[[network]]\nname = \"x\"\n[[network]]\nvni = 3\n";
        let second = t.rfind("[[network]]").unwrap();
        assert_eq!(
            key_of_error(t, second..second + 11, "missing field `name`").as_deref(),
            Some("network[1].name")
        );
        let t = "[node]\nname = \"a\"\n[[service]]\nname = \"x\"\ncheck = { }\n";
        assert_eq!(key(t, "{ }", "missing field `type`").as_deref(), Some("service[0].check.type"));
        // A missing top-level table has an empty span at the start of the file.
        assert_eq!(key_of_error("[underlay]\n", 0..0, "missing field `node`").as_deref(), Some("node"));
        assert_eq!(key_of_error("[node\n", 0..1, "invalid table header"), None);
    }
}
