//! The staleness history on a Redis Cluster: three sidecars in front of three primaries
//! (each with a replica) serve the writers and readers of [`super::run_on`] while slots are
//! resharded and primaries fail over (`CLUSTER FAILOVER`, kill -9, SIGSTOP). No read is stale
//! beyond the bound, and afterwards every key through every sidecar equals its owner's value.
//!
//! The history's keys `h0`..`h7` sit in slots 13520, 9457, 5266, 1203, 13396, 9333, 5142 and
//! 1079: two or three on each primary of `redis-cli --cluster create` (0-5460, 5461-10922,
//! 10923-16383), so a reshard of a primary's lowest slots moves some of them.

use std::sync::Arc;

use nearcache::upstream::cluster::slot;
use parking_lot::Mutex;
use proto_tests::cluster::{ClusterGroup, View};

use super::*;

/// The heartbeat bound of the sidecars (a frozen node's values stop being served within it).
const HEARTBEAT: &str = "200ms";
/// A history long enough to run on both sides of every move.
const ACROSS: Budget = Budget {
    writes_per_writer: 2_000,
    reads_per_reader: 20_000,
    write_pause_ms: 30,
    time_limit: Duration::from_secs(14),
    errors_allowed: false,
};
/// The same, where a client of the cluster gets errors while a primary is gone.
const ACROSS_LOSS: Budget = Budget {
    errors_allowed: true,
    ..ACROSS
};
/// When the event begins, from the history's start.
const EVENT_AT: Duration = Duration::from_secs(2);
/// Bound on the cluster and the sidecars following an event (no assertion on how fast).
const FOLLOW: Duration = Duration::from_secs(30);

/// Three sidecars in front of `cluster`, every primary a seed.
fn sidecars(cluster: &ClusterGroup) -> Vec<Sidecar> {
    let seeds = cluster
        .primaries()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let url = format!("redis+cluster://{seeds}");
    let args = [
        "--invalidation-heartbeat",
        HEARTBEAT,
        "--upstream-timeout",
        "1s",
        "--connect-timeout",
        "500ms",
    ];
    let sidecars: Vec<Sidecar> = (0..3).map(|_| Sidecar::start_url(&url, &args)).collect();
    for s in &sidecars {
        let mut c = s.conn();
        poll_until(Duration::from_secs(10), "the sidecar serves", || {
            c.cmd_str(&["SET", "warmup", "1"]) == b"+OK\r\n"
        });
    }
    sidecars
}

/// The owner port of each history key in `view`.
fn owners(view: &View) -> Vec<u16> {
    (0..KEYS)
        .map(|k| view.owners[usize::from(slot(key_name(k).as_bytes()))])
        .collect()
}

/// Asserts the verdict: enough reads checked, none stale.
fn assert_fresh(verdict: &Verdict, label: &str) {
    assert!(
        verdict.reads_checked >= 1000,
        "{label}: too few reads checked: {verdict:?}"
    );
    assert!(
        verdict.stale.is_empty(),
        "{label}: {} stale reads (bound {BOUND:?}), first ones:\n{}",
        verdict.stale.len(),
        verdict.stale[..verdict.stale.len().min(20)].join("\n")
    );
}

/// Every key through every sidecar converges to the value its owner (by `view`) holds.
fn assert_converged(cluster: &ClusterGroup, view: &View, sidecars: &[Sidecar]) {
    let mut conns: Vec<Conn> = sidecars.iter().map(Sidecar::conn).collect();
    for (key, owner) in owners(view).into_iter().enumerate() {
        let name = key_name(key);
        let want = cluster.node(owner).conn().cmd_str(&["GET", &name]);
        assert!(
            want.starts_with(b"$"),
            "GET {name} on {owner}: {}",
            show(&want)
        );
        for (i, c) in conns.iter_mut().enumerate() {
            poll_until(
                CONVERGE * 5,
                &format!(
                    "GET {name} via sidecar {i} equals the owner's {}",
                    show(&want)
                ),
                || c.cmd_str(&["GET", &name]) == want,
            );
            assert_reply(&c.cmd_str(&["GET", &name]), &want, "converged value");
        }
    }
}

/// Runs the history while `event` happens to the cluster (from [`EVENT_AT`]); `event` is
/// given the history's origin and returns the window in which acknowledged writes may be
/// lost (none for a reshard or a graceful failover).
fn history_during(
    label: &str,
    budget: Budget,
    event: impl FnOnce(&Mutex<ClusterGroup>, Instant) -> Option<(Duration, Duration)> + Send + 'static,
) -> (Arc<Mutex<ClusterGroup>>, Vec<Sidecar>, Verdict) {
    let cluster = Arc::new(Mutex::new(ClusterGroup::start()));
    let sidecars = sidecars(&cluster.lock());
    let shared = cluster.clone();
    let during: During = Box::new(move |origin| {
        thread::sleep(EVENT_AT.saturating_sub(origin.elapsed()));
        // No window: one before the history began, which holds no write.
        event(&shared, origin).unwrap_or((Duration::ZERO, Duration::ZERO))
    });
    let verdict = run_on(&sidecars, None, budget, label, Some(during));
    (cluster, sidecars, verdict)
}

#[test]
fn resharding_under_load_serves_no_stale_read_and_every_key_converges() {
    let event = |cluster: &Mutex<ClusterGroup>, _| {
        let c = cluster.lock();
        let before_view = c.agreed();
        // The owners of the three ranges of `redis-cli --cluster create`.
        let (a, b, third) = (
            before_view.owners[0],
            before_view.owners[5461],
            before_view.owners[10923],
        );
        let before = owners(&before_view);
        // h7 and h3 (slots 1079 and 1203) go from a to b, and back; h4 and h0 (13396 and
        // 13520) from the third primary to b.
        c.reshard(a, b, 1210);
        let moved = owners(&c.agreed());
        assert_ne!(before, moved, "the reshard moved no history key");
        thread::sleep(Duration::from_millis(500));
        c.reshard(b, a, 1210);
        thread::sleep(Duration::from_millis(500));
        c.reshard(third, b, 2600);
        let after = owners(&c.agreed());
        assert_ne!(moved, after, "the last reshard moved no history key");
        None
    };
    let (cluster, sidecars, verdict) = history_during("reshard", ACROSS, event);
    assert_fresh(&verdict, "reshard");
    let cluster = cluster.lock();
    assert_converged(&cluster, &cluster.agreed(), &sidecars);
}

#[test]
fn a_slot_reassigned_with_its_keys_left_behind_is_never_served_from_l1() {
    let cluster = ClusterGroup::start();
    let sidecars = sidecars(&cluster);
    let key = key_name(0);
    let s = slot(key.as_bytes());
    let from = cluster.owner(s);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != from)
        .expect("another primary");
    let mut conns: Vec<Conn> = sidecars.iter().map(Sidecar::conn).collect();
    assert_reply(&conns[0].cmd_str(&["SET", &key, "old"]), b"+OK\r\n", "SET");
    for c in &mut conns {
        // Read twice: the second read is an L1 hit.
        for _ in 0..2 {
            assert_reply(&c.cmd_str(&["GET", &key]), &bulk(b"old"), "GET");
        }
    }
    // The slot is given to `to` without its keys: every primary but the old owner is told,
    // and `to` takes a new config epoch, which wins; the old owner learns it by gossip and
    // drops the slot's keys silently (no invalidation).
    let to_id = cluster.id(to);
    for port in cluster.primaries().into_iter().filter(|p| *p != from) {
        let mut node = cluster.node(port).conn();
        let reply = node.cmd_str(&["CLUSTER", "SETSLOT", &s.to_string(), "NODE", &to_id]);
        assert_reply(&reply, b"+OK\r\n", "SETSLOT NODE");
    }
    let reply = cluster.node(to).conn().cmd_str(&["CLUSTER", "BUMPEPOCH"]);
    assert!(
        reply.starts_with(b"+BUMPED") || reply.starts_with(b"+STILL"),
        "{}",
        show(&reply)
    );
    let mut old = cluster.node(from).conn();
    poll_until(FOLLOW, "the old owner drops the key", || {
        old.cmd_str(&["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()]) == b":0\r\n"
    });
    let view = cluster.agreed();
    assert_eq!(view.owners[usize::from(s)], to);
    let mut owner = cluster.node(to).conn();
    assert_reply(
        &owner.cmd_str(&["GET", &key]),
        b"$-1\r\n",
        "new owner empty",
    );
    for (i, c) in conns.iter_mut().enumerate() {
        poll_until(FOLLOW, &format!("sidecar {i} stops serving old"), || {
            c.cmd_str(&["GET", &key]) == b"$-1\r\n"
        });
    }
    // A value written now on the new owner is the one served, everywhere.
    assert_reply(&owner.cmd_str(&["SET", &key, "new"]), b"+OK\r\n", "SET");
    for c in &mut conns {
        poll_until(CONVERGE * 5, "the new owner's value", || {
            c.cmd_str(&["GET", &key]) == bulk(b"new")
        });
    }
}

/// The ports of `primary`'s replica and the slots of history keys it owns.
fn victim(cluster: &ClusterGroup) -> (u16, u16, Vec<u16>) {
    let view = cluster.agreed();
    let primary = owners(&view)[0];
    let replica = cluster.replica_of(primary);
    let owned: Vec<u16> = (0..KEYS)
        .map(|k| slot(key_name(k).as_bytes()))
        .filter(|s| view.owners[usize::from(*s)] == primary)
        .collect();
    (primary, replica, owned)
}

#[test]
fn a_cluster_failover_under_load_serves_no_stale_read() {
    let event = |cluster: &Mutex<ClusterGroup>, origin: Instant| {
        let c = cluster.lock();
        let (_, replica, _) = victim(&c);
        let from = origin.elapsed();
        c.failover(replica);
        loss_window(from, origin.elapsed())
    };
    // A graceful failover closes the demoted primary's connections: a write in flight on
    // one gets an error, as a cluster client's would, and is uncertain.
    let (cluster, sidecars, verdict) = history_during("CLUSTER FAILOVER", ACROSS_LOSS, event);
    assert_fresh(&verdict, "CLUSTER FAILOVER");
    let cluster = cluster.lock();
    assert_converged(&cluster, &cluster.agreed(), &sidecars);
}

/// Where the event loses a primary: the window of possible loss runs from just before the
/// loss (writes acknowledged but not yet replicated) to the replica's promotion.
fn loss_window(from: Duration, to: Duration) -> Option<(Duration, Duration)> {
    Some((from.saturating_sub(Duration::from_millis(200)), to))
}

#[test]
fn a_primary_killed_under_load_serves_no_stale_read() {
    let event = |cluster: &Mutex<ClusterGroup>, origin: Instant| {
        let mut c = cluster.lock();
        let (primary, replica, owned) = victim(&c);
        let from = origin.elapsed();
        c.kill(primary);
        c.promoted(replica, primary, &owned);
        loss_window(from, origin.elapsed())
    };
    let (cluster, sidecars, verdict) = history_during("kill -9 of a primary", ACROSS_LOSS, event);
    assert_fresh(&verdict, "kill -9");
    let cluster = cluster.lock();
    assert_converged(&cluster, &cluster.agreed(), &sidecars);
}

#[test]
fn a_primary_frozen_until_its_replica_is_promoted_serves_no_stale_read() {
    let event = |cluster: &Mutex<ClusterGroup>, origin: Instant| {
        let c = cluster.lock();
        let (primary, replica, owned) = victim(&c);
        let pid = c.node(primary).pid();
        let from = origin.elapsed();
        let frozen = Frozen::stop(pid);
        c.promoted(replica, primary, &owned);
        // The old primary wakes up and rejoins as a replica of the promoted one.
        frozen.resume();
        c.agreed();
        loss_window(from, origin.elapsed())
    };
    let (cluster, sidecars, verdict) = history_during("SIGSTOP of a primary", ACROSS_LOSS, event);
    assert_fresh(&verdict, "SIGSTOP");
    let cluster = cluster.lock();
    assert_converged(&cluster, &cluster.agreed(), &sidecars);
}
