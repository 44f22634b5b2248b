//! Micro-benchmarks of the per-request pieces: request parsing, the GET hit lookup (L1's
//! table: shard lock, index probe, copy out), the audit selection every hit pays, and reply
//! framing.
//! `cargo bench -p nearcache-bench --bench hot_path` (`make bench-micro`).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use nearcache::audit::Countdown;
use nearcache::cache::{bulk, CacheKey, Cached, KeyRef, L1Options, L1};
use nearcache::config::Limits;
use nearcache::profiler::hotkeys::HotKeys;
use nearcache::profiler::Sampler;
use nearcache::protocol::{parse_request, peek_get, FrameScanner};

const LIMITS: Limits = Limits {
    max_bulk_bytes: 512 << 20,
    max_array_len: 1 << 20,
    max_inline_bytes: 64 << 10,
};

fn parsing(c: &mut Criterion) {
    let get = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000001234\r\n";
    let set = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000001234\r\n$64\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
    c.bench_function("peek_get", |b| b.iter(|| peek_get(black_box(get), &LIMITS)));
    c.bench_function("parse_request GET", |b| {
        b.iter(|| parse_request(&mut BytesMut::from(&get[..]), &LIMITS).unwrap())
    });
    c.bench_function("parse_request SET 64B", |b| {
        b.iter(|| parse_request(&mut BytesMut::from(&set[..]), &LIMITS).unwrap())
    });
}

fn lookups(c: &mut Criterion) {
    let l1 = L1::new(L1Options {
        max_bytes: 256 << 20,
        ttl: Duration::from_secs(600),
        compress_min_bytes: 4096,
        cache_nil: true,
        admit_second_miss: false,
    });
    let keys: Vec<CacheKey> = (0..10_000)
        .map(|i| CacheKey {
            user: 0,
            db: 0,
            key: Bytes::from(format!("key:{i:012}")),
        })
        .collect();
    for k in &keys {
        l1.insert_if_current(
            k.clone(),
            l1.generation(k),
            Cached::Value(bulk(&[b'x'; 64])),
            None,
        );
    }
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut i = 0;
    c.bench_function("L1 read hit (10k keys, 64B)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let key = KeyRef {
                user: 0,
                db: 0,
                key: &keys[i].key,
            };
            l1.read(&key, |v, _| out.extend_from_slice(v.unwrap_or(b"$-1\r\n")));
            if out.len() > 1 << 19 {
                out.clear();
            }
        })
    });
}

/// What every L1 hit pays for the staleness audit: one countdown tick (selected hits are not
/// audited here, only counted).
fn audit_selection(c: &mut Criterion) {
    let mut countdown = Countdown::new(0.001, 1);
    let mut picked = 0u64;
    c.bench_function("audit countdown tick (rate 0.001)", |b| {
        b.iter(|| picked += u64::from(black_box(&mut countdown).tick()))
    });
    black_box(picked);
}

/// What every L1 hit pays for the hot-key sketch: one sampler tick, and for about one hit
/// in eight a count-min update (4 counters) of a 16-byte key over 10k distinct keys.
fn hot_key_sampling(c: &mut Criterion) {
    let mut sampler = Sampler::new(1);
    let hot = HotKeys::new();
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    let mut i = 0;
    c.bench_function("hot-key sampling per hit (1 in 8 recorded)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            if black_box(&mut sampler).tick() {
                hot.record(&keys[i]);
            }
        })
    });
}

fn framing(c: &mut Criterion) {
    let mut reply = Vec::new();
    reply.extend_from_slice(b"*10000\r\n");
    for i in 0..10_000 {
        let v = format!("value:{i:06}");
        reply.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    c.bench_function("FrameScanner 10k-element array", |b| {
        b.iter(|| {
            FrameScanner::default()
                .next_frame(black_box(&reply))
                .unwrap()
        })
    });
}

criterion_group!(
    benches,
    parsing,
    lookups,
    audit_selection,
    hot_key_sampling,
    framing
);
criterion_main!(benches);
