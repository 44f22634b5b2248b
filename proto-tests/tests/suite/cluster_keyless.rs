//! Keyless commands in front of a Redis Cluster: SCAN over every primary under one cursor,
//! KEYS, DBSIZE, FLUSHALL, RANDOMKEY and SCRIPT fanned out, PUBLISH reaching every node's
//! subscribers, SPUBLISH by its channel's slot, SELECT as Redis Cluster answers it, and
//! `CLUSTER SLOTS|SHARDS|NODES|INFO|MYID|KEYSLOT` describing the sidecar as one node owning
//! every slot. In front of a single Redis nothing of this changes.

use std::collections::BTreeSet;
use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

/// A sidecar in front of `cluster`, two of its nodes as seeds.
fn sidecar(cluster: &ClusterGroup) -> Sidecar {
    let seeds = cluster.addresses()[..2].join(",");
    Sidecar::start_url(&format!("redis+cluster://{seeds}"), &[])
}

/// A RESP2 reply, decoded.
fn frame(reply: &[u8]) -> OwnedFrame {
    match decode(reply) {
        Ok(Some((f, len))) if len == reply.len() => f,
        other => panic!("not one frame ({other:?}): {}", show(reply)),
    }
}

fn text(f: &OwnedFrame) -> String {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("not a string: {other:?}"),
    }
}

fn strings(f: &OwnedFrame) -> Vec<String> {
    match f {
        OwnedFrame::Array(items) => items.iter().map(text).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Every key `SCAN` with `options` gives, cursor after cursor, with how many pages it took.
fn scan_all(c: &mut Conn, options: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = vec!["SCAN", &cursor];
        args.extend_from_slice(options);
        let reply = c.cmd_str(&args);
        let OwnedFrame::Array(parts) = frame(&reply) else {
            panic!("SCAN {options:?}: {}", show(&reply));
        };
        keys.extend(strings(&parts[1]));
        pages += 1;
        cursor = text(&parts[0]);
        if cursor == "0" {
            return (keys, pages);
        }
        assert!(pages < 100_000, "SCAN never ends");
    }
}

/// Exactly `want`, each once.
fn assert_each_once(mut got: Vec<String>, want: &BTreeSet<String>, what: &str) {
    got.sort();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "{what}: a key came twice");
    assert_eq!(&unique, want, "{what}");
}

/// Writes `n` keys `prefix<i>` through `c` (pipelined), spread over every primary.
fn write_keys(c: &mut Conn, prefix: &str, n: usize) -> BTreeSet<String> {
    let keys: BTreeSet<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for key in &keys {
        c.send(&encode_command_str(&["SET", key, &format!("v-{key}")]));
    }
    for reply in c.read_replies(n) {
        assert_reply(&reply, b"+OK\r\n", "SET");
    }
    keys
}

#[test]
fn scan_keys_dbsize_randomkey_and_flushall_cover_every_primary() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let keys = write_keys(&mut c, "k:", 300);
    let others = write_keys(&mut c, "other:", 20);
    assert_reply(&c.cmd_str(&["HSET", "h:{x}", "f", "v"]), b":1\r\n", "HSET");
    for primary in cluster.primaries() {
        let n = int_reply(&cluster.node(primary).conn().cmd_str(&["DBSIZE"]));
        assert!(n > 0, "every primary holds some keys (node {primary}: {n})");
    }
    let mut all: BTreeSet<String> = keys.union(&others).cloned().collect();
    all.insert("h:{x}".to_owned());

    let (got, _) = scan_all(&mut c, &[]);
    assert_each_once(got, &all, "SCAN");
    let (got, pages) = scan_all(&mut c, &["COUNT", "1"]);
    assert!(pages >= 3, "COUNT 1 pages through ({pages} pages)");
    assert_each_once(got, &all, "SCAN COUNT 1");
    let (got, _) = scan_all(&mut c, &["MATCH", "k:*", "COUNT", "7"]);
    assert_each_once(got, &keys, "SCAN MATCH k:* COUNT 7");
    let (got, _) = scan_all(&mut c, &["TYPE", "hash"]);
    assert_each_once(got, &["h:{x}".to_owned()].into(), "SCAN TYPE hash");
    for bad in ["x", "5", "99999999999999999999", "-1"] {
        let reply = c.cmd_str(&["SCAN", bad]);
        assert_reply(&reply, b"-ERR invalid cursor\r\n", &format!("SCAN {bad}"));
    }

    let got = strings(&frame(&c.cmd_str(&["KEYS", "other:*"])));
    assert_each_once(got, &others, "KEYS other:*");
    let size = int_reply(&c.cmd_str(&["DBSIZE"]));
    assert_eq!(size, all.len() as i64, "DBSIZE");
    for _ in 0..10 {
        let key = bulk_reply(&c.cmd_str(&["RANDOMKEY"])).expect("a key");
        assert!(all.contains(&String::from_utf8_lossy(&key).into_owned()));
    }

    // In one pipeline, a fanned-out command sees the writes sent before it, and its reply
    // keeps its place.
    let mut pipeline = Vec::new();
    for args in [
        &["SET", "piped:1", "a"][..],
        &["SET", "piped:2", "b"],
        &["KEYS", "piped:*"],
        &["DBSIZE"],
        &["DEL", "piped:1"],
        &["DEL", "piped:2"],
        &["CLUSTER", "KEYSLOT", "piped:1"],
    ] {
        pipeline.extend(encode_command_str(args));
    }
    c.send(&pipeline);
    let replies = c.read_replies(7);
    let mut piped = strings(&frame(&replies[2]));
    piped.sort();
    assert_eq!(piped, ["piped:1", "piped:2"], "KEYS in a pipeline");
    assert_eq!(
        int_reply(&replies[3]),
        all.len() as i64 + 2,
        "DBSIZE in a pipeline"
    );
    assert_reply(&replies[5], b":1\r\n", "DEL after them");
    let keyslot = format!(":{}\r\n", slot(b"piped:1"));
    assert_reply(&replies[6], keyslot.as_bytes(), "KEYSLOT last");

    // A key cached in L1 before the flush is not served after it.
    let cached = "k:1";
    let want = bulk(format!("v-{cached}").as_bytes());
    assert_reply(&c.cmd_str(&["GET", cached]), &want, "GET");
    assert_reply(&c.cmd_str(&["GET", cached]), &want, "GET from L1");
    assert_reply(&c.cmd_str(&["FLUSHALL"]), b"+OK\r\n", "FLUSHALL");
    for primary in cluster.primaries() {
        let n = cluster.node(primary).conn().cmd_str(&["DBSIZE"]);
        assert_reply(
            &n,
            b":0\r\n",
            &format!("DBSIZE on {primary} after FLUSHALL"),
        );
    }
    assert_reply(
        &c.cmd_str(&["GET", cached]),
        b"$-1\r\n",
        "GET after FLUSHALL",
    );
    assert_reply(&c.cmd_str(&["DBSIZE"]), b":0\r\n", "DBSIZE");
    assert_reply(&c.cmd_str(&["RANDOMKEY"]), b"$-1\r\n", "RANDOMKEY");
    assert_reply(&c.cmd_str(&["KEYS", "*"]), b"*0\r\n", "KEYS");
    assert_reply(
        &c.cmd_str(&["SCAN", "0"]),
        b"*2\r\n$1\r\n0\r\n*0\r\n",
        "SCAN",
    );
    assert_reply(&c.cmd_str(&["FLUSHDB", "ASYNC"]), b"+OK\r\n", "FLUSHDB");
}

#[test]
fn a_script_loaded_through_the_sidecar_runs_on_every_primary() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let script = "return redis.call('GET', KEYS[1])";
    let sha = bulk_reply(&c.cmd_str(&["SCRIPT", "LOAD", script])).expect("a sha");
    let sha = String::from_utf8(sha).unwrap();
    assert_eq!(sha.len(), 40, "{sha}");
    for primary in cluster.primaries() {
        let mut direct = cluster.node(primary).conn();
        let exists = direct.cmd_str(&["SCRIPT", "EXISTS", &sha]);
        assert_reply(&exists, b"*1\r\n:1\r\n", &format!("loaded on {primary}"));
    }
    for (key, _) in cluster.key_per_primary("s") {
        let value = format!("v-{key}");
        assert_reply(&c.cmd_str(&["SET", &key, &value]), b"+OK\r\n", "SET");
        let got = c.cmd_str(&["EVALSHA", &sha, "1", &key]);
        assert_reply(&got, &bulk(value.as_bytes()), &format!("EVALSHA {key}"));
    }
    let unknown = "0".repeat(40);
    let exists = c.cmd_str(&["SCRIPT", "EXISTS", &sha, &unknown]);
    assert_reply(&exists, b"*2\r\n:1\r\n:0\r\n", "SCRIPT EXISTS");
    // Missing on one primary only: not there for a client that may land on any of them.
    let first = cluster.primaries()[0];
    cluster.node(first).conn().cmd_str(&["SCRIPT", "FLUSH"]);
    let exists = c.cmd_str(&["SCRIPT", "EXISTS", &sha]);
    assert_reply(&exists, b"*1\r\n:0\r\n", "SCRIPT EXISTS, flushed on one");
    assert_reply(&c.cmd_str(&["SCRIPT", "FLUSH"]), b"+OK\r\n", "SCRIPT FLUSH");
    for primary in cluster.primaries() {
        let exists = cluster
            .node(primary)
            .conn()
            .cmd_str(&["SCRIPT", "EXISTS", &sha]);
        assert_reply(&exists, b"*1\r\n:0\r\n", &format!("flushed on {primary}"));
    }
}

#[test]
fn a_function_library_loaded_through_the_sidecar_runs_on_every_primary() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let library = "#!lua name=nclib\nredis.register_function('nc_get', function(keys) return redis.call('GET', keys[1]) end)";
    assert_reply(
        &c.cmd_str(&["FUNCTION", "LOAD", library]),
        &bulk(b"nclib"),
        "LOAD",
    );
    for (key, owner) in cluster.key_per_primary("f") {
        let listed = cluster.node(owner).conn().cmd_str(&["FUNCTION", "LIST"]);
        assert!(listed.windows(5).any(|w| w == b"nclib"), "not on {owner}");
        let value = format!("v-{key}");
        assert_reply(&c.cmd_str(&["SET", &key, &value]), b"+OK\r\n", "SET");
        let got = c.cmd_str(&["FCALL", "nc_get", "1", &key]);
        assert_reply(&got, &bulk(value.as_bytes()), &format!("FCALL {key}"));
    }
    // Loaded again without REPLACE: the error a single server gives.
    let again = c.cmd_str(&["FUNCTION", "LOAD", library]);
    assert!(
        again.starts_with(b"-ERR Library 'nclib' already exists"),
        "{}",
        show(&again)
    );
    assert_reply(
        &c.cmd_str(&["FUNCTION", "DELETE", "nclib"]),
        b"+OK\r\n",
        "DELETE",
    );
    for primary in cluster.primaries() {
        let listed = cluster.node(primary).conn().cmd_str(&["FUNCTION", "LIST"]);
        assert_reply(&listed, b"*0\r\n", &format!("deleted on {primary}"));
    }
    assert_reply(
        &c.cmd_str(&["FUNCTION", "LOAD", library]),
        &bulk(b"nclib"),
        "LOAD",
    );
    assert_reply(&c.cmd_str(&["FUNCTION", "FLUSH"]), b"+OK\r\n", "FLUSH");
    for primary in cluster.primaries() {
        let listed = cluster.node(primary).conn().cmd_str(&["FUNCTION", "LIST"]);
        assert_reply(&listed, b"*0\r\n", &format!("flushed on {primary}"));
    }
}

#[test]
fn publish_reaches_every_node_and_spublish_the_channels_shard() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    // A subscriber on every node but the seeds the sidecar knows first.
    let mut subscribers: Vec<Conn> = cluster.nodes()[2..]
        .iter()
        .map(|n| {
            let mut s = n.conn();
            s.cmd_str(&["SUBSCRIBE", "news"]);
            s
        })
        .collect();
    let published = c.cmd_str(&["PUBLISH", "news", "hello"]);
    assert!(published.starts_with(b":"), "PUBLISH: {}", show(&published));
    let message = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    for s in &mut subscribers {
        s.set_read_timeout(Duration::from_secs(5));
        assert_reply(&s.read_reply(), message, "the message on another node");
    }
    for (channel, owner) in cluster.key_per_primary("ch") {
        let mut s = cluster.node(owner).conn();
        s.cmd_str(&["SSUBSCRIBE", &channel]);
        let reply = c.cmd_str(&["SPUBLISH", &channel, "hi"]);
        assert_reply(&reply, b":1\r\n", &format!("SPUBLISH {channel}"));
        s.set_read_timeout(Duration::from_secs(5));
        let want = format!(
            "*3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n$2\r\nhi\r\n",
            channel.len()
        );
        assert_reply(&s.read_reply(), want.as_bytes(), "the shard message");
    }
}

#[test]
fn select_and_cluster_commands_describe_one_node_owning_every_slot() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let refused = b"-ERR SELECT is not allowed in cluster mode\r\n";
    assert_reply(&c.cmd_str(&["SELECT", "1"]), refused, "SELECT 1");
    assert_reply(&c.cmd_str(&["SELECT", "-1"]), refused, "SELECT -1");
    assert_reply(&c.cmd_str(&["SELECT", "0"]), b"+OK\r\n", "SELECT 0");
    assert_reply(&c.cmd_str(&["SET", "after-select", "1"]), b"+OK\r\n", "SET");
    // Answered by the sidecar: no primary was asked (a replica runs the SELECT its primary's
    // replication stream begins with).
    for port in cluster.primaries() {
        let node = cluster.node(port);
        assert_eq!(commandstat_calls(node, "select"), 0, "SELECT on {port}");
    }
    // Not a number Redis reads: a node words the error.
    let not_int = b"-ERR value is not an integer or out of range\r\n";
    assert_reply(&c.cmd_str(&["SELECT", "x"]), not_int, "SELECT x");
    assert_reply(&c.cmd_str(&["SELECT", "01"]), not_int, "SELECT 01");

    let id = bulk_reply(&c.cmd_str(&["CLUSTER", "MYID"])).expect("an id");
    let id = String::from_utf8(id).unwrap();
    assert_eq!(id.len(), 40, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let again = sidecar.conn().cmd_str(&["CLUSTER", "MYID"]);
    assert_reply(
        &again,
        &bulk(id.as_bytes()),
        "the same id on another connection",
    );
    let ip = "127.0.0.1";
    let port = sidecar.port();
    let slots =
        format!("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n{ip}\r\n:{port}\r\n$40\r\n{id}\r\n*0\r\n");
    assert_reply(&c.cmd_str(&["CLUSTER", "SLOTS"]), slots.as_bytes(), "SLOTS");
    let node = |open: &str, pairs: &str| {
        format!(
            "{open}$2\r\nid\r\n$40\r\n{id}\r\n$4\r\nport\r\n:{port}\r\n$2\r\nip\r\n$9\r\n{ip}\r\n\
             $8\r\nendpoint\r\n$9\r\n{ip}\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
             $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n{pairs}"
        )
    };
    let shards = format!(
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n{}",
        node("*14\r\n", "")
    );
    assert_reply(
        &c.cmd_str(&["CLUSTER", "SHARDS"]),
        shards.as_bytes(),
        "SHARDS",
    );
    let line = format!(
        "{id} {ip}:{port}@{} myself,master - 0 0 0 connected 0-16383\n",
        u32::from(port) + 10000
    );
    let nodes = c.cmd_str(&["cluster", "nodes"]);
    assert_reply(&nodes, &bulk(line.as_bytes()), "NODES");
    let info = bulk_reply(&c.cmd_str(&["CLUSTER", "INFO"])).expect("a bulk");
    let info = String::from_utf8(info).unwrap();
    for field in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_known_nodes:1",
        "cluster_size:1",
    ] {
        assert!(info.contains(&format!("{field}\r\n")), "{field} in {info}");
    }
    for key in ["foo", "{user1000}.following", "a"] {
        let want = format!(":{}\r\n", cluster.keyslot(key.as_bytes()));
        let got = c.cmd_str(&["CLUSTER", "KEYSLOT", key]);
        assert_reply(&got, want.as_bytes(), &format!("KEYSLOT {key}"));
    }

    // RESP3: maps where Redis 7 gives maps, verbatim text where it gives text.
    c.hello3();
    let slots = c.cmd_str(&["CLUSTER", "SLOTS"]);
    assert!(slots.ends_with(b"\r\n%0\r\n"), "{}", show(&slots));
    let shards = format!(
        "*1\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n{}",
        node("%7\r\n", "")
    );
    assert_reply(
        &c.cmd_str(&["CLUSTER", "SHARDS"]),
        shards.as_bytes(),
        "SHARDS RESP3",
    );
    let verbatim = format!("={}\r\ntxt:{line}\r\n", line.len() + 4);
    let nodes = c.cmd_str(&["CLUSTER", "NODES"]);
    assert_reply(&nodes, verbatim.as_bytes(), "NODES RESP3");
    let scan = c.cmd_str(&["SCAN", "0", "MATCH", "nothing-*"]);
    assert_reply(&scan, b"*2\r\n$1\r\n0\r\n*0\r\n", "SCAN RESP3");
    let info = c.cmd_str(&["CLUSTER", "INFO"]);
    assert!(
        info.starts_with(b"=316\r\ntxt:cluster_state:ok\r\n"),
        "{}",
        show(&info)
    );
}

#[test]
fn in_front_of_a_single_redis_these_commands_are_the_upstreams() {
    let (redis, sidecar) = start_pair(&[]);
    let (mut direct, mut proxied) = (redis.conn(), sidecar.conn());
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "SLOTS"],
        &["SELECT", "1"],
        &["SET", "k", "v"],
        &["SELECT", "0"],
        &["SCAN", "5"],
        &["DBSIZE"],
    ] {
        let request = encode_command_str(args);
        assert_same_reply(&mut direct, &mut proxied, &request);
    }
}
