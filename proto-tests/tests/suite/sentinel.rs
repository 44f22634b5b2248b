//! Sentinel: a `redis+sentinel://` upstream is served through the primary the sentinels
//! name (checked with ROLE), followed through `SENTINEL FAILOVER` and a killed primary;
//! the sidecar is not ready while no sentinel answers, skips a sentinel that is down, and
//! authenticates to sentinels that require a password without ever showing it.

use std::time::Duration;

use proto_tests::sentinel::{sidecar_primary, FakeSentinel, SentinelGroup, MASTER};
use proto_tests::*;

/// Bound on following a failover: down-after + election + failover, with room for a slow
/// machine. No assertion on how fast, only that it happens.
const FOLLOW: Duration = Duration::from_secs(30);

/// `INFO nearcache` of a sidecar as text.
fn info(conn: &mut Conn) -> String {
    String::from_utf8(bulk_reply(&conn.cmd_str(&["INFO", "nearcache"])).unwrap_or_default())
        .unwrap()
}

/// Waits until the sidecar's /readyz says ready.
fn wait_ready(sidecar: &Sidecar) {
    let addr = sidecar.metrics_addr().expect("metrics on");
    poll_until(Duration::from_secs(10), "ready", || {
        http_get(addr, "/readyz").0 == 200
    });
}

#[test]
fn serves_and_caches_through_the_primary_the_sentinels_name() {
    let group = SentinelGroup::start(None);
    let sidecar = Sidecar::start_url(&group.url(), &[]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v1"]), b"+OK\r\n", "SET");
    assert_reply(
        &group.primary.conn().cmd_str(&["GET", "k"]),
        &bulk(b"v1"),
        "on the primary",
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v1"), "GET (miss)");
    let hits = info_u64(
        &String::from_utf8_lossy(&bulk_reply(&c.cmd_str(&["INFO", "nearcache_l1"])).unwrap()),
        "l1_hits",
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v1"), "GET (hit)");
    let after = info_u64(
        &String::from_utf8_lossy(&bulk_reply(&c.cmd_str(&["INFO", "nearcache_l1"])).unwrap()),
        "l1_hits",
    );
    assert_eq!(after, hits + 1, "the second GET is an L1 hit");
    let primary = group.primary.addr().to_string();
    let text = info(&mut c);
    assert_eq!(
        info_field(&text, "upstream_address").as_deref(),
        Some(&*primary),
        "{text}"
    );
    assert_eq!(
        info_field(&text, "sentinel_primary").as_deref(),
        Some(&*primary),
        "{text}"
    );
    assert_eq!(
        info_field(&text, "sentinel_master").as_deref(),
        Some(MASTER),
        "{text}"
    );
    assert_eq!(info_u64(&text, "sentinel_failovers"), 0);
    assert_eq!(info_u64(&text, "sentinel_known"), 3);
    poll_until(Duration::from_secs(10), "every sentinel subscribed", || {
        info_u64(&info(&mut c), "sentinel_reachable") == 3
    });
    let (_, metrics) = http_get(sidecar.metrics_addr().unwrap(), "/metrics");
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_primary_known", ""),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_failovers_total", ""),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_sentinels", "state=\"known\""),
        Some(3.0)
    );
}

#[test]
fn not_ready_while_no_sentinel_answers() {
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/{MASTER}",
        free_port(),
        free_port()
    );
    let sidecar = Sidecar::start_url(&url, &[]);
    let addr = sidecar.metrics_addr().expect("metrics on");
    poll_until(
        Duration::from_secs(5),
        "not ready: no primary known",
        || http_get(addr, "/readyz") == (503, "not ready: no primary known\n".to_owned()),
    );
    let mut c = sidecar.conn();
    let reply = c.cmd_str(&["GET", "k"]);
    assert!(
        reply.starts_with(b"-") && show(&reply).contains("no primary known"),
        "{}",
        show(&reply)
    );
    // INFO needs the upstream (it asks whether the client may talk): /metrics shows it.
    let (_, metrics) = http_get(addr, "/metrics");
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_primary_known", ""),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_sentinels", "state=\"known\""),
        Some(2.0)
    );
}

#[test]
fn a_sentinel_down_at_start_is_skipped() {
    let group = SentinelGroup::start(None);
    let url = group.url().replacen(
        "redis+sentinel://",
        &format!("redis+sentinel://127.0.0.1:{},", free_port()),
        1,
    );
    let sidecar = Sidecar::start_url(&url, &[]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
    assert_eq!(sidecar_primary(&mut c), group.primary.addr().to_string());
    assert_eq!(info_u64(&info(&mut c), "sentinel_known"), 4);
}

#[test]
fn sentinel_failover_is_followed_and_what_was_cached_is_not_served_after() {
    let group = SentinelGroup::start(None);
    let sidecar = Sidecar::start_url(&group.url(), &[]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "GET fills L1");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"old"), "GET from L1");
    group.failover();
    let replica = group.replica.addr().to_string();
    poll_until(FOLLOW, "the sidecar follows the failover", || {
        sidecar_primary(&mut c) == replica
    });
    let text = info(&mut c);
    assert_eq!(info_u64(&text, "sentinel_failovers"), 1, "{text}");
    assert_eq!(
        info_field(&text, "upstream_address").as_deref(),
        Some(&*replica)
    );
    // The new primary holds another value (written on it directly): that one is served.
    let mut new_primary = group.replica.conn();
    assert_reply(
        &new_primary.cmd_str(&["SET", "k", "new"]),
        b"+OK\r\n",
        "SET on the new primary",
    );
    poll_until(
        Duration::from_secs(10),
        "served from the new primary",
        || c.cmd_str(&["GET", "k"]) == bulk(b"new"),
    );
    // Writes through the sidecar reach the new primary.
    poll_until(
        Duration::from_secs(10),
        "a write through the sidecar",
        || c.cmd_str(&["SET", "w", "through"]) == b"+OK\r\n",
    );
    assert_reply(
        &new_primary.cmd_str(&["GET", "w"]),
        &bulk(b"through"),
        "on the new primary",
    );
    let (_, metrics) = http_get(sidecar.metrics_addr().unwrap(), "/metrics");
    assert_eq!(
        metric(&metrics, "nearcache_sentinel_failovers_total", ""),
        Some(1.0)
    );
}

#[test]
fn a_killed_primary_is_followed_to_the_promoted_replica_on_switch_master() {
    let mut group = SentinelGroup::start(None);
    // No periodic re-check within the test: only the +switch-master subscription can
    // start the discovery that follows (a dead primary raises no doubt).
    let sidecar = Sidecar::start_url(&group.url(), &["--sentinel-recheck", "1h"]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    group.primary.kill();
    let replica = group.replica.addr().to_string();
    poll_until(FOLLOW, "the sidecar follows the promoted replica", || {
        sidecar_primary(&mut c) == replica
    });
    poll_until(
        Duration::from_secs(10),
        "a write through the sidecar",
        || c.cmd_str(&["SET", "after", "kill"]) == b"+OK\r\n",
    );
    assert_reply(
        &group.replica.conn().cmd_str(&["GET", "after"]),
        &bulk(b"kill"),
        "on the promoted replica",
    );
    assert_eq!(info_u64(&info(&mut c), "sentinel_failovers"), 1);
}

#[test]
fn sentinel_credentials_are_used_and_never_shown() {
    const PASSWORD: &str = "s3ntinel-secret";
    let group = SentinelGroup::start(Some(PASSWORD));
    let sidecar = Sidecar::start_url(
        &group.url(),
        &["--sentinel-password", PASSWORD, "--log-level", "debug"],
    );
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
    let all = String::from_utf8_lossy(&c.cmd_str(&["INFO", "everything"])).into_owned();
    assert!(!all.contains(PASSWORD), "INFO shows the password");
    poll_until(Duration::from_secs(10), "every sentinel subscribed", || {
        info_u64(&info(&mut c), "sentinel_reachable") == 3
    });
    // Without the password the sentinels refuse: no primary.
    let refused = Sidecar::start_url(&group.url(), &["--log-level", "debug"]);
    let addr = refused.metrics_addr().unwrap();
    poll_until(
        Duration::from_secs(5),
        "not ready without the password",
        || http_get(addr, "/readyz") == (503, "not ready: no primary known\n".to_owned()),
    );
    assert!(!sidecar.stderr().contains(PASSWORD), "{}", sidecar.stderr());
    let printed = run_nearcache(
        &[
            "--upstream",
            &group.url(),
            "--sentinel-password",
            PASSWORD,
            "--print-config",
        ],
        &[],
        Duration::from_secs(10),
    );
    assert!(printed.status.success(), "{}", printed.stderr);
    assert!(
        !printed.stdout.contains(PASSWORD) && printed.stdout.contains("sentinel_password"),
        "--print-config:\n{}",
        printed.stdout
    );
}

#[test]
fn only_a_node_whose_role_is_master_becomes_the_primary_and_a_missed_switch_is_caught_by_the_recheck(
) {
    let first = Redis::start();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &first.port().to_string()]);
    let fake = FakeSentinel::start();
    fake.name(replica.port());
    let sidecar = Sidecar::start_url(&fake.url(), &["--sentinel-recheck", "200ms"]);
    let addr = sidecar.metrics_addr().unwrap();
    // Named, but its role is replica: no primary.
    poll_until(
        Duration::from_secs(10),
        "the role check refuses the replica",
        || sidecar.stderr().contains("whose role is replica"),
    );
    assert_eq!(
        http_get(addr, "/readyz"),
        (503, "not ready: no primary known\n".to_owned())
    );
    fake.name(first.port());
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_eq!(sidecar_primary(&mut c), first.addr().to_string());
    assert_reply(&c.cmd_str(&["SET", "k", "first"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"first"), "GET fills L1");
    // Another primary named without any +switch-master: the periodic re-check follows.
    let second = Redis::start();
    assert_reply(
        &second.conn().cmd_str(&["SET", "k", "second"]),
        b"+OK\r\n",
        "SET",
    );
    fake.name(second.port());
    poll_until(Duration::from_secs(10), "the re-check follows", || {
        sidecar_primary(&mut c) == second.addr().to_string()
    });
    poll_until(
        Duration::from_secs(10),
        "served from the new primary",
        || c.cmd_str(&["GET", "k"]) == bulk(b"second"),
    );
    assert_eq!(info_u64(&info(&mut c), "sentinel_failovers"), 1);
}

#[test]
fn an_application_user_without_admin_rights_is_served_through_sentinel() {
    // The user an application gets: no @admin (ROLE, INFO), no @dangerous.
    let primary = Redis::start_with(&[
        "--user",
        "app",
        "on",
        ">app-pass",
        "~*",
        "&*",
        "+@all",
        "-@admin",
        "-@dangerous",
    ]);
    let fake = FakeSentinel::start();
    fake.name(primary.port());
    let url = fake.url().replacen("://", "://app:app-pass@", 1);
    let sidecar = Sidecar::start_url(&url, &[]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET fills L1");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET from L1");
    let text = info(&mut c);
    assert_eq!(
        info_field(&text, "invalidation_link").as_deref(),
        Some("up"),
        "{text}"
    );
    assert!(info_u64(&text, "l1_hits") >= 1, "{text}");
    assert_eq!(sidecar_primary(&mut c), primary.addr().to_string());
}

#[test]
fn sentinels_configured_by_host_name_are_not_learned_again_by_ip() {
    let group = SentinelGroup::start(None);
    let list: Vec<String> = group
        .sentinels
        .iter()
        .map(|s| format!("localhost:{}", s.port()))
        .collect();
    let url = format!("redis+sentinel://{}/{MASTER}", list.join(","));
    let sidecar = Sidecar::start_url(&url, &[]);
    wait_ready(&sidecar);
    let mut c = sidecar.conn();
    // The first round (before ready) learned what the answering sentinel reports: the two
    // others, by IP; they are the configured ones, so still three known.
    poll_until(Duration::from_secs(10), "every sentinel reachable", || {
        info_u64(&info(&mut c), "sentinel_reachable") == 3
    });
    let text = info(&mut c);
    assert_eq!(info_u64(&text, "sentinel_known"), 3, "{text}");
}
