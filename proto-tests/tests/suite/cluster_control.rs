//! The control plane in front of a Redis Cluster: the invalidation bus rides on one control
//! connection per sidecar (a classic PUBLISH reaches every node's subscribers, so a bus on
//! every node's connection would hand each message over once per node) and comes back
//! when that connection is lost; a primary killed is followed to its promoted replica on
//! the refresh its lost connections ask for; a node that leaves the primaries (demoted, or
//! killed and replaced) keeps no connection of the sidecar's and leaves the node count.

use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

/// The default `--invalidation-channel`.
const CHANNEL: &str = "nearcache:invalidate";

/// How long a change the sidecar follows may take here (gossip, a refresh, reconnects).
const WITHIN: Duration = Duration::from_secs(30);

/// A sidecar in front of `cluster` with `seeds` (ports) as its seeds.
fn sidecar_on(cluster: &ClusterGroup, seeds: &[u16]) -> Sidecar {
    let seeds: Vec<String> = seeds
        .iter()
        .map(|&p| cluster.node(p).addr().to_string())
        .collect();
    Sidecar::start_url(&format!("redis+cluster://{}", seeds.join(",")), &[])
}

fn figure(sidecar: &Sidecar, name: &str) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), name)
}

/// Writes `value` at `key` through `sidecar` and reads it until L1 answers it (a hit: the
/// key's node's control connection is up).
fn cached(sidecar: &Sidecar, key: &str, value: &str) {
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", key, value]), b"+OK\r\n", "SET");
    poll_until(WITHIN, "the key is an L1 hit", || {
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), "GET");
        let before = figure(sidecar, "l1_hits");
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), "GET");
        figure(sidecar, "l1_hits") > before
    });
}

/// Whether `GET key` through `sidecar` is answered by L1.
fn is_hit(sidecar: &Sidecar, key: &str) -> bool {
    let before = figure(sidecar, "l1_hits");
    sidecar.conn().cmd_str(&["GET", key]);
    figure(sidecar, "l1_hits") > before
}

/// The subscribers of the bus channel, summed over every live node of `cluster`.
fn bus_subscriptions(cluster: &ClusterGroup) -> u64 {
    cluster
        .nodes()
        .iter()
        .map(|n| {
            let reply = n.conn().cmd_str(&["PUBSUB", "NUMSUB", CHANNEL]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            // `*2 $<len> <channel> :<n>`: the last line is the count.
            let last = text.trim_end().rsplit("\r\n").next().unwrap_or_default();
            last.trim_start_matches(':')
                .parse::<u64>()
                .unwrap_or_else(|_| {
                    panic!("PUBSUB NUMSUB: {}", show(&reply));
                })
        })
        .sum()
}

/// The connections on `node` that are no replication link and not the asking one: the
/// sidecar's, as nothing else of the test holds one open.
fn clients_of_sidecar(node: &proto_tests::redis::Redis) -> usize {
    let mut c = node.conn();
    let reply = c.cmd_str(&["CLIENT", "LIST"]);
    let text = String::from_utf8_lossy(&bulk_reply(&reply).unwrap_or_default()).into_owned();
    let own = String::from_utf8_lossy(&c.cmd_str(&["CLIENT", "ID"])).into_owned();
    let own = format!("id={} ", own.trim().trim_start_matches(':'));
    text.lines()
        .filter(|l| !l.starts_with(&own))
        .filter(|l| {
            let flags = l.split(' ').find_map(|f| f.strip_prefix("flags="));
            !matches!(flags, Some(f) if f.contains('S') || f.contains('M'))
        })
        .count()
}

#[test]
fn the_bus_reaches_another_sidecar_once_and_comes_back_after_its_connection_is_lost() {
    let cluster = ClusterGroup::start();
    let primaries = cluster.primaries();
    let (a, b) = (
        sidecar_on(&cluster, &primaries),
        sidecar_on(&cluster, &primaries),
    );
    // Every node's control connection of both sidecars is up: each key is a hit.
    let keys = cluster.key_per_primary("bus-once");
    for (key, _) in &keys {
        cached(&a, key, "v");
        cached(&b, key, "v");
    }
    // One subscription per sidecar over the whole cluster, not one per node.
    assert_eq!(bus_subscriptions(&cluster), 2, "bus subscriptions");

    let (key, _) = &keys[0];
    let reply = a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "bus-once*"]);
    assert!(
        reply.starts_with(b":") || reply.starts_with(b"+"),
        "{}",
        show(&reply)
    );
    poll_until(WITHIN, "b received the pattern", || {
        figure(&b, "bus_received_patterns") >= 1
    });
    assert!(!is_hit(&b, key), "the pattern evicted the key in b");
    assert_eq!(figure(&b, "bus_received_patterns"), 1, "received once");
    assert_eq!(figure(&a, "bus_own_messages_skipped"), 1, "heard back once");

    // The bus's connection is lost (killed on the node it is on): it comes back, and so
    // does the bus.
    for node in cluster.nodes() {
        node.conn().cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    cached(&b, key, "w");
    poll_until(WITHIN, "the bus is subscribed again", || {
        bus_subscriptions(&cluster) == 2
            && info_field(&a.conn().info(Some("nearcache")), "bus").as_deref() == Some("subscribed")
    });
    a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "bus-once*"]);
    poll_until(WITHIN, "b received the second pattern", || {
        figure(&b, "bus_received_patterns") >= 2
    });
    assert!(!is_hit(&b, key), "the second pattern evicted the key in b");
    assert_eq!(figure(&b, "bus_received_patterns"), 2, "received once each");
}

#[test]
fn a_killed_primary_is_followed_to_its_replica_on_a_refresh_its_loss_asks() {
    let mut cluster = ClusterGroup::start();
    let key = "follow-me";
    let primary = cluster.owner(slot(key.as_bytes()));
    let replica = cluster.replica_of(primary);
    let seeds: Vec<u16> = cluster
        .primaries()
        .into_iter()
        .filter(|&p| p != primary)
        .collect();
    let sidecar = sidecar_on(&cluster, &seeds);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", key, "v"]), b"+OK\r\n", "SET");
    let synced = cluster.node(primary).conn().cmd_str(&["WAIT", "1", "5000"]);
    assert_reply(&synced, b":1\r\n", "WAIT");
    assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"v"), "GET");
    assert_eq!(figure(&sidecar, "cluster_refresh_requests_disconnect"), 0);

    cluster.kill(primary);
    cluster.promoted(replica, primary, &[slot(key.as_bytes())]);
    // Every live node agrees (the sidecar takes a view only when a second node confirms it;
    // on a loaded machine the gossip takes a while).
    cluster.agreed();
    poll_until(WITHIN, "the key is read from the promoted replica", || {
        c.cmd_str(&["GET", key]) == bulk(b"v")
    });
    assert_reply(
        &c.cmd_str(&["SET", key, "w"]),
        b"+OK\r\n",
        "SET on the new primary",
    );
    let reply = cluster.node(replica).conn().cmd_str(&["GET", key]);
    assert_reply(&reply, &bulk(b"w"), "GET on the promoted replica");
    assert!(
        figure(&sidecar, "cluster_refresh_requests_disconnect") > 0,
        "the lost connections asked refreshes"
    );
    // The killed primary, replaced and failed, is no node any more.
    poll_until(WITHIN, "the killed primary is dropped", || {
        let info = sidecar.conn().info(Some("nearcache"));
        info_u64(&info, "cluster_primaries") == 3 && info_u64(&info, "cluster_known_nodes") == 5
    });
}

#[test]
fn a_demoted_primary_keeps_no_connection_of_the_sidecar() {
    let cluster = ClusterGroup::start();
    let primaries = cluster.primaries();
    // Not the first seed: the services' own pools (keyless commands, the bus) stay there.
    let demoted = primaries[1];
    let seeds = [primaries[0], primaries[2]];
    let sidecar = sidecar_on(&cluster, &seeds);
    for (key, _) in cluster.key_per_primary("demote") {
        cached(&sidecar, &key, "v");
    }
    assert!(
        clients_of_sidecar(cluster.node(demoted)) > 0,
        "the sidecar has connections to every primary"
    );
    cluster.failover(cluster.replica_of(demoted));
    // The sidecar sees the failover (a write there is redirected) and drops the node.
    for (key, _) in cluster.key_per_primary("demote") {
        assert_reply(
            &sidecar.conn().cmd_str(&["SET", &key, "w"]),
            b"+OK\r\n",
            "SET",
        );
    }
    poll_until(
        WITHIN,
        "no connection of the sidecar on the demoted node",
        || clients_of_sidecar(cluster.node(demoted)) == 0,
    );
    assert_eq!(figure(&sidecar, "cluster_primaries"), 3);
}
