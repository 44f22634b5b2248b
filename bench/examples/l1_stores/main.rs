//! The L1 store candidates side by side, in one run: bytes per entry beyond key and value,
//! insert and lookup cost (one and two threads), and the hit ratio at one byte bound on three
//! traces (Zipf 0.99 over ten times more keys than fit, the same with 20% sequential
//! one-time keys, and Zipf whose ranks rotate). The measurement L1's store was chosen on;
//! candidate (e) is the store the sidecar now runs.
//!
//! `cargo run --release -p nearcache-bench --example l1_stores [MIB]` (default a 64 MiB
//! bound; entries of 16-byte keys with 100-byte and with 1 KiB values). Each candidate and
//! value size runs in a process of its own (memory freed by one store would be reused by the
//! next without growing the resident set); the tables are markdown.
//!
//! Two bounds for the hit ratio: by payload (every entry weighs its key and value lengths:
//! all stores hold the same number of entries, so the column compares eviction policies) and
//! by memory (every entry also weighs the store's bytes per entry measured in the same
//! process: what the store holds in that many bytes of RAM).

mod clock;
mod segments;
mod stores;
mod traces;

use std::hint::black_box;
use std::time::Instant;

use traces::{key, Traces};

/// Value sizes measured.
const VALUES: [usize; 2] = [100, 1024];
/// Lookups timed per thread.
const LOOKUPS: usize = 2_000_000;
/// Trace length in entries that fit, and the share of it that warms the store uncounted.
const TRACE_FITS: u64 = 6;
const WARM_SHARE: usize = 3;

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(64);
    if let (Some(which), Some(value)) = (args.get(2), args.get(3)) {
        let (which, value) = (
            which.parse().expect("candidate"),
            value.parse().expect("size"),
        );
        child(mib << 20, which, value);
        return;
    }
    let me = std::env::current_exe().expect("own path");
    let (mut costs, mut hits) = (Vec::new(), Vec::new());
    for value in VALUES {
        for which in 0..stores::NAMES.len() {
            let out = std::process::Command::new(&me)
                .args([mib.to_string(), which.to_string(), value.to_string()])
                .output()
                .expect("run a candidate");
            if !out.status.success() {
                eprintln!("l1_stores: candidate {which}, {value} B values failed");
                std::process::exit(1);
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                match line.split_at(1) {
                    ("M", row) => costs.push(row.to_owned()),
                    ("H", row) => hits.push(row.to_owned()),
                    _ => {}
                }
            }
        }
    }
    println!("Bound {mib} MiB; 16-byte keys. Bytes beyond key and value: resident-set growth");
    println!("per entry filled to the bound (allocator rounding included) and the store's own");
    println!("account of its structures where it keeps one. ns per op per thread.\n");
    println!(
        "| store | value | B/entry (RSS) | own account | insert 1t | insert 2t | get 1t | get 2t |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    costs.iter().for_each(|r| println!("{r}"));
    let t = traces::NAMES;
    println!("\nHit ratio, requests after the first third of each trace; `payload` bound: entries");
    println!("weigh key + value; `memory` bound: also the store's measured bytes per entry.\n");
    println!(
        "| store | value | {} (payload) | {} (payload) | {} (payload) | {} (memory) | {} (memory) | {} (memory) | entries in {mib} MiB |",
        t[0], t[1], t[2], t[0], t[1], t[2]
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    hits.iter().for_each(|r| println!("{r}"));
}

/// Measures candidate `which` with `value`-byte values under `bound` bytes, printing one
/// cost row (`M...`) and one hit-ratio row (`H...`).
fn child(bound: u64, which: usize, value: usize) {
    let payload = 16 + value as u64;
    let fit = bound / payload;
    let body = vec![b'x'; value];
    let name = stores::NAMES[which];

    // Memory: filled to the bound by payload, before anything else is allocated.
    let before = rss();
    let store = stores::build(which, bound, 0, fit as usize);
    for id in 0..fit {
        store.insert(&key(id), &body);
    }
    store.settle();
    let held = store.len().max(1);
    let beyond = (rss().saturating_sub(before) as f64 / held as f64 - payload as f64).max(0.0);
    let own = store.own_bytes().map_or("n/a".to_owned(), |b| {
        format!("{:.0}", b as f64 / held as f64)
    });

    // Cost: lookups of filled keys, then inserts of new keys into the full store.
    let get1 = timed(1, LOOKUPS, |t, i| {
        let id = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15 + t as u64) % fit;
        black_box(store.get(&key(id)));
    });
    let get2 = timed(2, LOOKUPS, |t, i| {
        let id = (i as u64 ^ (t as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15) % fit;
        black_box(store.get(&key(id)));
    });
    let inserts = (fit as usize / 2).min(1_000_000);
    let ins1 = timed(1, inserts, |_, i| {
        store.insert(&key(fit + i as u64), &body);
    });
    let ins2 = timed(2, inserts / 2, |t, i| {
        store.insert(&key(fit * (2 + t as u64) + i as u64), &body);
    });
    drop(store);
    println!(
        "M| {name} | {value} B | {beyond:.0} | {own} | {ins1:.0} | {ins2:.0} | {get1:.0} | {get2:.0} |"
    );

    // Hit ratios, both bounds, the three traces.
    let traces = Traces::new(fit * 10, fit);
    let len = (fit * TRACE_FITS) as usize;
    let mut ratios = Vec::new();
    let mut entries = 0;
    for overhead in [0, beyond.round() as u64] {
        for t in 0..traces::NAMES.len() {
            let trace = traces.generate(t, len);
            let store = stores::build(
                which,
                bound,
                overhead,
                (bound / (payload + overhead)) as usize,
            );
            let mut hit = 0u64;
            for (i, &id) in trace.iter().enumerate() {
                let k = key(id);
                if store.get(&k).is_some() {
                    hit += u64::from(i >= len / WARM_SHARE);
                } else {
                    store.insert(&k, &body);
                }
            }
            store.settle();
            entries = store.len();
            let counted = (len - len / WARM_SHARE) as f64;
            ratios.push(format!("{:.3}", hit as f64 / counted));
        }
    }
    println!(
        "H| {name} | {value} B | {} | {entries} |",
        ratios.join(" | ")
    );
}

/// Nanoseconds per call of `op(thread, i)`, `per_thread` calls on each of `threads` threads
/// at once (wall time over calls per thread).
fn timed(threads: usize, per_thread: usize, op: impl Fn(usize, usize) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || (0..per_thread).for_each(|i| op(t, i)));
        }
    });
    start.elapsed().as_nanos() as f64 / per_thread as f64
}
