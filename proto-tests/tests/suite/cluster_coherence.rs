//! L1 coherence per slot and per node in front of a Redis Cluster: an entry keeps its
//! slot's epoch and is served only while it holds. A slot reassigned with its keys left
//! behind (the old owner drops them and sends no invalidation) is never served from L1 once
//! the sidecar sees the change (a topology refresh or a redirect); a frozen primary's
//! entries stop being served within the heartbeat bound while the other primaries' stay
//! hits; losing one node's control connection, or one node's data connection, ends that
//! node's entries only; a migrating slot's entries end on its first `ASK` only.

use std::time::{Duration, Instant};

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

/// The sidecar's heartbeat in the freeze test.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// The heartbeat bound: a PING still unanswered when the next is due means the lease is
/// up (two periods), plus room for a loaded machine to run the sidecar's timer.
const BOUND: Duration = Duration::from_millis(3 * 200 + 300);

/// A sidecar in front of `cluster`, two of its nodes as seeds, with `extra` flags; a key
/// written through it on every primary, so that it has a connection to each.
fn sidecar(cluster: &ClusterGroup, extra: &[&str]) -> Sidecar {
    let seeds = cluster.addresses()[..2].join(",");
    let sidecar = Sidecar::start_url(&format!("redis+cluster://{seeds}"), extra);
    let mut c = sidecar.conn();
    for (key, _) in cluster.key_per_primary("warm-up") {
        assert_reply(&c.cmd_str(&["SET", &key, "x"]), b"+OK\r\n", "SET");
    }
    sidecar
}

fn hits(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_hits")
}

fn figure(sidecar: &Sidecar, name: &str) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), name)
}

/// Writes `value` at `key` on its owner and reads it through the sidecar until L1 answers
/// it (a hit counted).
fn cached(sidecar: &Sidecar, c: &mut Conn, cluster: &ClusterGroup, key: &str, value: &str) {
    let owner = cluster.node(cluster.owner(slot(key.as_bytes())));
    assert_reply(
        &owner.conn().cmd_str(&["SET", key, value]),
        b"+OK\r\n",
        "SET",
    );
    poll_until(Duration::from_secs(5), "the key is an L1 hit", || {
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), "GET");
        let before = hits(sidecar);
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), "GET");
        hits(sidecar) > before
    });
}

/// Whether `GET key` through the sidecar is answered by L1 with `value`.
fn is_hit(sidecar: &Sidecar, c: &mut Conn, key: &str, value: &str) -> bool {
    let before = hits(sidecar);
    let reply = c.cmd_str(&["GET", key]);
    reply == bulk(value.as_bytes()) && hits(sidecar) == before + 1
}

/// Reassigns `slot` to the primary on `to` without moving its keys: `SETSLOT IMPORTING`
/// then `SETSLOT NODE` on the new owner (which bumps its config epoch) and on the other
/// primaries but the old owner (which refuses while it holds keys); gossip then makes the
/// old owner drop the slot and its keys, with no invalidation. Waits until the old owner
/// redirects.
fn reassign_leaving_keys(cluster: &ClusterGroup, slot: u16, to: u16, key: &str) {
    let from = cluster.owner(slot);
    let (from_id, to_id, s) = (cluster.id(from), cluster.id(to), slot.to_string());
    let ok = |port: u16, args: &[&str]| {
        let reply = cluster.node(port).conn().cmd_str(args);
        assert_reply(&reply, b"+OK\r\n", &format!("{args:?} on {port}"));
    };
    ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    for port in cluster.primaries() {
        if port != to && port != from {
            ok(port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
    }
    let mut old = cluster.node(from).conn();
    poll_until(Duration::from_secs(30), "the old owner redirects", || {
        old.cmd_str(&["GET", key]).starts_with(b"-MOVED ")
    });
}

#[test]
fn a_slot_reassigned_with_its_keys_left_behind_is_never_served_from_l1() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster, &[]);
    let mut c = sidecar.conn();
    // Two slots on the same primary, moved to another one.
    let (a, b) = ("{coh-a}k", "{coh-b}k");
    let from = cluster.owner(slot(a.as_bytes()));
    let b = if cluster.owner(slot(b.as_bytes())) == from {
        b.to_owned()
    } else {
        (0..)
            .map(|i| format!("{{coh-b{i}}}k"))
            .find(|k| cluster.owner(slot(k.as_bytes())) == from)
            .unwrap()
    };
    let to = *cluster.primaries().iter().find(|p| **p != from).unwrap();
    cached(&sidecar, &mut c, &cluster, a, "old-a");
    cached(&sidecar, &mut c, &cluster, &b, "old-b");
    // Seen by a topology refresh: the slot's entries end, though nothing invalidated them.
    reassign_leaving_keys(&cluster, slot(a.as_bytes()), to, a);
    let set = cluster.node(to).conn().cmd_str(&["SET", a, "new-a"]);
    assert_reply(&set, b"+OK\r\n", "SET on the new owner");
    poll_until(Duration::from_secs(20), "the refresh sees the move", || {
        figure(&sidecar, "l1_slots_moved") >= 1
    });
    assert_reply(
        &c.cmd_str(&["GET", a]),
        &bulk(b"new-a"),
        "GET after the move",
    );
    // Seen by a redirect: a read of another key of the slot meets `MOVED` before any
    // refresh, and the key L1 held is not served again.
    let moved = figure(&sidecar, "l1_slots_moved");
    reassign_leaving_keys(&cluster, slot(b.as_bytes()), to, &b);
    let other = b.replace('k', "other");
    assert_reply(
        &c.cmd_str(&["GET", &other]),
        b"$-1\r\n",
        "GET of a key never set",
    );
    assert!(figure(&sidecar, "l1_slots_moved") > moved);
    let reply = c.cmd_str(&["GET", &b]);
    assert_ne!(reply, bulk(b"old-b"), "the old value left on the old owner");
    assert_reply(&reply, b"$-1\r\n", "GET of a key the old owner dropped");
}

#[test]
fn a_frozen_primary_stops_being_served_within_the_heartbeat_bound_while_others_stay_hits() {
    let cluster = ClusterGroup::start();
    let heartbeat = format!("{}ms", HEARTBEAT.as_millis());
    let sidecar = sidecar(
        &cluster,
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
    let keys = cluster.key_per_primary("frozen");
    for (key, _) in &keys {
        cached(&sidecar, &mut c, &cluster, key, &format!("v-{key}"));
    }
    let (frozen_key, frozen) = keys[2].clone();
    let stopped = Instant::now();
    let frozen_node = Frozen::stop(cluster.node(frozen).pid());
    poll_until(Duration::from_secs(10), "the lease expires", || {
        figure(&sidecar, "l1_flushes_lease_expired") >= 1
    });
    let expired_after = stopped.elapsed();
    eprintln!("lease expired {expired_after:?} after SIGSTOP");
    assert!(
        expired_after < BOUND * 2,
        "lease expired after {expired_after:?}"
    );
    // The other primaries' keys are still served from L1 (read again until a hit: on a
    // loaded machine a healthy node's heartbeat may be late once too, and its lease then
    // ends its entries as well, which is right; they are refilled and served again while
    // the frozen node's never are).
    for (key, _) in keys.iter().filter(|(_, o)| *o != frozen) {
        let value = format!("v-{key}");
        poll_until(Duration::from_secs(10), &format!("{key} a hit"), || {
            is_hit(&sidecar, &mut c, key, &value)
        });
    }
    // The frozen primary's key is not served from L1 (it is asked of the node, which does
    // not answer, or of its replica once promoted).
    let before = hits(&sidecar);
    c.cmd_str(&["GET", &frozen_key]);
    assert_eq!(hits(&sidecar), before, "no hit for the frozen node's key");
    // Resumed: its key is served again after a refill.
    frozen_node.resume();
    let value = format!("v-{frozen_key}");
    poll_until(
        Duration::from_secs(30),
        "the resumed node's key is a hit",
        || {
            c.cmd_str(&["GET", &frozen_key]) == bulk(value.as_bytes())
                && is_hit(&sidecar, &mut c, &frozen_key, &value)
        },
    );
}

/// The ids of the clients on `node` whose `CLIENT LIST` line `matches`.
fn client_ids(node: &Redis, matches: impl Fn(&str) -> bool) -> Vec<String> {
    let mut conn = node.conn();
    let own = int_reply(&conn.cmd_str(&["CLIENT", "ID"])).to_string();
    let list = bulk_reply(&conn.cmd_str(&["CLIENT", "LIST"])).expect("CLIENT LIST");
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| matches(l))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(String::from))
        .filter(|id| *id != own)
        .collect()
}

fn kill_clients(node: &Redis, ids: &[String]) {
    assert!(!ids.is_empty(), "no connection to kill");
    let mut conn = node.conn();
    for id in ids {
        assert_reply(
            &conn.cmd_str(&["CLIENT", "KILL", "ID", id]),
            b":1\r\n",
            "KILL",
        );
    }
}

#[test]
fn losing_one_nodes_control_connection_ends_only_that_nodes_entries() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster, &[]);
    let mut c = sidecar.conn();
    let keys = cluster.key_per_primary("ctl");
    for (key, _) in &keys {
        cached(&sidecar, &mut c, &cluster, key, &format!("v-{key}"));
    }
    let (lost_key, lost) = keys[1].clone();
    let node = cluster.node(lost);
    let ids = client_ids(node, |l| l.contains(" name=nearcache-control "));
    // Changed while the link is down: no invalidation can reach the sidecar for it.
    kill_clients(node, &ids);
    assert_reply(
        &node.conn().cmd_str(&["SET", &lost_key, "changed"]),
        b"+OK\r\n",
        "SET",
    );
    poll_until(Duration::from_secs(5), "the loss is counted", || {
        figure(&sidecar, "l1_flushes_node_lost") >= 1
    });
    assert_reply(
        &c.cmd_str(&["GET", &lost_key]),
        &bulk(b"changed"),
        "the lost node's key is asked again",
    );
    for (key, _) in keys.iter().filter(|(_, o)| *o != lost) {
        assert!(is_hit(&sidecar, &mut c, key, &format!("v-{key}")), "{key}");
    }
}

#[test]
fn a_killed_data_connection_ends_what_it_filled_and_other_nodes_stay_hits() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster, &[]);
    let mut c = sidecar.conn();
    let keys = cluster.key_per_primary("data");
    for (key, _) in &keys {
        cached(&sidecar, &mut c, &cluster, key, &format!("v-{key}"));
    }
    let (killed_key, killed) = keys[0].clone();
    let node = cluster.node(killed);
    let closed = figure(&sidecar, "l1_connections_closed");
    let ids = client_ids(node, |l| {
        !l.contains(" name=nearcache-control ") && !l.contains(" flags=S ")
    });
    kill_clients(node, &ids);
    poll_until(Duration::from_secs(5), "the closes are counted", || {
        figure(&sidecar, "l1_connections_closed") > closed
    });
    // Its key is fetched again (Redis no longer tracks it for this sidecar), then served.
    let gets = commandstat_calls(node, "get");
    let value = format!("v-{killed_key}");
    assert_reply(
        &c.cmd_str(&["GET", &killed_key]),
        &bulk(value.as_bytes()),
        "GET",
    );
    assert!(
        commandstat_calls(node, "get") > gets,
        "asked of its node again"
    );
    poll_until(
        Duration::from_secs(5),
        "a hit again after the refill",
        || is_hit(&sidecar, &mut c, &killed_key, &value),
    );
    for (key, _) in keys.iter().filter(|(_, o)| *o != killed) {
        assert!(is_hit(&sidecar, &mut c, key, &format!("v-{key}")), "{key}");
    }
}

/// Reads `key` through the sidecar until L1 answers it with `reply` (a hit counted).
fn a_hit(sidecar: &Sidecar, c: &mut Conn, key: &str, reply: &[u8]) {
    poll_until(Duration::from_secs(5), &format!("{key} an L1 hit"), || {
        assert_reply(&c.cmd_str(&["GET", key]), reply, "GET");
        let before = hits(sidecar);
        assert_reply(&c.cmd_str(&["GET", key]), reply, "GET");
        hits(sidecar) > before
    });
}

/// A slot half-way through its migration: the first `ASK` ends what L1 holds of it (a key
/// cached as missing may be created on the importing node, whose tracking does not cover
/// it), the later ones do not (a key still on the old owner stays a hit: `MIGRATE`
/// invalidates each key it moves).
#[test]
fn a_migrating_slot_ends_its_entries_on_the_first_ask_only() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster, &[]);
    let mut c = sidecar.conn();
    let s = slot(b"{mig}");
    let from = cluster.owner(s);
    let to = *cluster.primaries().iter().find(|p| **p != from).unwrap();
    let (stays, moved, absent) = ("{mig}stays", "{mig}moved", "{mig}absent");
    cached(&sidecar, &mut c, &cluster, stays, "v-stays");
    cached(&sidecar, &mut c, &cluster, moved, "v-moved");
    a_hit(&sidecar, &mut c, absent, b"$-1\r\n");
    let (from_id, to_id, slot_arg) = (cluster.id(from), cluster.id(to), s.to_string());
    let ok = |port: u16, args: &[&str]| {
        let reply = cluster.node(port).conn().cmd_str(args);
        assert_reply(&reply, b"+OK\r\n", &format!("{args:?} on {port}"));
    };
    ok(
        to,
        &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
    );
    ok(
        from,
        &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
    );
    let port = to.to_string();
    ok(from, &["MIGRATE", "127.0.0.1", &port, moved, "0", "5000"]);
    // Another client creates the missing key where it lives now, the importing node.
    let mut importer = cluster.node(to).conn();
    assert_reply(&importer.cmd_str(&["ASKING"]), b"+OK\r\n", "ASKING");
    let set = importer.cmd_str(&["SET", absent, "created"]);
    assert_reply(&set, b"+OK\r\n", "SET on the importing node");
    // The moved key, invalidated by the MIGRATE, is asked of the old owner: `ASK`.
    let before = figure(&sidecar, "l1_slots_moved");
    poll_until(Duration::from_secs(5), "the first ASK", || {
        assert_reply(&c.cmd_str(&["GET", moved]), &bulk(b"v-moved"), "GET");
        figure(&sidecar, "l1_slots_moved") > before
    });
    let reply = c.cmd_str(&["GET", absent]);
    assert_reply(&reply, &bulk(b"created"), "the key cached as missing");
    // Later ASKs of the migration leave the key still on the old owner served from L1.
    a_hit(&sidecar, &mut c, stays, &bulk(b"v-stays"));
    let after_first = figure(&sidecar, "l1_slots_moved");
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", moved]), &bulk(b"v-moved"), "GET");
    }
    let before = hits(&sidecar);
    assert_reply(&c.cmd_str(&["GET", stays]), &bulk(b"v-stays"), "GET");
    assert_eq!(hits(&sidecar), before + 1, "the unmoved key is still a hit");
    assert_eq!(figure(&sidecar, "l1_slots_moved"), after_first);
}
