//! Unit tests of the `CLUSTER SHARDS` and `CLUSTER SLOTS` readers, on replies written out
//! as Redis 7.0 sends them (RESP2).

use super::*;
use crate::upstream::cluster::slot::SLOTS;

/// A RESP2 value for building replies.
enum V {
    S(&'static str),
    I(i64),
    A(Vec<V>),
}

fn encode(v: &V, out: &mut String) {
    match v {
        V::S(s) => out.push_str(&format!("${}\r\n{s}\r\n", s.len())),
        V::I(n) => out.push_str(&format!(":{n}\r\n")),
        V::A(items) => {
            out.push_str(&format!("*{}\r\n", items.len()));
            for item in items {
                encode(item, out);
            }
        }
    }
}

fn frame(v: V) -> Bytes {
    let mut out = String::new();
    encode(&v, &mut out);
    Bytes::from(out)
}

fn shard_node(id: &'static str, endpoint: &'static str, port: i64, role: &'static str) -> V {
    use V::*;
    A(vec![
        S("id"),
        S(id),
        S("port"),
        I(port),
        S("ip"),
        S("127.0.0.1"),
        S("endpoint"),
        S(endpoint),
        S("role"),
        S(role),
        S("replication-offset"),
        I(0),
        S("health"),
        S("online"),
    ])
}

fn shard(ranges: Vec<i64>, nodes: Vec<V>) -> V {
    use V::*;
    A(vec![
        S("slots"),
        A(ranges.into_iter().map(I).collect()),
        S("nodes"),
        A(nodes),
    ])
}

#[test]
fn shards_give_owners_replicas_and_endpoints() {
    let reply = frame(V::A(vec![
        shard(
            vec![0, 5460, 10923, 10999],
            vec![
                shard_node("a", "127.0.0.1", 7000, "master"),
                shard_node("b", "", 7003, "replica"),
            ],
        ),
        shard(
            vec![5461, 10922, 11000, 16383],
            vec![
                shard_node("c", "?", 7001, "master"),
                shard_node("d", "redis-d.example", 7004, "replica"),
            ],
        ),
    ]));
    let map = from_shards(&reply, "10.1.1.1:7005", false).unwrap();
    assert_eq!(map.assigned(), SLOTS);
    assert_eq!(map.owner_address(0), Some("127.0.0.1:7000"));
    assert_eq!(map.owner_address(10999), Some("127.0.0.1:7000"));
    // `?` is the host the reply was read from.
    assert_eq!(map.owner_address(5461), Some("10.1.1.1:7001"));
    assert_eq!(map.owner(16383).unwrap().id, "c");
    let replica = map.replicas(0);
    assert_eq!(replica[0].address, "10.1.1.1:7003");
    assert_eq!(replica[0].role, Role::Replica);
    assert_eq!(map.replicas(6000)[0].address, "redis-d.example:7004");
    assert_eq!(map.nodes().len(), 4);
}

#[test]
fn shards_take_the_tls_port_for_a_tls_upstream_and_keep_the_hostname() {
    use V::*;
    let node = A(vec![
        S("id"),
        S("a"),
        S("port"),
        I(7000),
        S("tls-port"),
        I(17000),
        S("ip"),
        S("::1"),
        S("endpoint"),
        S("::1"),
        S("hostname"),
        S("node-a"),
        S("role"),
        S("master"),
    ]);
    let reply = frame(A(vec![shard(vec![0, 16383], vec![node])]));
    let tls = from_shards(&reply, "[::1]:17000", true).unwrap();
    let owner = tls.owner(5).unwrap();
    assert_eq!(owner.address, "[::1]:17000");
    assert_eq!((owner.port, owner.tls_port), (Some(7000), Some(17000)));
    assert_eq!(owner.hostname.as_deref(), Some("node-a"));
    let plain = from_shards(&reply, "[::1]:7000", false).unwrap();
    assert_eq!(plain.owner_address(5), Some("[::1]:7000"));
}

#[test]
fn a_shard_without_primary_leaves_its_slots_unassigned() {
    let reply = frame(V::A(vec![shard(
        vec![0, 99],
        vec![shard_node("b", "127.0.0.1", 7003, "replica")],
    )]));
    let map = from_shards(&reply, "127.0.0.1:7003", false).unwrap();
    assert!(map.is_empty());
    assert_eq!(map.nodes().len(), 1);
}

#[test]
fn slots_give_owners_replicas_and_hostnames() {
    use V::*;
    let reply = frame(A(vec![
        A(vec![
            I(0),
            I(8191),
            A(vec![S("127.0.0.1"), I(7000), S("a"), A(vec![])]),
            A(vec![
                S(""),
                I(7003),
                S("b"),
                A(vec![S("hostname"), S("node-b")]),
            ]),
        ]),
        A(vec![
            I(8192),
            I(16383),
            A(vec![S("?"), I(7001), S("c"), A(vec![])]),
        ]),
    ]));
    let map = from_slots(&reply, "192.168.0.9:7002").unwrap();
    assert_eq!(map.assigned(), SLOTS);
    assert_eq!(map.owner_address(1), Some("127.0.0.1:7000"));
    assert_eq!(map.owner_address(9000), Some("192.168.0.9:7001"));
    let replicas = map.replicas(1);
    assert_eq!(replicas[0].address, "192.168.0.9:7003");
    assert_eq!(replicas[0].hostname.as_deref(), Some("node-b"));
    assert!(map.replicas(9000).is_empty());
}

#[test]
fn errors_and_malformed_replies_are_errors() {
    let noperm = Bytes::from_static(b"-NOPERM this user has no permissions\r\n");
    let e = from_shards(&noperm, "h:1", false).unwrap_err();
    assert!(e.contains("NOPERM"), "{e}");
    assert!(from_slots(&noperm, "h:1").is_err());
    for bad in [
        &b"+OK\r\n"[..],
        b"*1\r\n:1\r\n",
        b"*1\r\n*1\r\n:1\r\n",
        b"*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n:7000\r\n",
    ] {
        let bad = Bytes::copy_from_slice(bad);
        assert!(from_slots(&bad, "h:1").is_err(), "{bad:?}");
    }
    let no_port = frame(V::A(vec![shard(
        vec![0, 1],
        vec![V::A(vec![
            V::S("id"),
            V::S("x"),
            V::S("role"),
            V::S("master"),
        ])],
    )]));
    assert!(from_shards(&no_port, "h:1", false).is_err());
    assert!(from_shards(&Bytes::from_static(b"*0\r\n"), "h:1", false)
        .unwrap()
        .is_empty());
}

#[test]
fn hosts_and_addresses() {
    assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
    assert_eq!(host_of("[::1]:7000"), "[::1]");
    assert_eq!(host_of("redis.example:6379"), "redis.example");
    assert_eq!(address(Some(""), 7001, "[::1]:7000"), "[::1]:7001");
    assert_eq!(address(Some("?"), 7001, "h:7000"), "h:7001");
    assert_eq!(address(None, 7001, "h:7000"), "h:7001");
    assert_eq!(address(Some("fe80::1"), 7001, "h:7000"), "[fe80::1]:7001");
}

/// `node` with `health: fail` instead of `online`.
fn failed_node(node: V) -> V {
    let V::A(mut fields) = node else {
        unreachable!()
    };
    let last = fields.len() - 1;
    fields[last] = V::S("fail");
    V::A(fields)
}

#[test]
fn a_failed_node_without_slots_is_left_out_and_a_failed_owner_kept() {
    let reply = frame(V::A(vec![
        shard(
            vec![0, 8191],
            vec![failed_node(shard_node("a", "127.0.0.1", 7000, "master"))],
        ),
        shard(
            vec![8192, 16383],
            vec![shard_node("b", "127.0.0.1", 7001, "master")],
        ),
        // A killed primary its replica replaced: a primary of no slots, failed.
        shard(
            vec![],
            vec![failed_node(shard_node("c", "127.0.0.1", 7002, "master"))],
        ),
    ]));
    let map = from_shards(&reply, "127.0.0.1:7001", false).unwrap();
    assert_eq!(map.owner_address(0), Some("127.0.0.1:7000"));
    assert_eq!(map.owner_address(16383), Some("127.0.0.1:7001"));
    let addresses: Vec<&str> = map.nodes().iter().map(|n| n.address.as_str()).collect();
    assert_eq!(addresses, ["127.0.0.1:7000", "127.0.0.1:7001"]);
}
