//! A Sentinel-managed primary frozen with SIGSTOP (it keeps its connections open and answers
//! nothing) while the sentinels promote its replica: the sidecar's heartbeat sees the silence
//! within `--invalidation-heartbeat`, L1 stops answering, and no value of the frozen primary
//! is served after that bound, neither from L1 nor, once the sentinels switched, from the
//! frozen node itself when it wakes up.

use std::time::{Duration, Instant};

use proto_tests::sentinel::SentinelGroup;
use proto_tests::*;

/// The sidecar's heartbeat in this test.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// The heartbeat bound: a PING still unanswered when the next is due means the link is lost
/// (two periods), plus room for a loaded machine to run the sidecar's timer.
const BOUND: Duration = Duration::from_millis(3 * 200 + 300);
/// Bound on the sentinels promoting the replica and the sidecar following them.
const FOLLOW: Duration = Duration::from_secs(30);

/// The sidecar's failovers so far, from /metrics (served without asking the upstream).
fn failovers(sidecar: &Sidecar) -> f64 {
    let (_, text) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    metric(&text, "nearcache_sentinel_failovers_total", "").unwrap_or(0.0)
}

#[test]
fn a_frozen_primary_replaced_by_the_sentinels_is_never_served_after_the_heartbeat_bound() {
    let group = SentinelGroup::start(None);
    let heartbeat = format!("{}ms", HEARTBEAT.as_millis());
    let sidecar = Sidecar::start_url(
        &group.url(),
        &[
            "--invalidation-heartbeat",
            &heartbeat,
            "--upstream-timeout",
            "500ms",
            "--connect-timeout",
            "500ms",
        ],
    );
    let mut c = sidecar.conn();
    poll_until(
        Duration::from_secs(10),
        "a write through the sidecar",
        || c.cmd_str(&["SET", "k", "old"]) == b"+OK\r\n",
    );
    // Cached: the second GET is an L1 hit.
    poll_until(Duration::from_secs(10), "k cached in L1", || {
        let before = sidecar_hits(&sidecar);
        c.cmd_str(&["GET", "k"]) == bulk(b"old")
            && c.cmd_str(&["GET", "k"]) == bulk(b"old")
            && sidecar_hits(&sidecar) > before
    });

    let frozen_at = Instant::now();
    let frozen = Frozen::stop(group.primary.pid());

    // Until the sidecar follows the sentinels, every GET sent after the bound gets an error
    // (the frozen primary answers nothing), never the frozen primary's value from L1.
    let mut served_old_after_bound = Vec::new();
    let mut errors = 0;
    let deadline = Instant::now() + FOLLOW;
    while failovers(&sidecar) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the sidecar never followed the promotion:\n{}",
            sidecar.stderr()
        );
        let mut probe = sidecar.conn();
        probe.set_read_timeout(Duration::from_secs(10));
        let sent = frozen_at.elapsed();
        let reply = probe.cmd_str(&["GET", "k"]);
        if reply.starts_with(b"-") {
            errors += 1;
        } else if reply == bulk(b"old") && sent > BOUND && failovers(&sidecar) < 1.0 {
            served_old_after_bound.push(sent);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served_old_after_bound.is_empty(),
        "the frozen primary's value was served {:?} after the freeze (bound {BOUND:?})",
        served_old_after_bound
    );
    assert!(errors > 0, "no read ever waited on the frozen primary");

    // The new primary takes a write the frozen one never saw; the sidecar serves it, and
    // keeps serving it once the old primary wakes up (the sentinels then demote it).
    let mut promoted = group.replica.conn();
    assert_reply(
        &promoted.cmd_str(&["SET", "k", "new"]),
        b"+OK\r\n",
        "SET on the promoted replica",
    );
    let written = Instant::now();
    poll_until(Duration::from_secs(10), "the new primary's value", || {
        c.cmd_str(&["GET", "k"]) == bulk(b"new")
    });
    frozen.resume();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let reply = c.cmd_str(&["GET", "k"]);
        assert!(
            reply == bulk(b"new") || reply.starts_with(b"-"),
            "{:?} after the new primary's write: {}",
            written.elapsed(),
            show(&reply)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// L1 hits so far.
fn sidecar_hits(sidecar: &Sidecar) -> f64 {
    let (_, text) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    metric(&text, "nearcache_cache_hits_total", "layer=\"l1\"").unwrap_or(0.0)
}
