//! A Redis Cluster upstream (`redis+cluster://`): requests routed to the node that owns
//! their key's slot, L1 filled and invalidated per node.

use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

/// A sidecar in front of `cluster`, two of its nodes as seeds.
fn sidecar(cluster: &ClusterGroup) -> Sidecar {
    let seeds = cluster.addresses()[..2].join(",");
    Sidecar::start_url(&format!("redis+cluster://{seeds}"), &[])
}

fn nearcache_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache"))
}

#[test]
fn a_cluster_url_is_served_and_only_db_0_is_accepted() {
    let cluster = ClusterGroup::start();
    // Started as any user would, no switch in the environment: it serves.
    let seeds = cluster.addresses()[..2].join(",");
    let sidecar = Sidecar::start_url(&format!("redis+cluster://{seeds}/0"), &[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "served", "1"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "served"]), &bulk(b"1"), "GET");
    // A db other than 0 is a configuration error of its own.
    let args = ["--upstream", "redis+cluster://127.0.0.1:1/2"];
    let out = run_nearcache(&args, &[], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("only db 0"), "{}", out.stderr);
}

#[test]
fn keys_on_every_primary_are_written_read_and_served_from_l1_coherently() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let keys = cluster.key_per_primary("k");
    for (key, owner) in &keys {
        let value = format!("v-{key}");
        assert_reply(&c.cmd_str(&["SET", key, &value]), b"+OK\r\n", "SET");
        // The write reached the owner itself (no redirect was seen by the client).
        let direct = cluster.node(*owner).conn().cmd_str(&["GET", key]);
        assert_reply(&direct, &bulk(value.as_bytes()), "GET on the owner");
        // A keyed command other than GET goes to the owner too.
        let len = format!(":{}\r\n", value.len());
        assert_reply(&c.cmd_str(&["STRLEN", key]), len.as_bytes(), "STRLEN");
    }
    for (key, owner) in &keys {
        let value = format!("v-{key}");
        let hits = info_u64(&nearcache_info(&sidecar), "l1_hits");
        assert_reply(
            &c.cmd_str(&["GET", key]),
            &bulk(value.as_bytes()),
            "GET miss",
        );
        let gets = commandstat_calls(cluster.node(*owner), "get");
        assert_reply(
            &c.cmd_str(&["GET", key]),
            &bulk(value.as_bytes()),
            "GET hit",
        );
        assert!(
            info_u64(&nearcache_info(&sidecar), "l1_hits") > hits,
            "{key}: an L1 hit"
        );
        assert_eq!(
            commandstat_calls(cluster.node(*owner), "get"),
            gets,
            "{key}: not sent"
        );
        // A write straight to the owner reaches this sidecar through that node's tracking.
        let fresh = format!("w-{key}");
        let set = cluster.node(*owner).conn().cmd_str(&["SET", key, &fresh]);
        assert_reply(&set, b"+OK\r\n", "SET on the owner");
        poll_until(
            Duration::from_secs(5),
            "the new value through the sidecar",
            || c.cmd_str(&["GET", key]) == bulk(fresh.as_bytes()),
        );
    }
    // Pipelined commands for all three nodes come back in order.
    let mut pipeline = Vec::new();
    for (key, _) in &keys {
        pipeline.extend(encode_command_str(&["SET", key, "p"]));
        pipeline.extend(encode_command_str(&["GET", key]));
        pipeline.extend(encode_command_str(&["APPEND", key, "q"]));
    }
    c.send(&pipeline);
    for _ in &keys {
        let r = c.read_replies(3);
        assert_eq!(r, [b"+OK\r\n".to_vec(), bulk(b"p"), b":2\r\n".to_vec()]);
    }
    // Keys of one slot (a hash tag) in one command go to their node as they are.
    let mset = c.cmd_str(&["MSET", "{t}a", "1", "{t}b", "2"]);
    assert_reply(&mset, b"+OK\r\n", "MSET of one slot");
    let mget = c.cmd_str(&["MGET", "{t}a", "{t}b"]);
    assert_reply(&mget, b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n", "MGET of one slot");
}

#[test]
fn moved_and_asked_keys_are_followed_inside_the_sidecar() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let keys = cluster.key_per_primary("m");
    // MOVED: the slot moves after the sidecar took its map; reads and writes follow it.
    let (key, from) = keys[0].clone();
    let to = keys[1].1;
    assert_reply(&c.cmd_str(&["SET", &key, "before"]), b"+OK\r\n", "SET");
    cluster.move_slot(slot(key.as_bytes()), to);
    assert_reply(
        &c.cmd_str(&["SET", &key, "after"]),
        b"+OK\r\n",
        "SET after the move",
    );
    let direct = cluster.node(to).conn().cmd_str(&["GET", &key]);
    assert_reply(&direct, &bulk(b"after"), "GET on the new owner");
    assert_reply(
        &c.cmd_str(&["GET", &key]),
        &bulk(b"after"),
        "GET after the move",
    );
    let append = c.cmd_str(&["APPEND", &key, "!"]);
    assert_reply(&append, b":6\r\n", "APPEND after the move");
    assert_ne!(from, to);
    // An MGET of a slot that moved since the sidecar's last look is followed too.
    let tag_slot = slot(b"{mg}");
    let (owner, other) = (cluster.owner(tag_slot), keys.iter().map(|k| k.1));
    let target = other.into_iter().find(|p| *p != owner).unwrap();
    let mut direct = cluster.node(owner).conn();
    let mset = direct.cmd_str(&["MSET", "{mg}1", "a", "{mg}2", "b"]);
    assert_reply(&mset, b"+OK\r\n", "MSET on the owner");
    cluster.move_slot(tag_slot, target);
    let mget = c.cmd_str(&["MGET", "{mg}1", "{mg}2"]);
    assert_reply(
        &mget,
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
        "MGET after the move",
    );
    // ASK: a slot half-way through its migration; the key already moved is asked of the
    // importing node behind ASKING, the client never sees the redirect.
    let (key, from) = keys[2].clone();
    let s = slot(key.as_bytes()).to_string();
    assert_reply(&c.cmd_str(&["SET", &key, "v1"]), b"+OK\r\n", "SET");
    let (from_id, to_id) = (cluster.id(from), cluster.id(to));
    let ok = |port: u16, args: &[&str]| {
        let reply = cluster.node(port).conn().cmd_str(args);
        assert_reply(&reply, b"+OK\r\n", &format!("{args:?}"));
    };
    ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = to.to_string();
    ok(from, &["MIGRATE", "127.0.0.1", &port, &key, "0", "5000"]);
    let asked = cluster.node(from).conn().cmd_str(&["GET", &key]);
    assert!(asked.starts_with(b"-ASK "), "{}", show(&asked));
    assert_reply(
        &c.cmd_str(&["GET", &key]),
        &bulk(b"v1"),
        "GET of a migrated key",
    );
    assert_reply(
        &c.cmd_str(&["SET", &key, "v2"]),
        b"+OK\r\n",
        "SET of a migrated key",
    );
    let direct = cluster.node(to).conn().cmd_str(&["ASKING"]);
    assert_reply(&direct, b"+OK\r\n", "ASKING");
    let mut target = cluster.node(to).conn();
    target.cmd_str(&["ASKING"]);
    assert_reply(
        &target.cmd_str(&["GET", &key]),
        &bulk(b"v2"),
        "the importing node",
    );
    assert_reply(
        &c.cmd_str(&["STRLEN", &key]),
        b":2\r\n",
        "STRLEN of a migrated key",
    );
}
