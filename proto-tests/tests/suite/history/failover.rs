//! The staleness history across a Sentinel failover: three sidecars in front of a
//! Sentinel-managed primary serve the writers and readers of [`super::run_on`] while
//! `SENTINEL FAILOVER` promotes the replica. No read is stale beyond the bound (writes in
//! flight around the switch may be lost, as for any client of Redis, and count as uncertain),
//! and afterwards every sidecar serves the new primary's values.

use std::net::SocketAddr;

use super::*;
use proto_tests::sentinel::{SentinelGroup, MASTER};

/// A history long enough to run on both sides of the failover; error replies are taken as a
/// client of Redis takes them across one.
const ACROSS: Budget = Budget {
    writes_per_writer: 2_000,
    reads_per_reader: 20_000,
    write_pause_ms: 30,
    time_limit: Duration::from_secs(14),
    errors_allowed: true,
};
/// When the failover is asked for, from the history's start.
const FAILOVER_AT: Duration = Duration::from_secs(3);
/// Bound on every sidecar following the failover (no assertion on how fast).
const FOLLOW: Duration = Duration::from_secs(30);

/// Asks the sentinel at `sentinel` for a failover until it takes it, then waits until every
/// sidecar (by its /metrics) has switched; returns the window from the request to the last
/// switch, from `origin`.
fn failover(
    sentinel: SocketAddr,
    sidecars: Vec<SocketAddr>,
    origin: Instant,
) -> (Duration, Duration) {
    thread::sleep(FAILOVER_AT.saturating_sub(origin.elapsed()));
    let from = origin.elapsed();
    let mut c = Conn::connect(sentinel);
    poll_until(FOLLOW, "SENTINEL FAILOVER taken", || {
        c.cmd_str(&["SENTINEL", "FAILOVER", MASTER]) == b"+OK\r\n"
    });
    for addr in sidecars {
        poll_until(FOLLOW, "a sidecar follows the failover", || {
            let (_, text) = http_get(addr, "/metrics");
            metric(&text, "nearcache_sentinel_failovers_total", "") == Some(1.0)
        });
    }
    (from, origin.elapsed())
}

#[test]
fn a_failover_during_a_history_serves_no_stale_read_and_every_sidecar_ends_on_the_new_primary() {
    let group = SentinelGroup::start(None);
    let sidecars: Vec<Sidecar> = (0..3)
        .map(|_| Sidecar::start_url(&group.url(), &[]))
        .collect();
    let metrics: Vec<SocketAddr> = sidecars
        .iter()
        .map(|s| s.metrics_addr().expect("metrics on"))
        .collect();
    for addr in &metrics {
        poll_until(Duration::from_secs(10), "ready", || {
            http_get(*addr, "/readyz").0 == 200
        });
    }
    let sentinel = group.sentinels[0].addr();
    let watched = metrics.clone();
    let during: During = Box::new(move |origin| failover(sentinel, watched, origin));
    let verdict = run_on(&sidecars, None, ACROSS, "Sentinel failover", Some(during));
    assert!(
        verdict.reads_checked >= 1000,
        "too few reads checked: {verdict:?}"
    );
    assert!(
        verdict.stale.is_empty(),
        "{} stale reads across the failover (bound {BOUND:?}), first ones:\n{}",
        verdict.stale.len(),
        verdict.stale[..verdict.stale.len().min(20)].join("\n")
    );

    // Every key through every sidecar converges to the new primary's value and stays.
    let mut promoted = group.replica.conn();
    let mut conns: Vec<Conn> = sidecars.iter().map(Sidecar::conn).collect();
    for key in 0..KEYS {
        let name = key_name(key);
        let want = promoted.cmd_str(&["GET", &name]);
        for (i, c) in conns.iter_mut().enumerate() {
            poll_until(
                CONVERGE,
                &format!(
                    "GET {name} via sidecar {i} equals the new primary's {}",
                    show(&want)
                ),
                || c.cmd_str(&["GET", &name]) == want,
            );
            assert_reply(&c.cmd_str(&["GET", &name]), &want, "converged value");
        }
    }
}
