//! L1 behaviour seen from outside: hits skip the upstream, lifetimes are bounded by the L1
//! TTL and the key's upstream TTL, nils are cached, big values are compressed, concurrent
//! misses for one key make one upstream fetch.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use proto_tests::*;

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

#[test]
fn get_miss_then_hit_does_not_touch_upstream() {
    let (redis, sidecar) = start_pair(&[]);
    // Set directly so the first GET through the sidecar is certainly a miss.
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET");
    reset_stats(&redis);

    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "first GET (miss)");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "the miss is fetched once"
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "second GET (hit)");
    // Command names are case-insensitive: these are hits too.
    assert_reply(&c.cmd_str(&["get", "k"]), &bulk(b"v"), "get (hit)");
    assert_reply(&c.cmd_str(&["GeT", "k"]), &bulk(b"v"), "GeT (hit)");
    // A hit on another connection of the same sidecar.
    assert_reply(
        &sidecar.conn().cmd_str(&["GET", "k"]),
        &bulk(b"v"),
        "GET on another connection",
    );
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "hits must not reach the upstream"
    );
}

#[test]
fn mget_hits_before_and_after_a_miss_keep_their_places() {
    // The hits read before the first miss are handed to the general MGET, not read again:
    // each must still be its own key's reply, and counted once.
    let (redis, sidecar) = start_pair(&[]);
    let long = "x".repeat(300);
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["MSET", "a", &long, "b", "vb", "c", "", "d", "vd"]),
        "MSET",
    );
    let mut c = sidecar.conn();
    for k in ["a", "c", "d"] {
        c.cmd_str(&["GET", k]);
    }
    let hits = |s: &Sidecar| info_u64(&s.conn().info(Some("nearcache")), "l1_hits");
    let misses = |s: &Sidecar| info_u64(&s.conn().info(Some("nearcache")), "l1_misses");
    let (h0, m0) = (hits(&sidecar), misses(&sidecar));
    reset_stats(&redis);
    let expected =
        format!("*6\r\n$300\r\n{long}\r\n$0\r\n\r\n$2\r\nvb\r\n$2\r\nvd\r\n$-1\r\n$0\r\n\r\n");
    assert_reply(
        &c.cmd_str(&["MGET", "a", "c", "b", "d", "e", "c"]),
        expected.as_bytes(),
        "MGET a c b d e c",
    );
    assert_eq!(hits(&sidecar) - h0, 4, "a, c, d and c again are hits");
    assert_eq!(misses(&sidecar) - m0, 2, "b and e are misses");
    assert_eq!(commandstat_calls(&redis, "mget"), 1, "one upstream MGET");

    // Leading hits past what is handed on in one copy are looked up again: same reply.
    let big = "y".repeat(70_000);
    ok(&direct.cmd_str(&["SET", "big", &big]), "SET big");
    c.cmd_str(&["GET", "big"]);
    let (h0, m0) = (hits(&sidecar), misses(&sidecar));
    let expected = format!("*3\r\n$70000\r\n{big}\r\n$2\r\nvd\r\n$-1\r\n");
    assert_reply(
        &c.cmd_str(&["MGET", "big", "d", "f"]),
        expected.as_bytes(),
        "MGET big d f",
    );
    assert_eq!(hits(&sidecar) - h0, 2, "big and d are hits");
    assert_eq!(misses(&sidecar) - m0, 1, "f is a miss");
}

#[test]
fn mget_partial_hit_fetches_only_missing_keys() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["MSET", "a", "va", "b", "vb", "c", "vc"]),
        "MSET",
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "a"]), &bulk(b"va"), "warm a");
    assert_reply(&c.cmd_str(&["GET", "b"]), &bulk(b"vb"), "warm b");

    let mut monitor = Monitor::start(&redis);
    reset_stats(&redis);
    let expected = b"*4\r\n$2\r\nva\r\n$2\r\nvb\r\n$2\r\nvc\r\n$-1\r\n";
    assert_reply(
        &c.cmd_str(&["MGET", "a", "b", "c", "d"]),
        expected,
        "MGET a b c d",
    );

    let fetches: Vec<Executed> = monitor
        .take()
        .into_iter()
        .filter(|e| e.is("GET") || e.is("MGET"))
        .collect();
    let mut fetched: Vec<&str> = fetches
        .iter()
        .flat_map(|e| e.args[1..].iter().map(String::as_str))
        .collect();
    fetched.sort_unstable();
    assert_eq!(
        fetched,
        ["c", "d"],
        "only the missing keys are fetched, each once; upstream executed {fetches:?}"
    );
    assert_eq!(commandstat_calls(&redis, "mget"), 1, "one upstream MGET");
    assert_eq!(commandstat_calls(&redis, "get"), 0, "no upstream GET");

    // Now every key is in L1, the missing one as a cached nil.
    assert_reply(
        &c.cmd_str(&["MGET", "a", "b", "c", "d"]),
        expected,
        "second MGET a b c d",
    );
    let fetches: Vec<Executed> = monitor
        .take()
        .into_iter()
        .filter(|e| e.is("GET") || e.is("MGET"))
        .collect();
    assert!(
        fetches.is_empty(),
        "an all-hit MGET must not reach the upstream: {fetches:?}"
    );
    assert_eq!(commandstat_calls(&redis, "mget"), 1);
    assert_eq!(commandstat_calls(&redis, "get"), 0);
}

#[test]
fn ttl_caps_l1_lifetime() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    // No active expiry: the upstream will not expire (and so not invalidate) the key by
    // itself, only the L1 lifetime cap can make the sidecar look again.
    ok(
        &direct.cmd_str(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        "DEBUG SET-ACTIVE-EXPIRE 0",
    );
    let set_at = Instant::now();
    ok(
        &direct.cmd_str(&["SET", "k", "v", "PX", "300"]),
        "SET k v PX 300",
    );

    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET before expiry");
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"v"),
        "GET before expiry (hit)",
    );
    // Wait for the key's expiry (not for the sidecar).
    thread::sleep(Duration::from_millis(500).saturating_sub(set_at.elapsed()));
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        b"$-1\r\n",
        "GET after the key's upstream TTL: the L1 entry must not outlive it",
    );
}

#[test]
fn l1_ttl_expires_entries() {
    let (redis, sidecar) = start_pair(&["--l1-ttl", "200ms"]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["MSET", "k", "old", "same", "v"]), "MSET");
    let mut c = sidecar.conn();

    // An unchanged key: after the L1 TTL the next GET is a miss again.
    reset_stats(&redis);
    assert_reply(&c.cmd_str(&["GET", "same"]), &bulk(b"v"), "GET same (miss)");
    assert_reply(&c.cmd_str(&["GET", "same"]), &bulk(b"v"), "GET same (hit)");
    assert_eq!(commandstat_calls(&redis, "get"), 1, "second GET is a hit");
    thread::sleep(Duration::from_millis(400));
    assert_reply(
        &c.cmd_str(&["GET", "same"]),
        &bulk(b"v"),
        "GET same after L1 TTL",
    );
    assert_eq!(
        commandstat_calls(&redis, "get"),
        2,
        "an entry older than --l1-ttl must be fetched again"
    );

    // A key changed behind the sidecar's back.
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "GET k (cached)");
    ok(&direct.cmd_str(&["SET", "k", "new"]), "direct SET k new");
    thread::sleep(Duration::from_millis(400));
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"new"),
        "GET k after L1 TTL",
    );
}

#[test]
fn l1_ttl_zero_disables_cache() {
    let (redis, sidecar) = start_pair(&["--l1-ttl", "0"]);
    ok(&redis.conn().cmd_str(&["SET", "k", "v"]), "SET");
    reset_stats(&redis);
    let mut c = sidecar.conn();
    for i in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), &format!("GET #{i}"));
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        3,
        "with --l1-ttl 0 every GET goes upstream"
    );
}

#[test]
fn missing_keys_are_cached_as_nil_by_default() {
    let (redis, sidecar) = start_pair(&[]);
    reset_stats(&redis);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "nokey"]), b"$-1\r\n", "GET missing");
    assert_reply(
        &c.cmd_str(&["GET", "nokey"]),
        b"$-1\r\n",
        "GET missing again",
    );
    assert_eq!(commandstat_calls(&redis, "get"), 1, "the nil is cached");
}

#[test]
fn a_missing_key_with_a_huge_name_is_not_cached() {
    let (redis, sidecar) = start_pair(&["--l1-max-bytes", "64MiB"]);
    reset_stats(&redis);
    let mut c = sidecar.conn();
    let name = vec![b'n'; 5 << 20];
    for round in ["first", "second"] {
        assert_reply(&c.cmd(&[b"GET", &name]), b"$-1\r\n", round);
    }
    assert_eq!(commandstat_calls(&redis, "get"), 2, "fetched both times");
    let info = c.info(Some("nearcache"));
    assert_eq!(info_u64(&info, "l1_entries"), 0, "{info}");
}

#[test]
fn l1_cache_nil_false_refetches_missing_keys() {
    let (redis, sidecar) = start_pair(&["--l1-cache-nil", "false"]);
    ok(&redis.conn().cmd_str(&["SET", "present", "v"]), "SET");
    reset_stats(&redis);
    let mut c = sidecar.conn();
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "nokey"]), b"$-1\r\n", "GET missing");
        assert_reply(&c.cmd_str(&["GET", "present"]), &bulk(b"v"), "GET present");
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        3,
        "missing key fetched twice, present key once"
    );
}

#[test]
fn binary_and_empty_values_round_trip() {
    let (redis, sidecar) = start_pair(&[]);
    let key: &[u8] = b"bin\r\n\0key\xff $-1\r\n";
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend_from_slice(b"\r\n$-1\r\n*3\r\n");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd(&[b"SET", key, &value]), b"+OK\r\n", "SET binary");
    assert_reply(&c.cmd(&[b"SET", b"empty", b""]), b"+OK\r\n", "SET empty");
    reset_stats(&redis);
    for round in ["miss", "hit"] {
        assert_reply(
            &c.cmd(&[b"GET", key]),
            &bulk(&value),
            &format!("GET binary ({round})"),
        );
        assert_reply(
            &c.cmd_str(&["GET", "empty"]),
            b"$0\r\n\r\n",
            &format!("GET empty ({round})"),
        );
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        2,
        "second round is all hits"
    );
}

#[test]
fn large_values_round_trip_and_only_those_up_to_4_mib_are_cached() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    // (key, size in bytes, upstream GETs for a miss then a second GET)
    let cases: &[(&str, usize, u64)] = &[("big", 3 << 20, 1), ("huge", 8 << 20, 2)];
    for &(key, size, upstream_gets) in cases {
        let value = random_bytes(size, 7);
        assert_reply(&c.cmd(&[b"SET", key.as_bytes(), &value]), b"+OK\r\n", "SET");
        reset_stats(&redis);
        for round in ["first", "second"] {
            let reply = c.cmd_str(&["GET", key]);
            assert!(
                bulk_reply(&reply).as_deref() == Some(&value[..]),
                "GET {key} ({round}) returned {} bytes, not the {size}-byte value",
                reply.len()
            );
        }
        assert_eq!(
            commandstat_calls(&redis, "get"),
            upstream_gets,
            "{key}: {size} bytes"
        );
    }
}

/// 100 KiB of text that zstd shrinks well.
fn compressible_text() -> Vec<u8> {
    b"nearcache compresses repetitive values well. "
        .iter()
        .cycle()
        .take(100 * 1024)
        .copied()
        .collect()
}

#[test]
fn compression_round_trip_once_l1_is_crowded() {
    let (redis, sidecar) =
        start_pair(&["--l1-compress-min-bytes", "1024", "--l1-max-bytes", "1MiB"]);
    let compressible = compressible_text();
    let random = random_bytes(100 * 1024, 42);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd(&[b"SET", b"z:text", &compressible]),
        b"+OK\r\n",
        "SET text",
    );
    assert_reply(
        &c.cmd(&[b"SET", b"z:rand", &random]),
        b"+OK\r\n",
        "SET random",
    );
    // Small values (never compressed) until L1 holds more than three quarters of its bound.
    let mut direct = redis.conn();
    let filler = vec![b'f'; 900];
    for i in 0..1400 {
        ok(
            &direct.cmd(&[b"SET", format!("f:{i}").as_bytes(), &filler]),
            "SET filler",
        );
        c.cmd_str(&["GET", &format!("f:{i}")]);
    }
    let info = c.info(Some("nearcache"));
    assert!(
        info_u64(&info, "l1_used_bytes") * 4 >= info_u64(&info, "l1_max_bytes") * 3,
        "the fillers did not crowd L1\n{info}"
    );
    assert_eq!(info_u64(&info, "l1_compressed_entries"), 0, "{info}");
    reset_stats(&redis);
    for round in ["miss", "hit"] {
        if round == "hit" {
            // Large values are compressed off the upstream reader, then installed.
            poll_until(
                Duration::from_secs(5),
                "both values to be installed",
                || {
                    let info = c.info(Some("nearcache"));
                    info_u64(&info, "l1_compressed_entries") >= 1
                },
            );
        }
        for (key, value) in [("z:text", &compressible), ("z:rand", &random)] {
            let reply = c.cmd_str(&["GET", key]);
            assert!(
                bulk_reply(&reply).as_deref() == Some(&value[..]),
                "GET {key} ({round}) did not return the value set ({} reply bytes)",
                reply.len()
            );
        }
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        2,
        "the second round is all hits"
    );
    // The random value did not compress; the text, read once, was stored plain again
    // (its next hits skip the decompression).
    let info = c.info(Some("nearcache"));
    assert_eq!(info_u64(&info, "l1_compressed_entries"), 0, "{info}");
}

#[test]
fn large_values_are_stored_plain_while_l1_has_room() {
    let (redis, sidecar) = start_pair(&["--l1-compress-min-bytes", "1024"]);
    let compressible = compressible_text();
    let mut c = sidecar.conn();
    ok(&c.cmd(&[b"SET", b"z:text", &compressible]), "SET text");
    reset_stats(&redis);
    for round in ["miss", "hit"] {
        if round == "hit" {
            poll_until(Duration::from_secs(5), "the value to be installed", || {
                info_u64(&c.info(Some("nearcache")), "l1_entries") >= 1
            });
        }
        let reply = c.cmd_str(&["GET", "z:text"]);
        assert!(
            bulk_reply(&reply).as_deref() == Some(&compressible[..]),
            "GET z:text ({round}) did not return the value set"
        );
    }
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "the second GET is a hit"
    );
    let info = c.info(Some("nearcache"));
    assert_eq!(info_u64(&info, "l1_compressed_entries"), 0, "{info}");
    assert!(
        info_u64(&info, "l1_used_bytes") > compressible.len() as u64,
        "the value is held as it is\n{info}"
    );
}

#[test]
fn l1_stays_within_max_bytes() {
    let (redis, sidecar) = start_pair(&["--l1-max-bytes", "64KiB"]);
    let mut direct = redis.conn();
    let values: Vec<Vec<u8>> = (0..100).map(|i| random_bytes(4096, i + 1)).collect();
    for (i, v) in values.iter().enumerate() {
        ok(
            &direct.cmd(&[b"SET", format!("m:{i}").as_bytes(), v]),
            "SET",
        );
    }
    let mut c = sidecar.conn();
    for round in 0..2 {
        for (i, v) in values.iter().enumerate() {
            let reply = c.cmd_str(&["GET", &format!("m:{i}")]);
            assert!(
                bulk_reply(&reply).as_deref() == Some(&v[..]),
                "GET m:{i} (round {round}) returned a wrong value"
            );
        }
    }
    let mut last = String::new();
    poll_until(
        Duration::from_secs(3),
        "l1_used_bytes to settle within l1_max_bytes 65536",
        || {
            last = c.info(Some("nearcache"));
            info_u64(&last, "l1_used_bytes") <= 65536
        },
    );
    assert_eq!(
        info_u64(&last, "l1_max_bytes"),
        65536,
        "64KiB parsed\n{last}"
    );
    assert!(
        info_u64(&last, "l1_evictions") > 0,
        "400 KiB through a 64 KiB L1 must evict\n{last}"
    );
}

#[test]
fn concurrent_misses_coalesce() {
    const CLIENTS: usize = 50;
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "hot", "hot-value"]), "SET hot");
    // Connect every client first so that the pause below only holds their GETs.
    let conns: Vec<Conn> = (0..CLIENTS).map(|_| sidecar.conn()).collect();
    reset_stats(&redis);
    // Holds every client's commands, the sidecar's included, for 500 ms.
    ok(
        &direct.cmd_str(&["CLIENT", "PAUSE", "500", "ALL"]),
        "CLIENT PAUSE",
    );
    let paused_at = Instant::now();

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                conn.cmd_str(&["GET", "hot"])
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_reply(
            &h.join().expect("client thread"),
            &bulk(b"hot-value"),
            &format!("client {i}"),
        );
    }
    assert!(
        paused_at.elapsed() >= Duration::from_millis(300),
        "premise: the GETs were answered before the upstream pause ended ({:?})",
        paused_at.elapsed()
    );
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "{CLIENTS} concurrent misses on one key must make one upstream GET"
    );
}
