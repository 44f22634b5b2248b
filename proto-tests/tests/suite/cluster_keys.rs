//! Multi-key commands in front of a Redis Cluster: keys of one slot forwarded as they are;
//! across slots, MGET answered from L1 first with its misses fetched per slot, DEL, UNLINK,
//! EXISTS and TOUCH split and summed, and everything else Redis Cluster refuses given its
//! own `-CROSSSLOT`, byte for byte.

use std::collections::HashSet;
use std::time::Duration;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// A sidecar in front of `cluster`, two of its nodes as seeds.
fn sidecar(cluster: &ClusterGroup) -> Sidecar {
    let seeds = cluster.addresses()[..2].join(",");
    Sidecar::start_url(&format!("redis+cluster://{seeds}"), &[])
}

/// Two keys owned by different primaries, named from `prefix`.
fn keys_on_two_nodes(cluster: &ClusterGroup, prefix: &str) -> (String, String) {
    let a = format!("{prefix}0");
    let owner = cluster.owner(slot(a.as_bytes()));
    let b = (1..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| cluster.owner(slot(k.as_bytes())) != owner)
        .unwrap();
    (a, b)
}

/// Sends a command through the sidecar to every primary (L1 serves once the sidecar has
/// reached every node).
fn touch_every_primary(cluster: &ClusterGroup, c: &mut Conn) {
    let mut left: HashSet<u16> = cluster.primaries().into_iter().collect();
    for i in 0.. {
        let key = format!("touch{i}");
        if left.remove(&cluster.owner(slot(key.as_bytes()))) {
            assert_reply(&c.cmd_str(&["EXISTS", &key]), b":0\r\n", "EXISTS");
        }
        if left.is_empty() {
            return;
        }
    }
}

/// The MGET calls every primary has run.
fn mget_calls(cluster: &ClusterGroup) -> u64 {
    let primaries = cluster.primaries();
    (primaries.iter())
        .map(|p| commandstat_calls(cluster.node(*p), "mget"))
        .sum()
}

fn l1_hits(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_hits")
}

/// An MGET reply of these elements (`None`: a missing key).
fn mget_reply(values: &[Option<String>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", values.len()).into_bytes();
    for v in values {
        match v {
            Some(v) => out.extend(bulk(v.as_bytes())),
            None => out.extend(b"$-1\r\n"),
        }
    }
    out
}

#[test]
fn cross_slot_mget_of_100_keys_equals_the_values_written_with_one_mget_per_slot() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    // 100 keys over ten hash tags (ten slots, over every primary); one in five missing.
    let keys: Vec<String> = (0..100).map(|i| format!("{{g{}}}k{i}", i % 10)).collect();
    let slots: HashSet<u16> = keys.iter().map(|k| slot(k.as_bytes())).collect();
    let nodes: HashSet<u16> = slots.iter().map(|s| cluster.owner(*s)).collect();
    assert!(nodes.len() > 1, "the keys span nodes");
    let mut want = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if i % 5 == 0 {
            want.push(None);
            continue;
        }
        let value = format!("value-{i}");
        assert_reply(&c.cmd_str(&["SET", key, &value]), b"+OK\r\n", "SET");
        want.push(Some(value));
    }
    // A third of them in L1 already (read twice: a fill, then a hit).
    for key in keys.iter().step_by(3) {
        c.cmd_str(&["GET", key]);
        c.cmd_str(&["GET", key]);
    }
    let (hits, mgets) = (l1_hits(&sidecar), mget_calls(&cluster));
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(|k| k.as_str()));
    assert_reply(&c.cmd_str(&args), &mget_reply(&want), "MGET of 100 keys");
    assert!(l1_hits(&sidecar) >= hits + 20, "the keys in L1 were hits");
    // The misses (of every tag) went as one MGET per slot, not one per key.
    assert_eq!(mget_calls(&cluster) - mgets, slots.len() as u64);
    // Filled: the same MGET again is answered the same, and by L1 only for the present keys.
    assert_reply(&c.cmd_str(&args), &mget_reply(&want), "MGET again");
    // A client in RESP3 gets its own nulls.
    let mut c3 = sidecar.conn();
    c3.hello3();
    let reply = c3.cmd_str(&["MGET", &keys[0], &keys[1], &keys[2]]);
    let v = |i: usize| want[i].clone().unwrap();
    let expected = format!(
        "*3\r\n_\r\n${}\r\n{}\r\n${}\r\n{}\r\n",
        v(1).len(),
        v(1),
        v(2).len(),
        v(2)
    );
    assert_reply(&reply, expected.as_bytes(), "RESP3 MGET");
}

#[test]
fn del_unlink_exists_touch_across_slots_are_split_and_summed_and_evict_l1() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "d");
    // Two keys of one slot: one part of the split holds both.
    let (x, y) = ("{e}1".to_owned(), "{e}2".to_owned());
    assert_eq!(slot(x.as_bytes()), slot(y.as_bytes()));
    touch_every_primary(&cluster, &mut c);
    for key in [&a, &b, &x, &y] {
        assert_reply(&c.cmd_str(&["SET", key, "v"]), b"+OK\r\n", "SET");
        // In L1: a fill, then a hit.
        c.cmd_str(&["GET", key]);
        let hits = l1_hits(&sidecar);
        assert_reply(&c.cmd_str(&["GET", key]), &bulk(b"v"), "GET");
        assert_eq!(l1_hits(&sidecar), hits + 1, "{key} in L1");
    }
    let cases: &[(&[&str], &[u8])] = &[
        (&["EXISTS", &a, &b, &x, "nope", &y], b":4\r\n"),
        (&["exists", &a, &a, &b], b":3\r\n"),
        (&["TOUCH", &b, &x, "nope"], b":2\r\n"),
        (&["DEL", &a, &x, "nope"], b":2\r\n"),
        (&["EXISTS", &a, &b, &x, &y], b":2\r\n"),
        (&["UNLINK", &b, &y, &a], b":2\r\n"),
        (&["EXISTS", &a, &b, &x, &y], b":0\r\n"),
        (&["DEL", &a, &b], b":0\r\n"),
    ];
    for (args, want) in cases {
        assert_reply(&c.cmd_str(args), want, &format!("{args:?}"));
    }
    // The deleted keys are gone from L1 as from the cluster.
    for key in [&a, &b, &x, &y] {
        assert_reply(&c.cmd_str(&["GET", key]), b"$-1\r\n", "GET after DEL");
        let owner = cluster.owner(slot(key.as_bytes()));
        let direct = cluster.node(owner).conn().cmd_str(&["EXISTS", key]);
        assert_reply(&direct, b":0\r\n", "EXISTS on the owner");
    }
    // Without keys: the node's own error.
    let reply = c.cmd_str(&["DEL"]);
    assert!(reply.starts_with(b"-ERR wrong number"), "{}", show(&reply));
}

#[test]
fn cross_slot_commands_get_the_crossslot_error_of_a_cluster_node_and_touch_nothing() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "x");
    // A key in L1, to show nothing is evicted (an EVAL would flush all of L1).
    assert_reply(&c.cmd_str(&["SET", &a, "kept"]), b"+OK\r\n", "SET");
    // (L1 serves once the sidecar has reached every node.)
    touch_every_primary(&cluster, &mut c);
    poll_until(Duration::from_secs(5), "a hit", || {
        let hits = l1_hits(&sidecar);
        c.cmd_str(&["GET", &a]) == bulk(b"kept") && l1_hits(&sidecar) > hits
    });
    let script = "return redis.call('SET', KEYS[1], 'z')";
    let commands: &[&[&str]] = &[
        &["MSET", &a, "1", &b, "2"],
        &["MSETNX", &a, "1", &b, "2"],
        &["SUNION", &a, &b],
        &["SUNIONSTORE", &a, &b],
        &["RENAME", &a, &b],
        &["EVAL", script, "2", &a, &b],
        &["ZUNIONSTORE", &a, "1", &b],
        &["LMOVE", &a, &b, "LEFT", "LEFT"],
        &["BITOP", "AND", &a, &b],
    ];
    let owner = cluster.owner(slot(a.as_bytes()));
    let primaries = cluster.primaries();
    let calls = |name: &str| -> u64 {
        (primaries.iter())
            .map(|p| commandstat_calls(cluster.node(*p), name))
            .sum()
    };
    for args in commands {
        let direct = cluster.node(owner).conn().cmd_str(args);
        assert_reply(&direct, CROSSSLOT, &format!("{args:?} on a node"));
        let name = args[0].to_ascii_lowercase();
        let before = calls(&name);
        let hits = l1_hits(&sidecar);
        assert_reply(&c.cmd_str(args), &direct, &format!("{args:?}"));
        assert_eq!(calls(&name), before, "{args:?} was not sent");
        assert_reply(&c.cmd_str(&["GET", &a]), &bulk(b"kept"), "GET");
        assert_eq!(l1_hits(&sidecar), hits + 1, "{args:?} evicted nothing");
    }
}

#[test]
fn multi_key_commands_of_one_slot_are_forwarded_as_they_are() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let cases: &[(&[&str], &[u8])] = &[
        (&["MSET", "{t}a", "1", "{t}b", "2"], b"+OK\r\n"),
        (&["MSETNX", "{t}c", "3", "{t}d", "4"], b":1\r\n"),
        (&["SADD", "{t}s1", "x", "y"], b":2\r\n"),
        (&["SADD", "{t}s2", "y", "z"], b":2\r\n"),
        (&["SINTER", "{t}s1", "{t}s2"], b"*1\r\n$1\r\ny\r\n"),
        (&["RENAME", "{t}d", "{t}e"], b"+OK\r\n"),
        (
            &[
                "EVAL",
                "return redis.call('GET', KEYS[2])",
                "2",
                "{t}a",
                "{t}e",
            ],
            b"$1\r\n4\r\n",
        ),
        (
            &["MGET", "{t}a", "{t}b", "{t}e"],
            b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n4\r\n",
        ),
        (&["EXISTS", "{t}a", "{t}b", "{t}d"], b":2\r\n"),
        (&["DEL", "{t}a", "{t}b", "{t}c", "{t}e"], b":4\r\n"),
    ];
    for (args, want) in cases {
        assert_reply(&c.cmd_str(args), want, &format!("{args:?}"));
    }
    // The script ran on the tag's node, where its keys are.
    let owner = cluster.owner(slot(b"t"));
    assert_eq!(commandstat_calls(cluster.node(owner), "eval"), 1);
}

#[test]
fn a_pipeline_mixing_split_refused_and_plain_commands_keeps_reply_order() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "p");
    let (x, _) = keys_on_two_nodes(&cluster, "q");
    assert_reply(&c.cmd_str(&["SET", &x, "cached"]), b"+OK\r\n", "SET");
    c.cmd_str(&["GET", &x]);
    let steps: &[(&[&str], &[u8])] = &[
        (&["SET", &a, "1"], b"+OK\r\n"),
        (&["GET", &x], b"$6\r\ncached\r\n"),
        (
            &["MGET", &a, &b, &x],
            b"*3\r\n$1\r\n1\r\n$-1\r\n$6\r\ncached\r\n",
        ),
        (&["MSET", &a, "2", &b, "2"], CROSSSLOT),
        (&["SET", &b, "3"], b"+OK\r\n"),
        (&["EXISTS", &a, &b, &x, "none"], b":3\r\n"),
        (&["MGET", &b, &a], b"*2\r\n$1\r\n3\r\n$1\r\n1\r\n"),
        (&["DEL", &a, &b], b":2\r\n"),
        (&["SUNION", &a, &b], CROSSSLOT),
        (
            &["MGET", &a, &b, &x],
            b"*3\r\n$-1\r\n$-1\r\n$6\r\ncached\r\n",
        ),
        (&["MSET", "{t}1", "a", "{t}2", "b"], b"+OK\r\n"),
        (&["MGET", "{t}1", "{t}2"], b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        (&["PING"], b"+PONG\r\n"),
    ];
    let mut pipeline = Vec::new();
    for (args, _) in steps {
        pipeline.extend(encode_command_str(args));
    }
    // Twice over, the second time with the keys' state as the first left it.
    for round in 0..2 {
        c.send(&pipeline);
        for (args, want) in steps {
            let got = c.read_reply();
            assert_reply(&got, want, &format!("round {round}: {args:?}"));
        }
    }
}

#[test]
fn mget_across_slots_without_l1_is_split_per_slot_and_merged_in_key_order() {
    let cluster = ClusterGroup::start();
    let seeds = cluster.addresses()[..2].join(",");
    let url = format!("redis+cluster://{seeds}");
    let sidecar = Sidecar::start_url(&url, &["--l1-ttl", "0"]);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "n");
    assert_reply(&c.cmd_str(&["SET", &a, "1"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["SET", &b, "2"]), b"+OK\r\n", "SET");
    let reply = c.cmd_str(&["MGET", &b, "{n}missing", &a, &b]);
    let want = b"*4\r\n$1\r\n2\r\n$-1\r\n$1\r\n1\r\n$1\r\n2\r\n";
    assert_reply(&reply, want, "MGET without L1");
    let mut c3 = sidecar.conn();
    c3.hello3();
    let reply = c3.cmd_str(&["MGET", &a, "{n}missing", &b]);
    assert_reply(&reply, b"*3\r\n$1\r\n1\r\n_\r\n$1\r\n2\r\n", "RESP3");
}

#[test]
fn a_part_redirected_by_a_moved_slot_is_followed_inside_the_sidecar() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "r");
    let m = "mv0".to_owned();
    assert!(![&a, &b]
        .iter()
        .any(|k| slot(k.as_bytes()) == slot(m.as_bytes())));
    for key in [&a, &b, &m] {
        assert_reply(&c.cmd_str(&["SET", key, key]), b"+OK\r\n", "SET");
    }
    // The slots move after the sidecar took its map: their parts get -MOVED.
    let to = |key: &str| {
        let owner = cluster.owner(slot(key.as_bytes()));
        (cluster.primaries().into_iter())
            .find(|p| *p != owner)
            .unwrap()
    };
    cluster.move_slot(slot(m.as_bytes()), to(&m));
    let reply = c.cmd_str(&["MGET", &b, &m, "mv-none"]);
    let want = format!("*3\r\n$2\r\n{b}\r\n${}\r\n{m}\r\n$-1\r\n", m.len());
    assert_reply(&reply, want.as_bytes(), "MGET with a moved slot");
    cluster.move_slot(slot(a.as_bytes()), to(&a));
    assert_reply(
        &c.cmd_str(&["EXISTS", &a, &b, "r-none"]),
        b":2\r\n",
        "EXISTS",
    );
    assert_reply(&c.cmd_str(&["DEL", &b, &a]), b":2\r\n", "DEL");
    assert_reply(
        &c.cmd_str(&["EXISTS", &a, &b]),
        b":0\r\n",
        "EXISTS after DEL",
    );
}

#[test]
fn reads_that_fill_nothing_leave_no_tracking_on_any_node() {
    let cluster = ClusterGroup::start();
    let sidecar = sidecar(&cluster);
    let mut c = sidecar.conn();
    let (a, b) = keys_on_two_nodes(&cluster, "h");
    for k in [&a, &b] {
        let owner = cluster.owner(slot(k.as_bytes()));
        assert_eq!(cluster.call(owner, &["HSET", k, "f", "x"]), "1", "HSET {k}");
    }
    touch_every_primary(&cluster, &mut c);
    let tracked = |cluster: &ClusterGroup| -> u64 {
        let primaries = cluster.primaries();
        primaries
            .iter()
            .map(|&p| tracked_keys(cluster.node(p)))
            .sum()
    };
    // Forwarded reads on two nodes, pipelined: each behind its node's `CLIENT CACHING no`.
    let reads: [&[&str]; 3] = [&["HGET", &a, "f"], &["HGET", &b, "f"], &["HLEN", &a]];
    let replies = send_pipeline(&mut c, &reads);
    let want: [&[u8]; 3] = [b"$1\r\nx\r\n", b"$1\r\nx\r\n", b":1\r\n"];
    for ((reply, want), args) in replies.iter().zip(want).zip(reads) {
        assert_reply(reply, want, &format!("{args:?}"));
    }
    assert_eq!(tracked(&cluster), 0, "no node tracks what fills nothing");
    // A GET that fills L1 is tracked on the key's owner.
    let owner = cluster.owner(slot(b"cached"));
    assert_eq!(cluster.call(owner, &["SET", "cached", "v"]), "OK");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "cached"]), &bulk(b"v"), "GET cached");
    }
    assert_eq!(tracked(&cluster), 1, "the filled key is tracked");
}
