//! The `[warm]` table of the config file: what a starting sidecar loads into L1 before
//! (or while) it serves, and within which bounds.

use std::time::Duration;

use super::namespace_tables::scalar_text;
use super::parse;
use crate::glob;

/// Default `[warm] max_keys`.
pub const DEFAULT_WARM_MAX_KEYS: u64 = 100_000;
/// Default `[warm] rate`: keys fetched per second.
pub const DEFAULT_WARM_RATE: u64 = 10_000;
/// Default `[warm] batch`: keys per SCAN COUNT and per MGET.
pub const DEFAULT_WARM_BATCH: usize = 100;
/// Default `[warm] peer_keys`: hottest keys asked of the running sidecars.
pub const DEFAULT_WARM_PEER_KEYS: usize = 1024;
/// Default `[warm] peer_wait`: how long a starting sidecar collects its peers' answers.
pub const DEFAULT_WARM_PEER_WAIT: Duration = Duration::from_millis(500);
/// Largest `[warm] batch`.
pub const MAX_WARM_BATCH: usize = 10_000;
/// Largest `[warm] peer_keys`.
pub const MAX_WARM_PEER_KEYS: usize = 16_384;

/// `[warm]`: pattern warming at start, peer warming, re-warming after a link-loss flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmConfig {
    /// Redis globs scanned (`SCAN MATCH`) and loaded at start, in order.
    pub patterns: Vec<String>,
    /// Most keys one warming loads.
    pub max_keys: u64,
    /// Most bytes (keys + values) one warming loads; default: half of `--l1-max-bytes`.
    pub max_bytes: u64,
    /// Most keys fetched from the upstream per second.
    pub rate: u64,
    /// Keys per `SCAN ... COUNT` and per `MGET`.
    pub batch: usize,
    /// `/readyz` answers 503 until the start-up warming is over.
    pub warm_before_ready: bool,
    /// Ask the running sidecars for their hottest keys at start.
    pub from_peers: bool,
    /// Hottest keys asked of the peers, and answered to a peer that asks.
    pub peer_keys: usize,
    /// How long to collect the peers' answers.
    pub peer_wait: Duration,
    /// After L1 was flushed because the upstream or invalidation link was lost, fetch the
    /// keys that were hot before once the link is back.
    pub rewarm: bool,
}

impl WarmConfig {
    /// No start-up pattern warming; peers are asked and a flush is re-warmed.
    pub fn defaults(l1_max_bytes: u64) -> WarmConfig {
        WarmConfig {
            patterns: Vec::new(),
            max_keys: DEFAULT_WARM_MAX_KEYS,
            max_bytes: l1_max_bytes / 2,
            rate: DEFAULT_WARM_RATE,
            batch: DEFAULT_WARM_BATCH,
            warm_before_ready: false,
            from_peers: true,
            peer_keys: DEFAULT_WARM_PEER_KEYS,
            peer_wait: DEFAULT_WARM_PEER_WAIT,
            rewarm: true,
        }
    }
}

/// Parses the `[warm]` table over the defaults; problems are pushed as `[warm] key: ...`.
pub(super) fn parse(
    value: Option<&toml::Value>,
    l1_max_bytes: u64,
    problems: &mut Vec<String>,
) -> WarmConfig {
    let mut warm = WarmConfig::defaults(l1_max_bytes);
    let Some(value) = value else {
        return warm;
    };
    let Some(table) = value.as_table() else {
        problems.push("[warm]: not a table".to_owned());
        return warm;
    };
    for (key, value) in table {
        if key == "patterns" {
            match patterns(value) {
                Ok(p) => warm.patterns = p,
                Err(e) => problems.push(format!("[warm] patterns: {e}")),
            }
            continue;
        }
        let Some(text) = scalar_text(value) else {
            problems.push(format!(
                "[warm] {key}: expected a string, number or boolean"
            ));
            continue;
        };
        let result = match key.as_str() {
            "max_keys" => parse::count(&text).map(|v| warm.max_keys = v as u64),
            "max_bytes" => parse::positive_size(&text).map(|v| warm.max_bytes = v as u64),
            "rate" => parse::count(&text).map(|v| warm.rate = v as u64),
            "batch" => parse::count(&text).and_then(|v| match v {
                v if v > MAX_WARM_BATCH => Err(format!("at most {MAX_WARM_BATCH}, got {v}")),
                v => {
                    warm.batch = v;
                    Ok(())
                }
            }),
            "warm_before_ready" => parse::boolean(&text).map(|v| warm.warm_before_ready = v),
            "from_peers" => parse::boolean(&text).map(|v| warm.from_peers = v),
            "peer_keys" => parse::count(&text).and_then(|v| match v {
                v if v > MAX_WARM_PEER_KEYS => {
                    Err(format!("at most {MAX_WARM_PEER_KEYS}, got {v}"))
                }
                v => {
                    warm.peer_keys = v;
                    Ok(())
                }
            }),
            "peer_wait" => parse::positive_duration(&text).map(|v| warm.peer_wait = v),
            "rewarm" => parse::boolean(&text).map(|v| warm.rewarm = v),
            _ => Err(
                "unknown key (use patterns, max_keys, max_bytes, rate, batch, \
                 warm_before_ready, from_peers, peer_keys, peer_wait, rewarm)"
                    .to_owned(),
            ),
        };
        if let Err(e) = result {
            problems.push(format!("[warm] {key}: {e}"));
        }
    }
    warm
}

/// `patterns = ["flag:*", ...]`: non-empty, well-formed globs.
fn patterns(value: &toml::Value) -> Result<Vec<String>, String> {
    let Some(items) = value.as_array() else {
        return Err("expected an array of strings".to_owned());
    };
    items
        .iter()
        .map(|item| {
            let p = item.as_str().ok_or("expected an array of strings")?;
            match glob::problem(p.as_bytes()) {
                Some(why) => Err(format!("bad pattern {p:?}: {why}")),
                None => Ok(p.to_owned()),
            }
        })
        .collect()
}
