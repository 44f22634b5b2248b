//! Broadcast tracking (`--tracking bcast`): the control connection alone tracks the
//! `--tracking-prefixes`, Redis keeps no per-key state, writes under a prefix made around
//! the sidecar reach its L1 within a bound, keys outside every prefix are never answered
//! from L1, losing the control connection flushes and bypasses L1 with no stale read, a
//! pooled connection killed ends nothing, and bad combinations are refused at start.

use std::time::Duration;

use proto_tests::*;

/// How long a sidecar may serve a value overwritten elsewhere (generous for a loaded
/// machine).
const BOUND: Duration = Duration::from_secs(1);
/// Bound on a sidecar that must exit by itself (invalid configuration).
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

fn nearcache_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache"))
}

fn hits(sidecar: &Sidecar) -> u64 {
    info_u64(&nearcache_info(sidecar), "l1_hits")
}

/// A sidecar with `--tracking bcast` and `extra` in front of a new Redis, its control
/// connection up.
fn start_bcast(extra: &[&str]) -> (Redis, Sidecar) {
    let mut args = vec!["--tracking", "bcast"];
    args.extend_from_slice(extra);
    let (redis, sidecar) = start_pair(&args);
    wait_link_up(&sidecar);
    (redis, sidecar)
}

/// [`start_bcast`] with one prefix and nothing of the sidecar's own reaching upstream: no
/// audit, no periodic ACL re-check (either would send a GET the test counts).
fn start_bcast_quiet(prefix: &str) -> (Redis, Sidecar) {
    let args = [
        "--tracking-prefixes",
        prefix,
        "--audit-rate",
        "0",
        "--acl-recheck",
        "0",
    ];
    start_bcast(&args)
}

fn wait_link_up(sidecar: &Sidecar) {
    poll_until(Duration::from_secs(5), "the link is up", || {
        info_field(&nearcache_info(sidecar), "invalidation_link").as_deref() == Some("up")
    });
}

/// Reads `key` through `c` until one read is an L1 hit (a fill may wait for the pooled
/// connection's epoch mark), each read checked against `want`.
fn warm(sidecar: &Sidecar, c: &mut Conn, key: &str, want: &[u8]) {
    poll_until(Duration::from_secs(5), &format!("{key} is a hit"), || {
        let before = hits(sidecar);
        assert_reply(&c.cmd_str(&["GET", key]), want, &format!("warm {key}"));
        hits(sidecar) > before
    });
}

/// A field of the upstream's own INFO.
fn redis_info(redis: &Redis, field: &str) -> u64 {
    let text = redis.conn().cmd_str(&["INFO", "everything"]);
    info_u64(&String::from_utf8_lossy(&text), field)
}

/// Every GET through `c` equals the same GET on Redis, for `keys`.
fn reads_match(c: &mut Conn, direct: &mut Conn, keys: &[&str]) {
    for key in keys {
        let want = direct.cmd_str(&["GET", key]);
        assert_reply(&c.cmd_str(&["GET", key]), &want, &format!("GET {key}"));
    }
}

/// The ids of the upstream's client connections whose `CLIENT LIST` line matches `pick`,
/// `direct`'s own left out.
fn client_ids(direct: &mut Conn, pick: impl Fn(&str) -> bool) -> Vec<String> {
    let own = int_reply(&direct.cmd_str(&["CLIENT", "ID"])).to_string();
    let list = bulk_reply(&direct.cmd_str(&["CLIENT", "LIST"])).expect("CLIENT LIST");
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| pick(l))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(String::from))
        .filter(|id| *id != own)
        .collect()
}

fn kill(direct: &mut Conn, ids: &[String]) {
    assert!(!ids.is_empty(), "no connection to kill");
    for id in ids {
        assert_reply(
            &direct.cmd_str(&["CLIENT", "KILL", "ID", id]),
            b":1\r\n",
            "KILL",
        );
    }
}

#[test]
fn bcast_direct_writes_under_a_prefix_evict_with_no_per_key_state_in_redis() {
    let (redis, sidecar) = start_bcast(&["--tracking-prefixes", "user:, session:"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    for key in ["user:1", "user:2", "session:1"] {
        ok(&direct.cmd_str(&["SET", key, "old"]), "SET");
        warm(&sidecar, &mut c, key, &bulk(b"old"));
    }
    let info = nearcache_info(&sidecar);
    assert_eq!(info_field(&info, "tracking").as_deref(), Some("bcast"));
    assert_eq!(info_u64(&info, "tracking_prefixes"), 2, "{info}");
    // One tracking client (the control connection), two prefixes, no key.
    assert_eq!(redis_info(&redis, "tracking_clients"), 1);
    assert_eq!(redis_info(&redis, "tracking_total_prefixes"), 2);
    assert_eq!(redis_info(&redis, "tracking_total_keys"), 0);
    ok(&direct.cmd_str(&["SET", "user:1", "new"]), "SET");
    expect_within(&mut c, "user:1", &bulk(b"new"), BOUND, "direct SET");
    assert_eq!(direct.cmd_str(&["DEL", "session:1"]), b":1\r\n");
    expect_within(&mut c, "session:1", b"$-1\r\n", BOUND, "direct DEL");
    // A write through another sidecar (default tracking) reaches it too.
    let other = Sidecar::start(redis.port(), &[]);
    ok(&other.conn().cmd_str(&["SET", "user:2", "other"]), "SET");
    expect_within(&mut c, "user:2", &bulk(b"other"), BOUND, "another sidecar");
    warm(&sidecar, &mut c, "user:1", &bulk(b"new"));
    ok(&direct.cmd_str(&["FLUSHALL"]), "FLUSHALL");
    expect_within(&mut c, "user:1", b"$-1\r\n", BOUND, "FLUSHALL");
    assert!(info_u64(&nearcache_info(&sidecar), "invalidation_messages") >= 3);

    // The default mode, for contrast: Redis keeps the keys each connection read.
    let (redis, sidecar) = start_pair(&[]);
    wait_link_up(&sidecar);
    ok(&redis.conn().cmd_str(&["SET", "user:1", "v"]), "SET");
    warm(&sidecar, &mut sidecar.conn(), "user:1", &bulk(b"v"));
    assert!(redis_info(&redis, "tracking_total_keys") > 0);
    let info = nearcache_info(&sidecar);
    assert_eq!(info_field(&info, "tracking").as_deref(), Some("default"));
    assert_eq!(info_u64(&info, "tracking_prefixes"), 0, "{info}");
}

#[test]
fn bcast_without_prefixes_tracks_every_key() {
    let (redis, sidecar) = start_bcast(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "anything", "old"]), "SET");
    warm(&sidecar, &mut c, "anything", &bulk(b"old"));
    assert_eq!(info_u64(&nearcache_info(&sidecar), "tracking_prefixes"), 0);
    assert_eq!(redis_info(&redis, "tracking_total_keys"), 0);
    ok(&direct.cmd_str(&["SET", "anything", "new"]), "SET");
    expect_within(&mut c, "anything", &bulk(b"new"), BOUND, "direct SET");
}

#[test]
fn bcast_keys_outside_every_prefix_are_never_served_from_l1() {
    let (redis, sidecar) = start_bcast_quiet("user:");
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(
        &direct.cmd_str(&["MSET", "user:1", "u", "order:1", "old"]),
        "MSET",
    );
    warm(&sidecar, &mut c, "user:1", &bulk(b"u"));
    let before = hits(&sidecar);
    let gets = commandstat_calls(&redis, "get");
    for _ in 0..5 {
        assert_reply(&c.cmd_str(&["GET", "order:1"]), &bulk(b"old"), "GET");
    }
    assert_eq!(hits(&sidecar), before, "no hit outside the prefixes");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        gets + 5,
        "each GET forwarded"
    );
    // A direct write is seen at once, by GET and MGET alike.
    ok(&direct.cmd_str(&["SET", "order:1", "new"]), "SET");
    assert_reply(
        &c.cmd_str(&["GET", "order:1"]),
        &bulk(b"new"),
        "GET at once",
    );
    let mget = c.cmd_str(&["MGET", "user:1", "order:1"]);
    assert_reply(&mget, b"*2\r\n$1\r\nu\r\n$3\r\nnew\r\n", "MGET");
    ok(&direct.cmd_str(&["SET", "order:1", "newer"]), "SET");
    let mget = c.cmd_str(&["MGET", "user:1", "order:1"]);
    assert_reply(&mget, b"*2\r\n$1\r\nu\r\n$5\r\nnewer\r\n", "MGET at once");
    assert_eq!(hits(&sidecar), before + 2, "user:1 alone was a hit");
}

#[test]
fn bcast_killing_the_control_connection_allows_no_stale_read() {
    let (redis, sidecar) = start_bcast(&["--tracking-prefixes", "k:"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let keys = ["k:a", "k:b", "k:c"];
    for key in keys {
        ok(&direct.cmd_str(&["SET", key, "old"]), "SET");
        warm(&sidecar, &mut c, key, &bulk(b"old"));
    }
    let control = client_ids(&mut direct, |l| l.contains(" name=nearcache-control "));
    kill(&mut direct, &control);
    // Changed while the link may be down: no invalidation can reach the sidecar for it.
    ok(&direct.cmd_str(&["SET", "k:a", "changed"]), "SET");
    poll_until(Duration::from_secs(5), "the loss is counted", || {
        info_u64(&nearcache_info(&sidecar), "l1_flushes_link_lost") >= 1
    });
    reads_match(&mut c, &mut direct, &keys);
    wait_link_up(&sidecar);
    reads_match(&mut c, &mut direct, &keys);
    assert_eq!(
        redis_info(&redis, "tracking_clients"),
        1,
        "broadcast is back on"
    );
    // Caching resumes, and invalidations reach the new control connection.
    let before = hits(&sidecar);
    poll_until(Duration::from_secs(5), "hits again", || {
        reads_match(&mut c, &mut direct, &keys);
        hits(&sidecar) > before
    });
    ok(&direct.cmd_str(&["SET", "k:b", "after"]), "SET");
    expect_within(&mut c, "k:b", &bulk(b"after"), BOUND, "after reconnect");
}

#[test]
fn bcast_a_killed_pooled_connection_ends_nothing() {
    let (redis, sidecar) = start_bcast_quiet("k:");
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    ok(&direct.cmd_str(&["SET", "k:1", "v"]), "SET");
    warm(&sidecar, &mut c, "k:1", &bulk(b"v"));
    let pooled = client_ids(&mut direct, |l| !l.contains(" name=nearcache-control "));
    let info = nearcache_info(&sidecar);
    let closed = info_u64(&info, "l1_connections_closed");
    let reconnects = info_u64(&info, "upstream_reconnects");
    kill(&mut direct, &pooled);
    // The close seen and a new connection up (a GET while the upstream is down is forwarded
    // whatever L1 holds).
    poll_until(
        Duration::from_secs(5),
        "the close is seen, a new connection up",
        || {
            let info = nearcache_info(&sidecar);
            info_u64(&info, "l1_connections_closed") > closed
                && info_u64(&info, "upstream_reconnects") > reconnects
                && info_field(&info, "upstream_link_status").as_deref() == Some("up")
        },
    );
    // Still a hit, not fetched again: no tracking lived on the connection that filled it.
    let (before, gets) = (hits(&sidecar), commandstat_calls(&redis, "get"));
    assert_reply(&c.cmd_str(&["GET", "k:1"]), &bulk(b"v"), "GET");
    assert_eq!(
        hits(&sidecar),
        before + 1,
        "the entry outlives its connection"
    );
    assert_eq!(commandstat_calls(&redis, "get"), gets, "not fetched again");
    ok(&direct.cmd_str(&["SET", "k:1", "new"]), "SET");
    expect_within(&mut c, "k:1", &bulk(b"new"), BOUND, "direct SET");
}

#[test]
fn bcast_overlapping_prefixes_and_a_cluster_upstream_exit_64() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let args = [
        "--upstream",
        &url,
        "--tracking",
        "bcast",
        "--tracking-prefixes",
        "user:,user:1",
    ];
    let out = run_nearcache(&args, &[], RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(r#"--tracking-prefixes: prefixes "user:" and "user:1" overlap"#),
        "{}",
        out.stderr
    );
    let url = format!("redis+cluster://127.0.0.1:{}", free_port());
    let out = run_nearcache(
        &["--upstream", &url, "--tracking", "bcast"],
        &[],
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--tracking bcast: not supported with a Redis Cluster upstream"),
        "{}",
        out.stderr
    );
    let env = [("NEARCACHE_TRACKING_PREFIXES", "a:")];
    let out = run_nearcache(&["--upstream", &url], &env, RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--tracking-prefixes: only with --tracking bcast"),
        "{}",
        out.stderr
    );
}

#[test]
fn bcast_print_config_shows_the_mode_and_prefixes() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let args = ["--upstream", &url, "--print-config"];
    let env = [
        ("NEARCACHE_TRACKING", "bcast"),
        ("NEARCACHE_TRACKING_PREFIXES", "user:,session:"),
    ];
    let out = run_nearcache(&args, &env, RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("\ntracking = \"bcast\"\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\ntracking_prefixes = \"user:,session:\"\n"),
        "{}",
        out.stdout
    );
}
