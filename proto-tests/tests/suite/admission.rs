//! `--l1-admit-second-miss`: once L1 is crowded, a key's first miss is the plain command (no
//! PTTL, nothing filled), its second miss fetches and fills, the third read is a hit. By
//! default, and with room in L1, the first miss fills.

use proto_tests::*;

/// A sidecar with a 1 MiB L1 read full of 900-byte values (`extra` flags added), and its
/// upstream.
fn crowded_by(extra: &[&str]) -> (Redis, Sidecar) {
    let mut args = vec!["--l1-max-bytes", "1MiB"];
    args.extend_from_slice(extra);
    let (redis, sidecar) = start_pair(&args);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let filler = vec![b'f'; 900];
    for i in 0..1400 {
        let key = format!("f:{i}");
        let reply = direct.cmd(&[b"SET", key.as_bytes(), &filler]);
        assert_reply(&reply, b"+OK\r\n", "SET filler");
        c.cmd_str(&["GET", &key]);
    }
    let info = c.info(Some("nearcache"));
    assert!(
        info_u64(&info, "l1_used_bytes") * 4 >= info_u64(&info, "l1_max_bytes") * 3,
        "the fillers did not crowd L1\n{info}"
    );
    (redis, sidecar)
}

fn crowded_pair() -> (Redis, Sidecar) {
    crowded_by(&["--l1-admit-second-miss", "true"])
}

#[test]
fn by_default_a_crowded_l1_fills_on_the_first_miss() {
    let (redis, sidecar) = crowded_by(&[]);
    let mut c = sidecar.conn();
    assert_reply(
        &redis.conn().cmd_str(&["SET", "cold", "v1"]),
        b"+OK\r\n",
        "SET",
    );
    reset_stats(&redis);
    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v1"), "first GET");
    assert_eq!(commandstat_calls(&redis, "pttl"), 1, "fetched to fill");
    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v1"), "second GET");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "the second GET is a hit"
    );
    assert_eq!(not_admitted(&mut c), 0);
}

#[test]
fn with_room_in_l1_the_first_miss_fills() {
    let (redis, sidecar) = start_pair(&["--l1-admit-second-miss", "true"]);
    let mut c = sidecar.conn();
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    reset_stats(&redis);
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "first GET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "second GET");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        1,
        "the second GET is a hit"
    );
    assert_eq!(not_admitted(&mut c), 0);
}

fn not_admitted(c: &mut Conn) -> u64 {
    info_u64(&c.info(Some("nearcache")), "l1_not_admitted")
}

#[test]
fn a_crowded_l1_fills_on_the_second_miss() {
    let (redis, sidecar) = crowded_pair();
    let mut c = sidecar.conn();
    assert_reply(
        &redis.conn().cmd_str(&["SET", "cold", "v1"]),
        b"+OK\r\n",
        "SET",
    );
    let declined = not_admitted(&mut c);
    let tracked = tracked_keys(&redis);
    reset_stats(&redis);

    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v1"), "first GET");
    assert_eq!(commandstat_calls(&redis, "get"), 1);
    assert_eq!(
        commandstat_calls(&redis, "pttl"),
        0,
        "a first miss is the GET alone"
    );
    assert_eq!(not_admitted(&mut c), declined + 1);
    assert_eq!(commandstat_calls(&redis, "client|caching"), 1);
    assert_eq!(
        tracked_keys(&redis),
        tracked,
        "a first miss leaves no tracking"
    );

    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v1"), "second GET");
    assert_eq!(commandstat_calls(&redis, "get"), 2);
    assert_eq!(
        commandstat_calls(&redis, "pttl"),
        1,
        "the second miss fetches to fill"
    );
    assert_eq!(not_admitted(&mut c), declined + 1);
    assert_eq!(
        tracked_keys(&redis),
        tracked + 1,
        "what fills L1 is tracked"
    );

    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v1"), "third GET");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        2,
        "the third GET is a hit"
    );

    // A write ends the entry as always; the key is remembered, so its next miss fills.
    assert_reply(&c.cmd_str(&["SET", "cold", "v2"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "cold"]), &bulk(b"v2"), "GET after SET");
    assert_eq!(commandstat_calls(&redis, "pttl"), 2);
}

#[test]
fn a_crowded_l1_passes_first_misses_of_an_mget_through() {
    let (redis, sidecar) = crowded_pair();
    let mut direct = redis.conn();
    for (k, v) in [("m:a", "1"), ("m:b", "2")] {
        assert_reply(&direct.cmd_str(&["SET", k, v]), b"+OK\r\n", "SET");
    }
    let mut c = sidecar.conn();
    let expected = [
        b"*3\r\n".to_vec(),
        bulk(b"1"),
        bulk(b"2"),
        b"$-1\r\n".to_vec(),
    ]
    .concat();
    let declined = not_admitted(&mut c);
    let tracked = tracked_keys(&redis);
    reset_stats(&redis);

    let reply = c.cmd_str(&["MGET", "m:a", "m:b", "m:none"]);
    assert_reply(&reply, &expected, "first MGET");
    assert_eq!(commandstat_calls(&redis, "mget"), 1);
    assert_eq!(commandstat_calls(&redis, "client|caching"), 1);
    assert_eq!(
        tracked_keys(&redis),
        tracked,
        "first misses leave no tracking"
    );
    assert_eq!(
        commandstat_calls(&redis, "pttl"),
        0,
        "first misses: no PTTL"
    );
    assert_eq!(not_admitted(&mut c), declined + 3);

    let reply = c.cmd_str(&["MGET", "m:a", "m:b", "m:none"]);
    assert_reply(&reply, &expected, "second MGET");
    assert_eq!(commandstat_calls(&redis, "mget"), 2);
    assert_eq!(
        commandstat_calls(&redis, "pttl"),
        3,
        "second misses fetch to fill"
    );
    assert_eq!(
        tracked_keys(&redis),
        tracked + 3,
        "what fills L1 is tracked"
    );

    let reply = c.cmd_str(&["MGET", "m:a", "m:b", "m:none"]);
    assert_reply(&reply, &expected, "third MGET");
    assert_eq!(
        commandstat_calls(&redis, "mget"),
        2,
        "the third MGET is all hits"
    );
}

#[test]
fn a_crowded_l1_keeps_get_errors_and_pipelines_in_order() {
    let (redis, sidecar) = crowded_pair();
    assert_reply(
        &redis.conn().cmd_str(&["HSET", "h", "f", "v"]),
        b":1\r\n",
        "HSET",
    );
    let mut c = sidecar.conn();
    // A first miss of a hash, then writes and reads of the same keys in one pipeline.
    let commands: [&[&str]; 6] = [
        &["GET", "h"],
        &["SET", "p", "1"],
        &["GET", "p"],
        &["DEL", "h"],
        &["GET", "h"],
        &["MGET", "p", "h"],
    ];
    let replies = send_pipeline(&mut c, &commands);
    let expected: [&[u8]; 6] = [
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"+OK\r\n",
        b"$1\r\n1\r\n",
        b":1\r\n",
        b"$-1\r\n",
        b"*2\r\n$1\r\n1\r\n$-1\r\n",
    ];
    for (i, (got, want)) in replies.iter().zip(expected).enumerate() {
        assert_reply(got, want, &format!("pipelined reply {i}"));
    }
}
