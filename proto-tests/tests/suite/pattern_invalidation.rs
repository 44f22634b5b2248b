//! Pattern invalidation never blocks serving: `NEARCACHE INVALIDATE` registers its patterns
//! at once (no stale hit for a matching key from then on) and waits for a scan of L1 that
//! runs off the worker thread while other clients are served; more than 64 patterns or a
//! pattern over 1024 bytes is refused; patterns that cost pattern-times-key bytes in a
//! naive matcher stay cheap.

use std::time::{Duration, Instant};

use proto_tests::*;

/// Keys cached before the scan (the L1 it walks).
const KEYS: usize = 100_000;
/// Requests pipelined per round trip while filling.
const PIPELINE: usize = 1000;
/// Bound on anything that could hang (never a pass criterion).
const PATIENCE: Duration = Duration::from_secs(120);

/// A pair whose sidecar does not track, so that a key changed directly on Redis stays
/// stale in L1 until an invalidation evicts it; entries live long enough for slow fills.
fn untracked_pair() -> (Redis, Sidecar) {
    start_pair(&["--tracking", "off", "--l1-ttl", "1h", "--threads", "1"])
}

fn key(i: usize) -> String {
    format!("user:{i}:profile:abcdefghijklmnop")
}

/// Sets `KEYS` keys upstream and reads each through the sidecar once (each read fills L1).
fn fill(redis: &Redis, sidecar: &Sidecar) {
    let mut direct = redis.conn();
    for start in (0..KEYS).step_by(PIPELINE) {
        let mut mset = vec!["MSET".to_string()];
        for i in start..(start + PIPELINE).min(KEYS) {
            mset.push(key(i));
            mset.push(format!("v{i}"));
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_reply(&direct.cmd_str(&args), b"+OK\r\n", "MSET");
    }
    let mut c = sidecar.conn();
    for start in (0..KEYS).step_by(PIPELINE) {
        let end = (start + PIPELINE).min(KEYS);
        let gets: Vec<u8> = (start..end)
            .flat_map(|i| encode_command_str(&["GET", &key(i)]))
            .collect();
        c.send(&gets);
        for (i, reply) in (start..end).zip(c.read_replies(end - start)) {
            assert_reply(&reply, &bulk(format!("v{i}").as_bytes()), "fill GET");
        }
    }
    let entries = info_u64(&c.info(Some("nearcache")), "l1_entries");
    assert!(
        entries >= KEYS as u64 * 9 / 10,
        "L1 holds {entries} entries"
    );
}

/// Patterns that no key matches but that every key must be tried against: no literal
/// head to rule a key out by, no literal tail, and keys long enough for the count of
/// non-star elements.
fn scan_everything(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("*nomatch{i}[0-9]?x*")).collect()
}

fn invalidate(patterns: &[String]) -> Vec<u8> {
    let mut args = vec!["NEARCACHE", "INVALIDATE"];
    args.extend(patterns.iter().map(String::as_str));
    encode_command_str(&args)
}

#[test]
fn other_clients_are_answered_while_an_invalidate_scans_l1() {
    let (redis, sidecar) = untracked_pair();
    fill(&redis, &sidecar);
    let mut direct = redis.conn();
    let mut b = sidecar.conn();
    assert_reply(&direct.cmd_str(&["SET", "probe", "old"]), b"+OK\r\n", "SET");
    assert_reply(&b.cmd_str(&["GET", "probe"]), &bulk(b"old"), "probe cached");
    // Changed behind the sidecar's back: L1 answers the old value until invalidated.
    assert_reply(&direct.cmd_str(&["SET", "probe", "new"]), b"+OK\r\n", "SET");
    assert_reply(&b.cmd_str(&["GET", "probe"]), &bulk(b"old"), "probe stale");

    let mut patterns = scan_everything(63);
    patterns.push("prob?".to_string());
    let mut a = sidecar.conn();
    let sent = Instant::now();
    a.send(&invalidate(&patterns));
    // Client B sees the new value once the INVALIDATE is registered: before its scan is
    // done on the new code, only after it on code that scans on the worker thread.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = b.cmd_str(&["GET", "probe"]);
        if reply == bulk(b"new") {
            break;
        }
        assert_reply(&reply, &bulk(b"old"), "probe before the INVALIDATE is read");
        assert!(Instant::now() < deadline, "INVALIDATE never registered");
    }
    // 200 GETs of cached keys and a PING, all answered...
    let gets: Vec<u8> = (0..200)
        .flat_map(|i| encode_command_str(&["GET", &key(i * 499)]))
        .chain(encode_command_str(&["PING"]))
        .collect();
    b.send(&gets);
    for (i, reply) in b.read_replies(200).into_iter().enumerate() {
        assert_reply(&reply, &bulk(format!("v{}", i * 499).as_bytes()), "GET");
    }
    assert_reply(&b.read_reply(), b"+PONG\r\n", "PING");
    let others_done = sent.elapsed();
    // ...while the INVALIDATE reply has not arrived yet.
    a.set_read_timeout(Duration::from_millis(1));
    let early = a.try_read_reply();
    assert!(
        early.is_err(),
        "INVALIDATE answered before the other client: {}",
        show(&early.unwrap_or_default())
    );
    a.set_read_timeout(PATIENCE);
    let evicted = int_reply(&a.read_reply());
    eprintln!(
        "other client done after {others_done:?}, INVALIDATE answered after {:?}",
        sent.elapsed()
    );
    assert!((0..=1).contains(&evicted), "evicted {evicted}");
    assert_reply(&b.cmd_str(&["GET", "probe"]), &bulk(b"new"), "probe after");
    assert_reply(&b.cmd_str(&["GET", &key(7)]), &bulk(b"v7"), "kept");
}

#[test]
fn a_matching_key_is_never_served_stale_after_invalidate_returns() {
    const N: usize = 2000;
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let keys: Vec<String> = (0..N).map(|i| format!("s:{i}")).collect();
    let set = |direct: &mut Conn, value: &str| {
        let mut mset = vec!["MSET"];
        keys.iter().for_each(|k| mset.extend([k.as_str(), value]));
        assert_reply(&direct.cmd_str(&mset), b"+OK\r\n", "MSET");
    };
    let get_all = |c: &mut Conn, want: &str| {
        let gets: Vec<u8> = keys
            .iter()
            .flat_map(|k| encode_command_str(&["GET", k]))
            .collect();
        c.send(&gets);
        for (k, reply) in keys.iter().zip(c.read_replies(N)) {
            assert_reply(&reply, &bulk(want.as_bytes()), k);
        }
    };
    for round in 0..3 {
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        set(&mut direct, &old);
        c.cmd_str(&["NEARCACHE", "FLUSH"]);
        get_all(&mut c, &old);
        get_all(&mut c, &old);
        set(&mut direct, &new);
        let mut patterns = scan_everything(10);
        patterns.push("s:*".to_string());
        c.send(&invalidate(&patterns));
        c.set_read_timeout(PATIENCE);
        assert_reply(&c.read_reply(), format!(":{N}\r\n").as_bytes(), "evicted");
        get_all(&mut c, &new);
    }
}

#[test]
fn more_than_64_patterns_or_a_pattern_over_1024_bytes_is_refused_and_evicts_nothing() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    assert_reply(&direct.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "cached");
    assert_reply(&direct.cmd_str(&["SET", "k", "new"]), b"+OK\r\n", "SET");

    let mut many: Vec<String> = (0..64).map(|i| format!("x{i}")).collect();
    many.push("k".to_string());
    c.send(&invalidate(&many));
    assert_reply(
        &c.read_reply(),
        b"-ERR too many patterns for 'nearcache|invalidate' command (at most 64)\r\n",
        "65 patterns",
    );
    let long = "*".repeat(1025);
    let too_long = b"-ERR pattern too long (at most 1024 bytes)\r\n";
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", "x", &long]),
        too_long,
        "INVALIDATE with a 1025-byte pattern",
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "nothing evicted");
    // DELPATTERN: `*` 1025 times would match every key; nothing is deleted.
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN", &long]),
        too_long,
        "DELPATTERN with a 1025-byte pattern",
    );
    assert_reply(&direct.cmd_str(&["DBSIZE"]), b":1\r\n", "nothing deleted");

    // At the bounds: accepted.
    let mut at_bound: Vec<String> = (0..63).map(|i| format!("x{i}")).collect();
    at_bound.push(format!("k{}", "*".repeat(1023)));
    c.send(&invalidate(&at_bound));
    assert_reply(&c.read_reply(), b":1\r\n", "64 patterns, 1024 bytes");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"new"), "evicted");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN", &"*".repeat(1024)]),
        b":1\r\n",
        "DELPATTERN at the bound",
    );
}

#[test]
fn a_literal_tail_after_a_wildcard_costs_no_pattern_times_key_scan() {
    const LONG_KEYS: usize = 100;
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let body = "a".repeat(20 * 1024);
    // Half end in the pattern's tail, half in one other byte.
    let keys: Vec<String> = (0..LONG_KEYS)
        .map(|i| match i % 2 {
            0 => format!("{i}{body}"),
            _ => format!("{i}{body}b"),
        })
        .collect();
    for k in &keys {
        assert_reply(&direct.cmd_str(&["SET", k, "v"]), b"+OK\r\n", "SET");
        assert_reply(&c.cmd_str(&["GET", k]), &bulk(b"v"), "cached");
    }
    // `?*` and 1022 literal bytes: a naive matcher tries the tail at every offset of
    // every key (about 20 M byte comparisons a key).
    let pattern = format!("?*{}", "a".repeat(1022));
    c.set_read_timeout(PATIENCE);
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", &pattern]),
        format!(":{}\r\n", LONG_KEYS / 2).as_bytes(),
        "INVALIDATE ?*a...",
    );
    // The 10 KB version is refused before any scan.
    let huge = format!("?*{}", "a".repeat(10 * 1024));
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", &huge]),
        b"-ERR pattern too long (at most 1024 bytes)\r\n",
        "INVALIDATE ?* + 10 KB",
    );
}
