//! A TLS Redis Cluster upstream (`rediss+cluster://`): every node listens for TLS alone
//! (client certificates required, cluster bus and replication over TLS) and announces its
//! `tls-port` in `CLUSTER SHARDS`; the sidecar reaches every primary over TLS with the
//! `rediss://` options, serves and caches keys of every node, is invalidated by writes
//! made on the owner, splits a cross-slot MGET, follows a moved slot and shows its TLS
//! figures; when a primary is killed it follows the promoted replica over TLS and serves
//! none of the dead primary's old entries. With a CA that signed no node it reaches none
//! and says why.

use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

use crate::sentinel_tls::{pki, tls_flags};

const WAIT: Duration = Duration::from_secs(10);
/// Bound on the sidecar following a failover (a refresh needs a second node to confirm the
/// new map; gossip on a loaded machine takes a while).
const FAILOVER_WAIT: Duration = Duration::from_secs(30);

/// `GET key` straight on the node on `port` (over TLS).
fn get_on(cluster: &ClusterGroup, port: u16, key: &str) -> String {
    cluster.call(port, &["GET", key])
}

fn nearcache_info(c: &mut Conn) -> String {
    c.info(Some("nearcache"))
}

#[test]
fn keys_on_every_primary_are_served_cached_invalidated_and_moved_over_tls() {
    let pki = pki();
    let cluster = ClusterGroup::start_tls(&pki.files);
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://127.0.0.1:"), "{url}");
    // TLS alone: the nodes announce a `tls-port` and no plain one.
    let shards = cluster.call(cluster.primaries()[0], &["CLUSTER", "SHARDS"]);
    assert!(shards.lines().any(|l| l == "tls-port"), "{shards}");
    assert!(!shards.lines().any(|l| l == "port"), "{shards}");

    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    let mut c = sidecar.conn();
    let keys = cluster.key_per_primary("k");
    for (key, owner) in &keys {
        let value = format!("v-{key}");
        assert_reply(&c.cmd_str(&["SET", key, &value]), b"+OK\r\n", "SET");
        assert_eq!(get_on(&cluster, *owner, key), value, "{key} on its owner");
    }
    for (key, owner) in &keys {
        let value = format!("v-{key}");
        let get = c.cmd_str(&["GET", key]);
        assert_reply(&get, &bulk(value.as_bytes()), "GET miss");
        let hits = info_u64(&nearcache_info(&mut c), "l1_hits");
        let gets = commandstat_calls(cluster.node(*owner), "get");
        let get = c.cmd_str(&["GET", key]);
        assert_reply(&get, &bulk(value.as_bytes()), "GET hit");
        assert_eq!(
            info_u64(&nearcache_info(&mut c), "l1_hits"),
            hits + 1,
            "{key}: an L1 hit"
        );
        assert_eq!(
            commandstat_calls(cluster.node(*owner), "get"),
            gets,
            "{key}: not sent to its owner"
        );
        // A write straight to the owner reaches the sidecar through that node's tracking,
        // which runs over TLS too.
        let fresh = format!("w-{key}");
        assert_eq!(cluster.call(*owner, &["SET", key, &fresh]), "OK");
        poll_until(WAIT, "the owner's write through the sidecar", || {
            c.cmd_str(&["GET", key]) == bulk(fresh.as_bytes())
        });
    }

    // A cross-slot MGET: misses grouped per slot, one per node, merged in key order.
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(|(k, _)| k.as_str()));
    mget.push("absent");
    let mut want = format!("*{}\r\n", keys.len() + 1).into_bytes();
    for (key, _) in &keys {
        want.extend(bulk(format!("w-{key}").as_bytes()));
    }
    want.extend(b"$-1\r\n");
    assert_reply(&c.cmd_str(&mget), &want, "cross-slot MGET");

    // The sidecar connected to each primary's TLS port (the only one it has) over TLS.
    let info = nearcache_info(&mut c);
    assert_eq!(info_field(&info, "upstream_tls").as_deref(), Some("yes"));
    assert_eq!(
        info_field(&info, "upstream_tls_verify").as_deref(),
        Some("ca_file"),
        "{info}"
    );
    assert_eq!(
        info_field(&info, "upstream_tls_client_cert").as_deref(),
        Some("yes")
    );
    assert_eq!(info_u64(&info, "upstream_tls_handshake_failures"), 0);
    assert_eq!(info_u64(&info, "cluster_primaries"), 3, "{info}");
    for port in cluster.primaries() {
        let line = format!("address=127.0.0.1:{port},link=up");
        assert!(info.contains(&line), "{line} in {info}");
    }

    // A slot moved to another primary (keys migrated over TLS): followed.
    let (key, from) = &keys[0];
    let to = keys[1].1;
    cluster.move_slot(slot(key.as_bytes()), to);
    poll_until(WAIT, "the moved key through the sidecar", || {
        c.cmd_str(&["GET", key]) == bulk(format!("w-{key}").as_bytes())
    });
    assert_reply(&c.cmd_str(&["SET", key, "moved"]), b"+OK\r\n", "SET");
    assert_eq!(get_on(&cluster, to, key), "moved", "on the new owner");
    assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"moved"), "GET");
    assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"moved"), "GET hit");
    assert_ne!(*from, to);
    assert!(
        !sidecar.stderr().contains("TLS:"),
        "no TLS failure: {}",
        sidecar.stderr()
    );
}

#[test]
fn with_a_ca_that_signed_no_node_requests_get_an_error_naming_the_tls_cause() {
    let pki = pki();
    let cluster = ClusterGroup::start_tls(&pki.files);
    let mut flags = tls_flags(&pki.files, &pki.other_ca);
    flags.extend(["--connect-timeout", "500ms"]);
    let sidecar = Sidecar::start_url(&cluster.url(), &flags);
    let mut c = sidecar.conn();
    // Keyed and keyless requests alike: the sidecar knows no node, and says why.
    let cause = "-ERR nearcache: upstream unavailable (TLS: unknown issuer: ";
    let requests: [&[&str]; 4] = [
        &["GET", "k"],
        &["GET", "other"],
        &["SET", "k", "v"],
        &["PING"],
    ];
    for args in requests {
        let reply = String::from_utf8_lossy(&c.cmd_str(args)).into_owned();
        assert!(reply.starts_with(cause), "{args:?}: {reply:?}");
    }
    // No node known, not ready, the failed handshakes counted.
    let addr = sidecar.metrics_addr().expect("metrics on");
    let (status, _) = http_get(addr, "/readyz");
    assert_eq!(status, 503, "not ready");
    let (_, metrics) = http_get(addr, "/metrics");
    let primaries = metric(&metrics, "nearcache_cluster_nodes", r#"role="primary""#);
    assert_eq!(primaries, Some(0.0), "{metrics}");
    let failures = metric(
        &metrics,
        "nearcache_upstream_tls_handshake_failures_total",
        "",
    );
    assert!(failures.unwrap_or(0.0) > 0.0, "{metrics}");
    let log = sidecar.stderr();
    assert!(log.contains("TLS: unknown issuer"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn nodes_that_also_listen_in_plain_text_are_reached_on_their_tls_port() {
    let pki = pki();
    let cluster = ClusterGroup::start_tls_and_plain(&pki.files);
    // CLUSTER SHARDS names both ports: the sidecar must take `tls-port`.
    let shards = cluster.call(cluster.primaries()[0], &["CLUSTER", "SHARDS"]);
    assert!(shards.lines().any(|l| l == "tls-port"), "{shards}");
    assert!(shards.lines().any(|l| l == "port"), "{shards}");
    let sidecar = Sidecar::start_url(&cluster.url(), &tls_flags(&pki.files, &pki.files.ca));
    let mut c = sidecar.conn();
    for (key, owner) in cluster.key_per_primary("p") {
        assert_reply(&c.cmd_str(&["SET", &key, "v"]), b"+OK\r\n", "SET");
        assert_eq!(get_on(&cluster, owner, &key), "v", "{key} on its owner");
        assert_reply(&c.cmd_str(&["GET", &key]), &bulk(b"v"), "GET");
    }
    let info = nearcache_info(&mut c);
    for port in cluster.primaries() {
        let line = format!("address=127.0.0.1:{port},link=up");
        assert!(info.contains(&line), "{line} in {info}");
    }
    assert_eq!(
        info_u64(&info, "upstream_tls_handshake_failures"),
        0,
        "{info}"
    );
}

/// `n` keys `{prefix}{i}` whose slots the primary on `owner` owns.
fn keys_of(cluster: &ClusterGroup, owner: u16, prefix: &str, n: usize) -> Vec<String> {
    let view = cluster.agreed();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| view.owners[usize::from(slot(k.as_bytes()))] == owner)
        .take(n)
        .collect()
}

#[test]
fn a_killed_primary_is_followed_over_tls_and_none_of_its_old_entries_is_served() {
    let pki = pki();
    let mut cluster = ClusterGroup::start_tls(&pki.files);
    // A primary that is not one of the sidecar's two seeds (the first two nodes).
    let seeds = &cluster.addresses()[..2];
    let primary = *cluster
        .primaries()
        .iter()
        .find(|p| !seeds.contains(&format!("127.0.0.1:{p}")))
        .expect("a primary that is no seed");
    let replica = cluster.replica_of(primary);
    let keys = keys_of(&cluster, primary, "failover", 3);
    let (overwritten, kept, rewritten) = (&keys[0], &keys[1], &keys[2]);
    let slots: Vec<u16> = keys.iter().map(|k| slot(k.as_bytes())).collect();

    let sidecar = Sidecar::start_url(&cluster.url(), &tls_flags(&pki.files, &pki.files.ca));
    let mut c = sidecar.conn();
    for key in &keys {
        assert_reply(&c.cmd_str(&["SET", key, "before"]), b"+OK\r\n", "SET");
    }
    // On the replica before the kill, so the promoted replica has them (`WAIT` on a new
    // connection, with no write of its own, would not wait).
    let offset = info_u64(
        &cluster.call(primary, &["INFO", "replication"]),
        "master_repl_offset",
    );
    poll_until(WAIT, "the replica has the writes", || {
        let info = cluster.call(replica, &["INFO", "replication"]);
        info_u64(&info, "slave_repl_offset") >= offset
    });
    // Every key in L1: the second GET is a hit.
    for key in &keys {
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"before"), "GET miss");
        let hits = info_u64(&nearcache_info(&mut c), "l1_hits");
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"before"), "GET hit");
        assert_eq!(
            info_u64(&nearcache_info(&mut c), "l1_hits"),
            hits + 1,
            "{key} is in L1 before the kill"
        );
    }

    cluster.kill(primary);
    cluster.promoted(replica, primary, &slots);
    cluster.agreed();
    // Written straight on the new primary, which the sidecar has not read it from: only a
    // stale L1 entry could still answer `before`.
    assert_eq!(cluster.call(replica, &["SET", overwritten, "after"]), "OK");
    poll_until(
        FAILOVER_WAIT,
        "the killed primary's keys readable again",
        || {
            let reply = c.cmd_str(&["GET", overwritten]);
            assert_ne!(
                reply,
                bulk(b"before"),
                "{overwritten}: the entry from before the kill was served"
            );
            reply == bulk(b"after")
        },
    );
    // Once L1 is in use again too (a stale entry may hide behind a bypass).
    for _ in 0..3 {
        let reply = c.cmd_str(&["GET", overwritten]);
        assert_reply(
            &reply,
            &bulk(b"after"),
            "GET, not the entry from before the kill",
        );
    }
    // The key not written again reads as replicated, from the new primary.
    assert_reply(&c.cmd_str(&["GET", kept]), &bulk(b"before"), "GET");
    // Writable through the sidecar, on the new primary, and read back.
    assert_reply(&c.cmd_str(&["SET", rewritten, "new"]), b"+OK\r\n", "SET");
    assert_eq!(
        cluster.call(replica, &["GET", rewritten]),
        "new",
        "on the new primary"
    );
    assert_reply(&c.cmd_str(&["GET", rewritten]), &bulk(b"new"), "GET");
    // Cached again from the new primary, whose tracking (over TLS) invalidates it.
    poll_until(WAIT, "an L1 hit from the new primary", || {
        let hits = info_u64(&nearcache_info(&mut c), "l1_hits");
        assert_reply(&c.cmd_str(&["GET", overwritten]), &bulk(b"after"), "GET");
        info_u64(&nearcache_info(&mut c), "l1_hits") > hits
    });
    assert_eq!(cluster.call(replica, &["SET", overwritten, "again"]), "OK");
    poll_until(WAIT, "the new primary's write through the sidecar", || {
        c.cmd_str(&["GET", overwritten]) == bulk(b"again")
    });
    let log = sidecar.stderr();
    assert!(!log.contains("panicked"), "{log}");
}
