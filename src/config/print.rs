//! `--print-config`: the effective configuration as a TOML file `--config` accepts back.
//!
//! Each option is written as the text it was picked from (flag, env, file or default), so
//! feeding the output back picks the same texts and prints the same file; a secret is
//! written as its redacted form (which is still a valid value); an unset option is left out.
//! The file's `[warm]` and `[[namespace]]` tables follow as they were given.

use std::fmt::Write;

use super::Printable;

/// The TOML text of `printable`.
pub(super) fn render(printable: &Printable) -> String {
    let mut out = String::from("# nearcache --print-config: the effective configuration\n");
    for (spec, text) in &printable.picked {
        let _ = writeln!(out, "{} = {}", spec.key, string(&spec.shown(text)));
    }
    if let Some(toml::Value::Table(warm)) = &printable.warm {
        out.push_str("\n[warm]\n");
        table_body(&mut out, warm);
    }
    for namespace in printable.namespace.iter().flatten() {
        if let toml::Value::Table(t) = namespace {
            out.push_str("\n[[namespace]]\n");
            table_body(&mut out, t);
        }
    }
    out
}

/// `key = value` lines; nested tables are written inline.
fn table_body(out: &mut String, table: &toml::Table) {
    for (key, value) in table {
        let _ = writeln!(out, "{} = {}", key_text(key), inline(value));
    }
}

/// A value in TOML's inline syntax.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => string(s),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) if f.is_nan() => "nan".to_owned(),
        toml::Value::Float(f) if f.is_infinite() => match f.is_sign_positive() {
            true => "inf".to_owned(),
            false => "-inf".to_owned(),
        },
        // `{:?}` keeps a `.0` on whole numbers, so a float stays a float.
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", key_text(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// A key: bare when TOML allows it, else quoted.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    match bare {
        true => key.to_owned(),
        false => string(key),
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
