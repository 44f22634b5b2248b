//! Resident memory per entry of a moka cache alone, in the configurations L1 could use:
//! what the cache structure itself costs beyond a key and a value, without the sidecar.
//!
//! `cargo run --release -p nearcache-bench --example moka_overhead [ENTRIES]` (default one
//! million entries of a 16-byte key and a 100-byte value, each stored as its own exact-size
//! allocation, as L1 stores them). Compare with the sidecar's own figure from `make bench`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::sync::Cache;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    user: u32,
    db: u32,
    key: Bytes,
}

#[derive(Clone)]
struct Value {
    _value: Bytes,
    expires_at: Instant,
}

struct Lifetime;

impl moka::Expiry<Key, Value> for Lifetime {
    fn expire_after_create(&self, _: &Key, v: &Value, _: Instant) -> Option<Duration> {
        Some(v.expires_at.saturating_duration_since(Instant::now()))
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Bytes per entry beyond the key's and the value's own lengths.
fn measure(entries: usize, per_entry_expiry: bool, closures: bool, listener: bool) -> f64 {
    let mut builder = Cache::builder()
        .max_capacity(u64::MAX)
        .weigher(|_: &Key, _: &Value| 1u32);
    builder = match per_entry_expiry {
        true => builder.expire_after(Lifetime),
        false => builder.time_to_live(Duration::from_secs(3600)),
    };
    if closures {
        builder = builder.support_invalidation_closures();
    }
    if listener {
        builder = builder.eviction_listener(|_, _, _| {});
    }
    let cache: Cache<Key, Value> = builder.build();
    let expires_at = Instant::now() + Duration::from_secs(3600);
    let before = rss();
    for i in 0..entries {
        let key = Bytes::copy_from_slice(format!("key:{i:012}").as_bytes());
        let value = Bytes::copy_from_slice(&[b'x'; 100]);
        let v = Value {
            _value: value,
            expires_at,
        };
        cache.insert(
            Key {
                user: 0,
                db: 0,
                key,
            },
            v,
        );
    }
    cache.run_pending_tasks();
    let grown = rss().saturating_sub(before) as f64 / entries as f64;
    grown - 116.0
}

const CONFIGS: [(&str, bool, bool, bool); 4] = [
    (
        "as L1 uses it (per-entry expiry, invalidation closures, listener)",
        true,
        true,
        true,
    ),
    ("without invalidation closures", true, false, true),
    ("without per-entry expiry", false, true, true),
    (
        "leanest (one TTL, no closures, no listener)",
        false,
        false,
        false,
    ),
];

/// Each configuration is measured in a process of its own: memory freed by one cache would
/// be reused by the next without growing the resident set.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(i) = args.get(2).and_then(|i| i.parse::<usize>().ok()) {
        let (name, expiry, closures, listener) = CONFIGS[i];
        let beyond = measure(entries, expiry, closures, listener);
        println!("moka alone, {name}: {beyond:.0} B per entry beyond key and value");
        return;
    }
    let me = std::env::current_exe().expect("own path");
    for i in 0..CONFIGS.len() {
        let status = std::process::Command::new(&me)
            .args([entries.to_string(), i.to_string()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("moka_overhead: configuration {i} failed");
            std::process::exit(1);
        }
    }
}
