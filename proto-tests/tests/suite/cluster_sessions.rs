//! Pinned sessions in front of a Redis Cluster: a transaction, a WATCH, a blocking call and
//! a shard subscription run on the node that owns their keys' slot (MULTI waits for the
//! first key of the transaction); a key of another slot inside them gets the node's own
//! error, and EXEC its EXECABORT. A `-TRYAGAIN` is retried inside the sidecar, a
//! `-CLUSTERDOWN` relayed with a topology refresh asked; a client AUTHed as another ACL user
//! is that user on every node; INFO and `/metrics` show the cluster's figures.

use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

/// A sidecar in front of `cluster`, two of its nodes as seeds.
fn sidecar(cluster: &ClusterGroup) -> Sidecar {
    let seeds = cluster.addresses()[..2].join(",");
    Sidecar::start_url(&format!("redis+cluster://{seeds}"), &[])
}

/// One hash tag per primary (`{t3}`), with the primary's port, the first seed's first.
fn tag_per_primary(cluster: &ClusterGroup) -> Vec<(String, u16)> {
    let view = cluster.agreed();
    let primaries = cluster.primaries();
    let mut found: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let tag = format!("{{t{i}}}");
        let owner = view.owners[usize::from(slot(tag.as_bytes()))];
        if !found.iter().any(|(_, o)| *o == owner) {
            found.push((tag, owner));
        }
        if found.len() == primaries.len() {
            break;
        }
    }
    let seed = cluster.nodes()[0].port();
    found.sort_by_key(|(_, owner)| *owner != seed);
    found
}

#[test]
fn transactions_run_on_the_node_that_owns_their_keys() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    for (tag, owner) in tag_per_primary(&cluster) {
        let (a, b) = (format!("{tag}a"), format!("{tag}b"));
        assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
        assert_reply(&c.cmd_str(&["SET", &a, "1"]), b"+QUEUED\r\n", "SET");
        assert_reply(&c.cmd_str(&["INCR", &b]), b"+QUEUED\r\n", "INCR");
        let exec = c.cmd_str(&["EXEC"]);
        assert_reply(&exec, b"*2\r\n+OK\r\n:1\r\n", &format!("EXEC on {owner}"));
        let direct = cluster.node(owner).conn().cmd_str(&["GET", &b]);
        assert_reply(&direct, &bulk(b"1"), "the owner ran the transaction");
    }
    // A transaction without a key runs on any node; a keyless one then a keyed one, in a
    // pipeline, each where it belongs.
    let mut pipeline = Vec::new();
    for args in [&["MULTI"][..], &["PING"], &["EXEC"]] {
        pipeline.extend(encode_command_str(args));
    }
    c.send(&pipeline);
    let replies = c.read_replies(3);
    assert_reply(&replies[2], b"*1\r\n+PONG\r\n", "keyless EXEC");
    // DISCARD of a transaction that named no key.
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["DISCARD"]), b"+OK\r\n", "DISCARD");
    // The session is back on the pool: a plain command still works.
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING after");
    // One command at a time: a nested MULTI is answered at once (and flags nothing), and a
    // keyless command the client waits for is queued on some node rather than held.
    let (tag, owner) = tag_per_primary(&cluster).pop().expect("a primary");
    let key = format!("{tag}n");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    let nested = c.cmd_str(&["MULTI"]);
    assert_reply(&nested, b"-ERR MULTI calls can not be nested\r\n", "nested");
    assert_reply(&c.cmd_str(&["SET", &key, "n"]), b"+QUEUED\r\n", "SET");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
    let direct = cluster.node(owner).conn().cmd_str(&["GET", &key]);
    assert_reply(&direct, &bulk(b"n"), "the owner ran the transaction");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(
        &c.cmd_str(&["PING"]),
        b"+QUEUED\r\n",
        "PING queued, not held",
    );
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+PONG\r\n", "EXEC");
}

#[test]
fn a_key_of_another_node_inside_a_transaction_gets_the_nodes_error_and_execabort() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let tags = tag_per_primary(&cluster);
    let mut c = sidecar.conn();
    let (here, there) = (format!("{}x", tags[1].0), format!("{}y", tags[2].0));
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["SET", &here, "1"]), b"+QUEUED\r\n", "SET");
    let moved = c.cmd_str(&["SET", &there, "1"]);
    let want = format!(
        "-MOVED {} 127.0.0.1:{}\r\n",
        slot(there.as_bytes()),
        tags[2].1
    );
    assert_reply(&moved, want.as_bytes(), "a key of another node");
    let exec = c.cmd_str(&["EXEC"]);
    assert_reply(
        &exec,
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        "EXEC",
    );
    let direct = cluster.node(tags[1].1).conn().cmd_str(&["EXISTS", &here]);
    assert_reply(&direct, b":0\r\n", "nothing ran");
}

#[test]
fn watch_on_a_key_of_another_node_sees_a_write_by_another_client() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let tags = tag_per_primary(&cluster);
    let key = format!("{}w", tags[2].0);
    let (mut c, mut other) = (sidecar.conn(), sidecar.conn());
    assert_reply(&c.cmd_str(&["WATCH", &key]), b"+OK\r\n", "WATCH");
    assert_reply(&other.cmd_str(&["SET", &key, "them"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["SET", &key, "us"]), b"+QUEUED\r\n", "SET");
    assert_reply(
        &c.cmd_str(&["EXEC"]),
        b"*-1\r\n",
        "EXEC after the watched write",
    );
    assert_reply(&c.cmd_str(&["GET", &key]), &bulk(b"them"), "GET");
    // Unwatched, the same transaction runs.
    assert_reply(&c.cmd_str(&["WATCH", &key]), b"+OK\r\n", "WATCH");
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["SET", &key, "us"]), b"+QUEUED\r\n", "SET");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
}

#[test]
fn blocking_calls_and_shard_subscriptions_run_on_the_node_of_their_key() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    for (tag, owner) in tag_per_primary(&cluster) {
        let key = format!("{tag}list");
        let (mut waiter, mut pusher) = (sidecar.conn(), sidecar.conn());
        waiter.send(&encode_command_str(&["BLPOP", &key, "10"]));
        // The pop is parked on the owner before the push is sent.
        poll_until(
            Duration::from_secs(10),
            "BLPOP blocked on the owner",
            || {
                let info = cluster.node(owner).conn().info(Some("clients"));
                info_field(&info, "blocked_clients").as_deref() == Some("1")
            },
        );
        assert_reply(&pusher.cmd_str(&["LPUSH", &key, "v"]), b":1\r\n", "LPUSH");
        let want = format!("*2\r\n{}{}", show_bulk(&key), show_bulk("v"));
        assert_reply(&waiter.read_reply(), want.as_bytes(), "BLPOP woken");

        let stream = format!("{tag}stream");
        waiter.send(&encode_command_str(&[
            "XREAD", "BLOCK", "10000", "STREAMS", &stream, "$",
        ]));
        poll_until(
            Duration::from_secs(10),
            "XREAD blocked on the owner",
            || {
                let info = cluster.node(owner).conn().info(Some("clients"));
                info_field(&info, "blocked_clients").as_deref() == Some("1")
            },
        );
        let added = pusher.cmd_str(&["XADD", &stream, "*", "f", "v"]);
        assert!(added.starts_with(b"$"), "XADD: {}", show(&added));
        let read = waiter.read_reply();
        let text = String::from_utf8_lossy(&read);
        assert!(
            text.starts_with("*1\r\n*2\r\n") && text.contains(&show_bulk(&stream)),
            "XREAD woken: {text:?}"
        );
        assert!(text.ends_with("$1\r\nf\r\n$1\r\nv\r\n"), "{text:?}");

        let channel = format!("{tag}ch");
        let mut sub = sidecar.conn();
        let confirm = sub.cmd_str(&["SSUBSCRIBE", &channel]);
        let want = format!("*3\r\n$10\r\nssubscribe\r\n{}:1\r\n", show_bulk(&channel));
        assert_reply(&confirm, want.as_bytes(), "SSUBSCRIBE");
        let published = pusher.cmd_str(&["SPUBLISH", &channel, "hello"]);
        assert_reply(&published, b":1\r\n", "SPUBLISH reached the subscriber");
        let want = format!(
            "*3\r\n$8\r\nsmessage\r\n{}{}",
            show_bulk(&channel),
            show_bulk("hello")
        );
        assert_reply(&sub.read_reply(), want.as_bytes(), "smessage");
    }
}

/// A bulk string's RESP text.
fn show_bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn a_tryagain_is_retried_until_the_migration_settles_and_figures_show_the_cluster() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let tags = tag_per_primary(&cluster);
    let ((tag, source), target) = (tags[1].clone(), tags[2].1);
    let s = slot(tag.as_bytes()).to_string();
    let (a, b) = (format!("{tag}a"), format!("{tag}b"));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", &a, "1"]), b"+OK\r\n", "SET");
    // While the slot migrates, a read of a key the source holds and one it does not is
    // answered -TRYAGAIN by the source.
    let (source_id, target_id) = (cluster.id(source), cluster.id(target));
    let (mut src, mut dst) = (cluster.node(source).conn(), cluster.node(target).conn());
    let importing = dst.cmd_str(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &source_id]);
    assert_reply(&importing, b"+OK\r\n", "IMPORTING");
    let migrating = src.cmd_str(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &target_id]);
    assert_reply(&migrating, b"+OK\r\n", "MIGRATING");
    c.send(&encode_command_str(&["MGET", &a, &b]));
    poll_until(
        Duration::from_secs(10),
        "a TRYAGAIN from the source",
        || {
            let stats = src.info(Some("errorstats"));
            info_field(&stats, "errorstat_TRYAGAIN").is_some()
        },
    );
    // The migration is called off: the sidecar's next try gets the values.
    assert_reply(
        &src.cmd_str(&["CLUSTER", "SETSLOT", &s, "STABLE"]),
        b"+OK\r\n",
        "STABLE",
    );
    assert_reply(
        &dst.cmd_str(&["CLUSTER", "SETSLOT", &s, "STABLE"]),
        b"+OK\r\n",
        "STABLE",
    );
    let want = format!("*2\r\n{}$-1\r\n", show_bulk("1"));
    assert_reply(&c.read_reply(), want.as_bytes(), "MGET after the retries");

    let info = c.info(Some("nearcache"));
    assert!(info_u64(&info, "cluster_redirects_tryagain") >= 1, "{info}");
    assert_eq!(info_u64(&info, "cluster_primaries"), 3, "{info}");
    assert_eq!(info_u64(&info, "cluster_slots_assigned"), 16384, "{info}");
    assert!(info_u64(&info, "cluster_topology_epoch") >= 1, "{info}");
    assert!(info_u64(&info, "cluster_refreshes") >= 1, "{info}");
    let source_line = (0..3)
        .filter_map(|i| info_field(&info, &format!("cluster_node{i}")))
        .find(|l| l.contains(&format!("address=127.0.0.1:{source},")))
        .unwrap_or_else(|| panic!("no line for {source}: {info}"));
    assert!(source_line.contains(",link=up,"), "{source_line}");
    assert!(!source_line.contains("requests=0,"), "{source_line}");

    let (_, m) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    let tries = metric(&m, "nearcache_cluster_redirects_total", "kind=\"tryagain\"");
    assert!(tries.is_some_and(|n| n >= 1.0), "{m}");
    let node = format!("node=\"127.0.0.1:{source}\"");
    let requests = metric(&m, "nearcache_cluster_node_requests_total", &node);
    assert!(requests.is_some_and(|n| n >= 1.0), "{m}");
    let primaries = metric(&m, "nearcache_cluster_nodes", "role=\"primary\"");
    assert_eq!(primaries, Some(3.0), "{m}");
    assert!(
        metric(&m, "nearcache_cluster_topology_epoch", "").is_some(),
        "{m}"
    );
}

#[test]
fn a_client_authenticated_as_another_user_is_that_user_on_every_node() {
    let cluster = ClusterGroup::start();
    for node in cluster.nodes() {
        let set = node.conn().cmd_str(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~open:*",
            "+@all",
        ]);
        assert_reply(&set, b"+OK\r\n", "ACL SETUSER");
    }
    let sidecar = sidecar(&cluster);
    let mut admin = sidecar.conn();
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["AUTH", "reader", "reader-pw"]),
        b"+OK\r\n",
        "AUTH",
    );
    for (tag, owner) in tag_per_primary(&cluster) {
        let (open, closed) = (format!("open:{tag}"), format!("closed:{tag}"));
        for key in [&open, &closed] {
            assert_reply(
                &admin.cmd_str(&["SET", key, "v"]),
                b"+OK\r\n",
                "SET as admin",
            );
        }
        assert_reply(
            &c.cmd_str(&["GET", &open]),
            &bulk(b"v"),
            &format!("GET on {owner}"),
        );
        let strlen = c.cmd_str(&["STRLEN", &open]);
        assert_reply(&strlen, b":1\r\n", &format!("STRLEN on {owner}"));
        for args in [&["GET", closed.as_str()][..], &["STRLEN", closed.as_str()]] {
            let refused = c.cmd_str(args);
            assert!(
                refused.starts_with(b"-NOPERM"),
                "{args:?} on {owner}: {}",
                show(&refused)
            );
        }
        // A transaction on the node runs as the user too.
        assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
        let queued = c.cmd_str(&["SET", &closed, "w"]);
        assert!(queued.starts_with(b"-NOPERM"), "{}", show(&queued));
        assert!(c.cmd_str(&["EXEC"]).starts_with(b"-EXECABORT"), "EXEC");
    }
}

#[test]
fn a_clusterdown_is_relayed_and_asks_a_topology_refresh() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let tags = tag_per_primary(&cluster);
    let (tag, owner) = tags[1].clone();
    let key = format!("{tag}down");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", &key, "v"]), b"+OK\r\n", "SET");
    // The owner stops serving the slot (the others still name it): it answers CLUSTERDOWN.
    let s = slot(tag.as_bytes()).to_string();
    let dropped = cluster
        .node(owner)
        .conn()
        .cmd_str(&["CLUSTER", "DELSLOTS", &s]);
    assert_reply(&dropped, b"+OK\r\n", "DELSLOTS");
    let direct = cluster.node(owner).conn().cmd_str(&["STRLEN", &key]);
    assert!(direct.starts_with(b"-CLUSTERDOWN"), "{}", show(&direct));
    let reply = c.cmd_str(&["STRLEN", &key]);
    assert_reply(&reply, &direct, "the node's CLUSTERDOWN, relayed");
    let info = c.info(Some("nearcache"));
    assert!(
        info_u64(&info, "cluster_refresh_requests_clusterdown") >= 1,
        "{info}"
    );
}
