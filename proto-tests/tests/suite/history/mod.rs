//! A bounded randomized history: writers (through three sidecars and straight to Redis) and
//! readers (GET and MGET through the three sidecars) on a small key space, every operation
//! recorded with its times, then checked: no read returns a value older than a write
//! acknowledged more than [`BOUND`] before the read was sent.
//!
//! Every write stores a unique value (a global counter), so a value names the write that
//! produced it; a nil names "one of the DELs". "Older" needs no knowledge of Redis's internal
//! order: a write `w` certainly replaced the value of write `v` when `w` was sent after `v`
//! was acknowledged. A read of `v`'s value is stale when such a `w` was acknowledged more than
//! [`BOUND`] before the read was sent. Concurrent writes (overlapping in time) are never
//! counted against each other.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proto_tests::*;

mod cluster;
mod failover;

/// How long after a write is acknowledged a sidecar may still serve the value it replaced.
/// Invalidations arrive in about a millisecond; 100 ms is generous on a loaded 2-core machine
/// running a debug build, three sidecars, Redis and five client threads.
pub(crate) const BOUND: Duration = Duration::from_millis(100);
/// The key space: small, so reads and writes collide constantly.
pub(crate) const KEYS: usize = 8;
/// Each run stops after this long even if its operation budget is not spent.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(20);
/// About 3000 operations: 300 writes and up to 2700 reads. A key is rewritten every
/// ~100 ms on average, so a value left stale by a missed invalidation is read many times.
const HISTORY: Budget = Budget {
    writes_per_writer: 150,
    reads_per_reader: 900,
    write_pause_ms: 30,
    time_limit: TIME_LIMIT,
    errors_allowed: false,
};
/// Writer threads (each writes through A, B, C and straight to Redis in turn); three
/// readers read through A, B and C in turn.
const WRITERS: usize = 2;
/// Bound on every key converging to the upstream value once the writers stop.
const CONVERGE: Duration = Duration::from_secs(2);
const SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1]) return 1";

/// Operation budget of one run: 2 writers and 3 readers.
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    pub writes_per_writer: usize,
    pub reads_per_reader: usize,
    /// Each writer sleeps between 1 and this many milliseconds after a write, so that reads
    /// (mostly L1 hits) outnumber writes between two writes to a key.
    pub write_pause_ms: usize,
    /// The run stops after this long even if its operation budget is not spent.
    pub time_limit: Duration,
    /// Error replies are taken as a client of Redis takes them across a failover: a write
    /// answered with one may or may not have happened, a read answered with one is dropped.
    pub errors_allowed: bool,
}

/// What a write left in the key: a unique value, or nothing (DEL).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Set(String),
    Deleted,
}

#[derive(Clone, Debug)]
struct Write {
    key: usize,
    value: Value,
    sent: Duration,
    acked: Duration,
    via: &'static str,
    /// Whether the write certainly took effect: false for one answered with an error, or
    /// in flight around a failover (acknowledged writes may be lost when a replica is
    /// promoted): its value may be read, but it never counts as having replaced another.
    certain: bool,
}

#[derive(Clone, Debug)]
struct Read {
    keys: Vec<usize>,
    values: Vec<Value>,
    sent: Duration,
    received: Duration,
    via: &'static str,
}

pub(crate) fn key_name(key: usize) -> String {
    format!("h{key}")
}

fn parse_value(reply: &[u8]) -> Value {
    match bulk_reply(reply) {
        Some(v) => Value::Set(String::from_utf8(v).expect("values are ASCII")),
        None => Value::Deleted,
    }
}

/// Splits a RESP2 array of bulk strings (MGET's reply) into values.
fn parse_mget(reply: &[u8], n: usize) -> Vec<Value> {
    let text = std::str::from_utf8(reply).expect("ASCII reply");
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some(format!("*{n}").as_str()),
        "MGET {}",
        show(reply)
    );
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        match lines.next() {
            Some("$-1") => values.push(Value::Deleted),
            Some(len) if len.starts_with('$') => {
                values.push(Value::Set(lines.next().expect("bulk body").to_string()))
            }
            other => panic!("MGET reply item {other:?} in {}", show(reply)),
        }
    }
    values
}

fn writer(
    mut conns: Vec<(&'static str, Conn)>,
    seed: u64,
    budget: Budget,
    counter: Arc<AtomicU64>,
    origin: Instant,
) -> Vec<Write> {
    let mut rng = Rng(seed);
    let mut log = Vec::with_capacity(budget.writes_per_writer);
    for i in 0..budget.writes_per_writer {
        if origin.elapsed() > budget.time_limit {
            break;
        }
        let key = rng.below(KEYS);
        let name = key_name(key);
        let target = i % conns.len();
        let (via, conn) = &mut conns[target];
        let roll = rng.below(100);
        let (value, request, want) = if roll < 7 {
            (
                Value::Deleted,
                encode_command_str(&["DEL", &name]),
                None::<&[u8]>,
            )
        } else {
            let v = format!("v{}", counter.fetch_add(1, Ordering::SeqCst));
            let request = if roll < 15 {
                encode_command_str(&["EVAL", SCRIPT, "1", &name, &v])
            } else {
                encode_command_str(&["SET", &name, &v])
            };
            let want: &[u8] = if roll < 15 { b":1\r\n" } else { b"+OK\r\n" };
            (Value::Set(v), request, Some(want))
        };
        let sent = origin.elapsed();
        let reply = {
            conn.send(&request);
            conn.read_reply()
        };
        let acked = origin.elapsed();
        // Across a failover a client may get an error, as from Redis itself: the write
        // may or may not have happened.
        let failed = budget.errors_allowed && reply.starts_with(b"-");
        match want {
            _ if failed => {}
            Some(want) => assert_reply(&reply, want, &format!("write via {via}")),
            None => assert!(reply.starts_with(b":"), "DEL via {via}: {}", show(&reply)),
        }
        log.push(Write {
            key,
            value,
            sent,
            acked,
            via,
            certain: !failed,
        });
        thread::sleep(Duration::from_millis(
            1 + rng.below(budget.write_pause_ms) as u64,
        ));
    }
    log
}

/// Reads until its budget is spent, the writers are done or the time limit passes.
fn reader(
    mut conns: Vec<(&'static str, Conn)>,
    seed: u64,
    budget: Budget,
    writers_done: Arc<AtomicUsize>,
    origin: Instant,
) -> Vec<Read> {
    let mut rng = Rng(seed);
    let mut log = Vec::with_capacity(budget.reads_per_reader);
    for i in 0..budget.reads_per_reader {
        if origin.elapsed() > budget.time_limit || writers_done.load(Ordering::SeqCst) == WRITERS {
            break;
        }
        if i > 0 {
            thread::sleep(Duration::from_millis(1));
        }
        let (via, conn) = &mut conns[i % 3];
        let keys: Vec<usize> = if rng.below(4) == 0 {
            let n = 2 + rng.below(3);
            (0..n).map(|_| rng.below(KEYS)).collect()
        } else {
            vec![rng.below(KEYS)]
        };
        let names: Vec<String> = keys.iter().map(|k| key_name(*k)).collect();
        let mut args: Vec<&str> = vec![if keys.len() == 1 { "GET" } else { "MGET" }];
        args.extend(names.iter().map(String::as_str));
        let request = encode_command_str(&args);
        let sent = origin.elapsed();
        let reply = {
            conn.send(&request);
            conn.read_reply()
        };
        let received = origin.elapsed();
        if budget.errors_allowed && reply.starts_with(b"-") {
            continue;
        }
        let values = if keys.len() == 1 {
            vec![parse_value(&reply)]
        } else {
            parse_mget(&reply, keys.len())
        };
        log.push(Read {
            keys,
            values,
            sent,
            received,
            via,
        });
    }
    log
}

/// The outcome of checking a history.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub reads_checked: usize,
    /// Key reads whose value had been replaced by a write acknowledged more than BOUND before.
    pub stale: Vec<String>,
    /// The largest (read sent - ack of the oldest write that certainly replaced the value
    /// served), over every key read; zero when every read returned a current value.
    pub max_age: Duration,
}

/// Checks every key read against the writes. See the module doc for the definition.
fn check(writes: &[Write], reads: &[Read]) -> Verdict {
    let mut by_key: HashMap<usize, Vec<&Write>> = HashMap::new();
    for w in writes {
        by_key.entry(w.key).or_default().push(w);
    }
    let mut verdict = Verdict::default();
    for r in reads {
        for (key, value) in r.keys.iter().zip(&r.values) {
            verdict.reads_checked += 1;
            let key_writes = by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let candidates: Vec<&&Write> =
                key_writes.iter().filter(|w| w.value == *value).collect();
            assert!(
                !candidates.is_empty(),
                "read via {} of {} returned {value:?}, which no write produced",
                r.via,
                key_name(*key)
            );
            let from_future = candidates.iter().all(|c| c.sent > r.received);
            assert!(
                !from_future,
                "read via {} of {} returned {value:?} before it was written: {r:?} {candidates:?}",
                r.via,
                key_name(*key)
            );
            // The freshest interpretation: the candidate with the least age, and the oldest
            // acknowledged write that certainly replaced it.
            let (age, replaced_by) = candidates
                .iter()
                .map(|c| {
                    key_writes
                        .iter()
                        .filter(|w| w.certain && w.sent > c.acked && w.acked < r.sent)
                        .map(|w| (r.sent - w.acked, Some(*w)))
                        .max_by_key(|(age, _)| *age)
                        .unwrap_or((Duration::ZERO, None))
                })
                .min_by_key(|(age, _)| *age)
                .expect("at least one candidate");
            verdict.max_age = verdict.max_age.max(age);
            if let (true, Some(w)) = (age > BOUND, replaced_by) {
                verdict.stale.push(format!(
                    "{} via {} at {:?} returned {value:?}, replaced by {:?} via {} acked {age:?} before",
                    key_name(*key),
                    r.via,
                    r.sent,
                    w.value,
                    w.via
                ));
            }
        }
    }
    verdict
}

/// Runs one history on a fresh Redis and three sidecars started with `flags`; returns the
/// verdict and the sidecars (for the convergence check) with their upstream.
fn run_history(flags: &[&str], budget: Budget) -> (Verdict, Redis, Vec<Sidecar>) {
    let redis = Redis::start();
    let sidecars: Vec<Sidecar> = (0..3)
        .map(|_| Sidecar::start(redis.port(), flags))
        .collect();
    let verdict = run_on(&sidecars, Some(&redis), budget, &format!("{flags:?}"), None);
    (verdict, redis, sidecars)
}

/// Something that happens while a history runs (a failover), given the history's origin;
/// returns the window (from the origin) in which writes may be lost: writes sent or
/// acknowledged in it are not certain.
pub(crate) type During = Box<dyn FnOnce(Instant) -> (Duration, Duration) + Send>;

/// Runs one history through three `sidecars` (and, with `direct`, straight to Redis too:
/// the initial values and one writer target; without, the initial values go through the
/// first sidecar), with `during` run alongside; returns the verdict.
pub(crate) fn run_on(
    sidecars: &[Sidecar],
    direct: Option<&Redis>,
    budget: Budget,
    label: &str,
    during: Option<During>,
) -> Verdict {
    let names = ["A", "B", "C"];
    // Every key starts with a value written before the history begins.
    let counter = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let mut initial = Vec::new();
    let mut first = match direct {
        Some(redis) => redis.conn(),
        None => sidecars[0].conn(),
    };
    for key in 0..KEYS {
        let v = format!("v{}", counter.fetch_add(1, Ordering::SeqCst));
        let sent = origin.elapsed();
        assert_reply(
            &first.cmd_str(&["SET", &key_name(key), &v]),
            b"+OK\r\n",
            "initial SET",
        );
        initial.push(Write {
            key,
            value: Value::Set(v),
            sent,
            acked: origin.elapsed(),
            via: "direct",
            certain: true,
        });
    }

    let all_writes = Arc::new(Mutex::new(initial));
    let all_reads = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    let writers_done = Arc::new(AtomicUsize::new(0));
    for w in 0..WRITERS as u64 {
        let mut conns: Vec<(&'static str, Conn)> = names
            .iter()
            .zip(sidecars)
            .map(|(n, s)| (*n, s.conn()))
            .collect();
        if let Some(redis) = direct {
            conns.push(("direct", redis.conn()));
        }
        // The two writers start at different targets.
        let targets = conns.len();
        conns.rotate_left(w as usize * 2 % targets);
        let (counter, all_writes) = (counter.clone(), all_writes.clone());
        let writers_done = writers_done.clone();
        handles.push(thread::spawn(move || {
            let log = writer(conns, 0x9e37_79b9 + w, budget, counter, origin);
            all_writes.lock().extend(log);
            writers_done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for r in 0..3u64 {
        let mut conns: Vec<(&'static str, Conn)> = names
            .iter()
            .zip(sidecars)
            .map(|(n, s)| (*n, s.conn()))
            .collect();
        conns.rotate_left(r as usize);
        let all_reads = all_reads.clone();
        let writers_done = writers_done.clone();
        handles.push(thread::spawn(move || {
            let log = reader(conns, 0x5851_f42d + r, budget, writers_done, origin);
            all_reads.lock().extend(log);
        }));
    }
    let window = during.map(|during| thread::spawn(move || during(origin)));
    for h in handles {
        h.join().expect("history thread");
    }
    let window = window.map(|w| w.join().expect("the event during the history"));
    let mut writes = all_writes.lock().clone();
    if let Some((from, to)) = window {
        for w in &mut writes {
            let inside = |t: Duration| t >= from && t <= to;
            if inside(w.sent) || inside(w.acked) || (w.sent < from && w.acked > to) {
                w.certain = false;
            }
        }
    }
    let reads = std::mem::take(&mut *all_reads.lock());
    let verdict = check(&writes, &reads);
    println!(
        "history ({label}): {} writes ({} uncertain), {} reads ({} key reads checked) in {:?}; \
         stale {}; max age of a served value behind a newer acked write {:?} (bound {BOUND:?}); \
         window of possible loss {window:?}",
        writes.len(),
        writes.iter().filter(|w| !w.certain).count(),
        reads.len(),
        verdict.reads_checked,
        origin.elapsed(),
        verdict.stale.len(),
        verdict.max_age
    );
    verdict
}

#[test]
fn randomized_history_through_three_sidecars_has_no_stale_reads() {
    let (verdict, redis, sidecars) = run_history(&[], HISTORY);
    assert!(
        verdict.reads_checked >= 1000,
        "too few reads checked: {verdict:?}"
    );
    assert!(
        verdict.stale.is_empty(),
        "{} stale reads (bound {BOUND:?}), first ones:\n{}",
        verdict.stale.len(),
        verdict.stale[..verdict.stale.len().min(20)].join("\n")
    );

    // The writers have stopped: every key through every sidecar equals the upstream value.
    let mut direct = redis.conn();
    let mut conns: Vec<Conn> = sidecars.iter().map(Sidecar::conn).collect();
    let started = Instant::now();
    for key in 0..KEYS {
        let name = key_name(key);
        let want = direct.cmd_str(&["GET", &name]);
        for (i, c) in conns.iter_mut().enumerate() {
            poll_until(
                CONVERGE.saturating_sub(started.elapsed()),
                &format!(
                    "GET {name} via sidecar {i} equals the upstream's {}",
                    show(&want)
                ),
                || c.cmd_str(&["GET", &name]) == want,
            );
            // And it stays: the second read is an L1 hit that must agree too.
            assert_reply(&c.cmd_str(&["GET", &name]), &want, "converged value");
        }
    }
}

/// Guards the checker: the same history with tracking off (writes straight to Redis reach
/// no sidecar) must report stale reads; about a quarter of the reads are.
#[test]
fn the_history_checker_detects_stale_reads_when_tracking_is_off() {
    let (verdict, _redis, _sidecars) = run_history(&["--tracking", "off"], HISTORY);
    assert!(
        verdict.stale.len() >= 10 && verdict.max_age > BOUND,
        "tracking off, yet few stale reads detected: {} of {}, max age {:?}",
        verdict.stale.len(),
        verdict.reads_checked,
        verdict.max_age
    );
}
