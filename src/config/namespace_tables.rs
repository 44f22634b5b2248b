//! `[[namespace]]` tables of the config file: per-key-pattern cache policies, first match
//! wins. Each table is checked key by key, so every problem names its namespace.

use std::time::Duration;

use super::parse;
use crate::glob;

/// Most namespaces: each is a label value in the metrics, which must stay bounded.
pub const MAX_NAMESPACES: usize = 64;
/// Longest namespace name.
pub const MAX_NAME_LEN: usize = 64;
/// The label of keys that match no namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One `[[namespace]]` table. Options left out take the global value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// The label in metrics, INFO and `NEARCACHE NAMESPACES`.
    pub name: String,
    /// Redis glob the key must match.
    pub pattern: String,
    /// `false`: keys bypass L1 (forwarded, nothing filled).
    pub cache: bool,
    /// Longest L1 lifetime of its entries (`--l1-ttl` when absent).
    pub l1_ttl: Option<Duration>,
    /// Cache its missing keys as nil (`--l1-cache-nil` when absent).
    pub cache_nil: Option<bool>,
    /// Compress its values from this size (`--l1-compress-min-bytes` when absent).
    pub compress_min_bytes: Option<usize>,
    /// Its own share of `--l1-max-bytes`: its entries cannot evict the others' (and
    /// theirs cannot evict its own). Absent: it shares the rest of L1.
    pub max_bytes: Option<u64>,
}

/// The text of a TOML scalar (the flags' parsers read text), or `None` for a table or array.
pub(super) fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `name` may be a label value: letters, digits, `_`, `-`, `.`, at most
/// [`MAX_NAME_LEN`] bytes.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(format!("name must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Some("name may hold only letters, digits, '_', '-' and '.'".to_owned());
    }
    if name == DEFAULT_NAMESPACE {
        return Some(format!(
            "name {DEFAULT_NAMESPACE:?} is the label of keys no namespace matches"
        ));
    }
    None
}

/// Parses the `[[namespace]]` array; problems are pushed, each naming the namespace
/// (`namespace "flags": ...`, or `namespace #2` before its name is known).
pub(super) fn parse_all(
    tables: &[toml::Value],
    l1_max_bytes: u64,
    problems: &mut Vec<String>,
) -> Vec<NamespaceConfig> {
    if tables.len() > MAX_NAMESPACES {
        problems.push(format!(
            "[[namespace]]: {} namespaces, at most {MAX_NAMESPACES}",
            tables.len()
        ));
        return Vec::new();
    }
    let mut out: Vec<NamespaceConfig> = Vec::new();
    for (i, value) in tables.iter().enumerate() {
        let Some(ns) = parse_one(i + 1, value, problems) else {
            continue;
        };
        if let Some(first) = out.iter().position(|o| o.name == ns.name) {
            problems.push(format!(
                "namespace {:?}: duplicate name (namespace #{} has it too)",
                ns.name,
                first + 1
            ));
            continue;
        }
        out.push(ns);
    }
    let shares: u64 = out.iter().filter_map(|n| n.max_bytes).sum();
    if shares > l1_max_bytes {
        problems.push(format!(
            "[[namespace]]: max_bytes add up to {shares} bytes, more than --l1-max-bytes ({l1_max_bytes})"
        ));
    }
    out
}

/// One table, or `None` when it has problems (all of them pushed).
fn parse_one(
    number: usize,
    value: &toml::Value,
    problems: &mut Vec<String>,
) -> Option<NamespaceConfig> {
    let Some(table) = value.as_table() else {
        problems.push(format!("namespace #{number}: not a table"));
        return None;
    };
    let name = table.get("name").and_then(|v| v.as_str());
    let label = match name {
        Some(name) => format!("namespace {name:?}"),
        None => format!("namespace #{number}"),
    };
    let before = problems.len();
    let mut problem = |what: String| problems.push(format!("{label}: {what}"));
    if let Some(p) = name.and_then(name_problem) {
        problem(p);
    }
    if name.is_none() {
        problem("missing name (a string)".to_owned());
    }
    let pattern = table.get("pattern").and_then(|v| v.as_str());
    match pattern {
        None => problem("missing pattern (a Redis glob string)".to_owned()),
        Some(p) => {
            if let Some(why) = glob::problem(p.as_bytes()) {
                problem(format!("bad pattern {p:?}: {why}"));
            }
        }
    }
    let mut ns = NamespaceConfig {
        name: name.unwrap_or_default().to_owned(),
        pattern: pattern.unwrap_or_default().to_owned(),
        cache: true,
        l1_ttl: None,
        cache_nil: None,
        compress_min_bytes: None,
        max_bytes: None,
    };
    for (key, value) in table {
        let Some(text) = scalar_text(value) else {
            problem(format!("{key}: expected a string, number or boolean"));
            continue;
        };
        let result = match key.as_str() {
            "name" | "pattern" if value.is_str() => Ok(()),
            "name" | "pattern" => Err("expected a string".to_owned()),
            "cache" => parse::boolean(&text).map(|v| ns.cache = v),
            "l1_ttl" => parse::duration(&text).map(|v| ns.l1_ttl = Some(v)),
            "cache_nil" => parse::boolean(&text).map(|v| ns.cache_nil = Some(v)),
            "compress_min_bytes" => {
                parse::positive_size(&text).map(|v| ns.compress_min_bytes = Some(v))
            }
            "max_bytes" => parse::size(&text).and_then(|v| match v {
                0 => Err(format!("must be at least 1, got {text:?}")),
                v => {
                    ns.max_bytes = Some(v);
                    Ok(())
                }
            }),
            _ => Err(
                "unknown key (use name, pattern, cache, l1_ttl, cache_nil, compress_min_bytes, max_bytes)"
                    .to_owned(),
            ),
        };
        if let Err(e) = result {
            problem(format!("{key}: {e}"));
        }
    }
    (problems.len() == before).then_some(ns)
}
