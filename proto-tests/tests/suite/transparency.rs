//! Replies through the sidecar are byte-identical to direct Redis: pipelines, inline
//! commands, errors, RESP3 types, requests split across writes.

use proto_tests::*;

/// A pipeline mixing writes, L1 hits and misses, local and forwarded commands and errors;
/// every key starts with `p` so the same shape can run directly and through the sidecar on
/// disjoint keys. Returns (bytes, number of replies).
fn mixed_pipeline(p: &str) -> (Vec<u8>, usize) {
    let k = |s: &str| format!("{p}{s}");
    let big = "x".repeat(100 * 1024);
    let requests: Vec<Vec<u8>> = vec![
        // Before any write: hits, a local command and a refused one between forwards, so
        // replies known at once must wait behind forwards not sent yet.
        encode_command_str(&["ECHO", "first"]),
        encode_command_str(&["GET", &k("k1")]),
        encode_command_str(&["CLIENT", "GETNAME"]),
        encode_command_str(&["PING"]),
        encode_command_str(&["GET", &k("missing")]),
        encode_command_str(&["MGET", &k("k1"), &k("missing")]),
        encode_command_str(&["ECHO", &big]),
        encode_command_str(&["GET", &k("k1")]),
        encode_command_str(&["SELECT", "0"]),
        encode_command_str(&["SET", &k("k2"), "v2"]),
        encode_command_str(&["GET", &k("k1")]),
        encode_command_str(&["GET", &k("missing")]),
        encode_command_str(&["MGET", &k("k1"), &k("missing"), &k("k2")]),
        encode_command_str(&["PING"]),
        encode_command_str(&["INCR", &k("ctr")]),
        b"*1\r\n$3\r\nGET\r\n".to_vec(),
        encode_command_str(&["GET", &k("k2")]),
        b"PING inline\r\n".to_vec(),
        encode_command_str(&["ECHO", &big]),
        encode_command_str(&["INCR", &k("k1")]),
        encode_command_str(&["HSET", &k("h"), "f", "v"]),
        encode_command_str(&["HGETALL", &k("h")]),
        encode_command_str(&["GET", &k("h")]),
        encode_command_str(&["NOSUCHCOMMAND", "arg"]),
        encode_command_str(&["GET", &k("k1")]),
        encode_command_str(&["DEL", &k("k2")]),
        encode_command_str(&["GET", &k("k2")]),
        encode_command_str(&["MGET", &k("k2"), &k("k1"), &k("k1")]),
        encode_command_str(&["INCR", &k("ctr")]),
        encode_command_str(&["PING"]),
    ];
    (requests.concat(), requests.len())
}

#[test]
fn pipelining_preserves_order() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    for p in ["d:", "s:"] {
        assert_reply(
            &direct.cmd_str(&["SET", &format!("{p}k1"), "v1"]),
            b"+OK\r\n",
            "SET k1",
        );
    }
    // Warm the sidecar's keys so the pipeline has hits and cached nils in it.
    assert_reply(&c.cmd_str(&["GET", "s:k1"]), &bulk(b"v1"), "warm s:k1");
    assert_reply(
        &c.cmd_str(&["GET", "s:missing"]),
        b"$-1\r\n",
        "warm s:missing",
    );

    let (d_req, n) = mixed_pipeline("d:");
    let (s_req, _) = mixed_pipeline("s:");
    direct.send(&d_req);
    let expected = direct.read_replies(n);
    c.send(&s_req);
    let got = c.read_replies(n);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_reply(g, e, &format!("reply {i} of the pipeline"));
    }
    assert_reply(
        &c.cmd_str(&["PING"]),
        b"+PONG\r\n",
        "nothing left over after the pipeline",
    );
}

#[test]
fn long_pipeline_of_hits_and_misses_keeps_order() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    for i in (0..100).step_by(2) {
        let reply = direct.cmd_str(&["SET", &format!("lp:{i}"), &format!("value-{i}")]);
        assert_reply(&reply, b"+OK\r\n", "SET");
    }
    let mut c = sidecar.conn();
    // Warm a third of the keys, so hits, cached nils and misses interleave.
    for i in (0..100).step_by(3) {
        c.cmd_str(&["GET", &format!("lp:{i}")]);
    }
    let requests: Vec<Vec<u8>> = (0..2000)
        .map(|i| {
            if i % 7 == 0 {
                encode_command_str(&[
                    "MGET",
                    &format!("lp:{}", i % 100),
                    &format!("lp:{}", (i + 1) % 100),
                ])
            } else {
                encode_command_str(&["GET", &format!("lp:{}", (i * 13) % 100)])
            }
        })
        .collect();
    let batch = requests.concat();
    for round in 0..2 {
        direct.send(&batch);
        let expected = direct.read_replies(requests.len());
        c.send(&batch);
        let got = c.read_replies(requests.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_reply(g, e, &format!("round {round}, reply {i}"));
        }
    }
}

#[test]
fn requests_split_across_writes_are_reassembled() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    let batch = [
        encode_command_str(&["SET", "split", "value"]),
        encode_command_str(&["GET", "split"]),
        encode_command_str(&["GET", "split"]),
        encode_command_str(&["MGET", "split", "nope"]),
        b"PING\r\n".to_vec(),
    ]
    .concat();
    for byte in &batch {
        c.send(std::slice::from_ref(byte));
    }
    let expected: [&[u8]; 5] = [
        b"+OK\r\n",
        b"$5\r\nvalue\r\n",
        b"$5\r\nvalue\r\n",
        b"*2\r\n$5\r\nvalue\r\n$-1\r\n",
        b"+PONG\r\n",
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_reply(
            &c.read_reply(),
            want,
            &format!("reply {i} to a request sent byte by byte"),
        );
    }
}

#[test]
fn inline_commands() {
    let (redis, sidecar) = start_pair(&[]);
    let cases: &[(&[u8], &[u8])] = &[
        (b"PING\r\n", b"+PONG\r\n"),
        (b"SET ik hello\r\n", b"+OK\r\n"),
        (b"GET ik\r\n", b"$5\r\nhello\r\n"),
        (b"GET ik\r\n", b"$5\r\nhello\r\n"),
        (b"get ik\n", b"$5\r\nhello\r\n"),
        (b"  GET   ik  \r\n", b"$5\r\nhello\r\n"),
        (b"\r\nPING\r\n", b"+PONG\r\n"),
        (b"SET ik2 \"hello world\"\r\n", b"+OK\r\n"),
        (b"GET ik2\r\n", b"$11\r\nhello world\r\n"),
        (b"ECHO 'single quoted'\r\n", b"$13\r\nsingle quoted\r\n"),
        (b"ECHO \"a\\x41\\n\"\r\n", b"$3\r\naA\n\r\n"),
        (b"GET nokey\r\n", b"$-1\r\n"),
        (b"MGET ik nokey\r\n", b"*2\r\n$5\r\nhello\r\n$-1\r\n"),
        // Anything not starting with `*` is an inline command, even `$3`.
        (
            b"$3\r\n",
            b"-ERR unknown command '$3', with args beginning with: \r\n",
        ),
    ];
    // The table is what Redis itself answers ...
    let mut direct = redis.conn();
    for (request, want) in cases {
        direct.send(request);
        assert_reply(
            &direct.read_reply(),
            want,
            &format!("direct Redis, {}", show(request)),
        );
    }
    assert_reply(
        &direct.cmd_str(&["DEL", "ik", "ik2"]),
        b":2\r\n",
        "reset keys",
    );
    // ... and what the sidecar answers.
    let mut c = sidecar.conn();
    for (request, want) in cases {
        c.send(request);
        assert_reply(
            &c.read_reply(),
            want,
            &format!("sidecar, {}", show(request)),
        );
    }
    // Several inline commands in one write.
    c.send(b"PING\r\nGET ik\r\nPING\r\n");
    let replies = c.read_replies(3).concat();
    assert_reply(
        &replies,
        b"+PONG\r\n$5\r\nhello\r\n+PONG\r\n",
        "three inline commands in one write",
    );
}

#[test]
fn errors_are_forwarded_verbatim() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "str", "abc"]), b"+OK\r\n", "SET");
    assert_reply(
        &direct.cmd_str(&["HSET", "hash", "f", "v"]),
        b":1\r\n",
        "HSET",
    );
    let mut c = sidecar.conn();
    let requests: &[&[&str]] = &[
        &["GET"],
        &["GET", "a", "b"],
        &["MGET"],
        &["NOSUCHCOMMAND", "x", "y"],
        &["INCR", "str"],
        &["GET", "hash"],
        &["GET", "hash"],
        // MGET reports nil for a non-string key; that nil must not be served to GET.
        &["MGET", "hash", "str"],
        &["MGET", "hash", "str"],
        &["GET", "hash"],
        &["SET", "k", "v", "EX", "-1"],
        &["SET", "k", "v", "PX"],
        &["SELECT", "abc"],
        &["HELLO", "9"],
        &["CLIENT", "NOSUCHSUB"],
        &["EVAL", "return redis.call('nosuch')", "0"],
        &["OBJECT", "ENCODING", "hash"],
    ];
    for request in requests {
        assert_same_reply(&mut direct, &mut c, &encode_command_str(request));
    }
}

#[test]
fn resp3_hello_and_replies() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    for conn in [&mut direct, &mut c] {
        let hello = conn.hello3();
        assert_eq!(
            hello.first(),
            Some(&b'%'),
            "HELLO 3 returns a map: {}",
            show(&hello)
        );
        let text = String::from_utf8_lossy(&hello);
        assert!(
            text.contains("$5\r\nproto\r\n:3\r\n"),
            "HELLO 3 says proto 3: {}",
            show(&hello)
        );
        assert!(
            text.contains("$7\r\nversion\r\n"),
            "HELLO 3 has the version: {}",
            show(&hello)
        );
    }
    let setup: &[&[&str]] = &[
        &["SET", "s", "v"],
        &["HSET", "h", "f1", "v1", "f2", "v2"],
        &["ZADD", "z", "1.5", "a", "2", "b", "inf", "c"],
        &["SADD", "set", "m"],
        &["RPUSH", "l", "x", "y"],
    ];
    for args in setup {
        let reply = direct.cmd_str(args);
        assert!(!reply.starts_with(b"-"), "setup {args:?}: {}", show(&reply));
    }
    // (request, expected first byte of the reply), each compared with direct Redis.
    let cases: &[(&[&str], u8)] = &[
        (&["GET", "s"], b'$'),
        (&["GET", "s"], b'$'),
        (&["GET", "missing"], b'_'),
        (&["GET", "missing"], b'_'),
        (&["MGET", "s", "missing", "s"], b'*'),
        (&["MGET", "s", "missing", "s"], b'*'),
        (&["HGETALL", "h"], b'%'),
        (&["ZSCORE", "z", "a"], b','),
        (&["ZSCORE", "z", "c"], b','),
        (&["ZSCORE", "z", "nope"], b'_'),
        (&["ZRANGE", "z", "0", "-1", "WITHSCORES"], b'*'),
        (&["SMEMBERS", "set"], b'~'),
        (&["LRANGE", "l", "0", "-1"], b'*'),
        (&["EXISTS", "s"], b':'),
        (&["INCR", "s"], b'-'),
        (&["GET", "h"], b'-'),
        (&["PING"], b'+'),
        (&["DEBUG", "PROTOCOL", "string"], b'$'),
        (&["DEBUG", "PROTOCOL", "integer"], b':'),
        (&["DEBUG", "PROTOCOL", "double"], b','),
        (&["DEBUG", "PROTOCOL", "bignum"], b'('),
        (&["DEBUG", "PROTOCOL", "null"], b'_'),
        (&["DEBUG", "PROTOCOL", "array"], b'*'),
        (&["DEBUG", "PROTOCOL", "set"], b'~'),
        (&["DEBUG", "PROTOCOL", "map"], b'%'),
        (&["DEBUG", "PROTOCOL", "attrib"], b'|'),
        (&["DEBUG", "PROTOCOL", "verbatim"], b'='),
        (&["DEBUG", "PROTOCOL", "true"], b'#'),
        (&["DEBUG", "PROTOCOL", "false"], b'#'),
    ];
    for (request, first) in cases {
        let reply = assert_same_reply(&mut direct, &mut c, &encode_command_str(request));
        assert_eq!(
            reply.first(),
            Some(first),
            "{request:?} in RESP3: {}",
            show(&reply)
        );
    }
    assert_reply(&c.cmd_str(&["GET", "missing"]), b"_\r\n", "RESP3 nil");
    assert_reply(
        &c.cmd_str(&["MGET", "s", "missing"]),
        b"*2\r\n$1\r\nv\r\n_\r\n",
        "RESP3 MGET with a nil",
    );
    assert_reply(
        &c.cmd_str(&["ZSCORE", "z", "a"]),
        b",1.5\r\n",
        "RESP3 double",
    );
}

#[test]
fn resp2_replies_of_resp3_types_match_direct() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    for args in [
        &["HSET", "h", "f1", "v1"][..],
        &["ZADD", "z", "1.5", "a", "inf", "c"][..],
    ] {
        direct.cmd_str(args);
    }
    let requests: &[&[&str]] = &[
        &["HGETALL", "h"],
        &["ZSCORE", "z", "a"],
        &["ZSCORE", "z", "c"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["DEBUG", "PROTOCOL", "double"],
        &["DEBUG", "PROTOCOL", "bignum"],
        &["DEBUG", "PROTOCOL", "null"],
        &["DEBUG", "PROTOCOL", "map"],
        &["DEBUG", "PROTOCOL", "set"],
        &["DEBUG", "PROTOCOL", "attrib"],
        &["DEBUG", "PROTOCOL", "verbatim"],
        &["DEBUG", "PROTOCOL", "true"],
    ];
    for request in requests {
        assert_same_reply(&mut direct, &mut c, &encode_command_str(request));
    }
}

#[test]
fn cached_entries_are_served_in_each_clients_protocol() {
    let (redis, sidecar) = start_pair(&[]);
    assert_reply(
        &redis.conn().cmd_str(&["SET", "pv", "v"]),
        b"+OK\r\n",
        "SET",
    );
    let mut r2 = sidecar.conn();
    let mut r3 = sidecar.conn();
    r3.hello3();
    // Filled by a RESP2 client, read by a RESP3 one, and the other way round.
    let steps: &[(bool, &[&str], &[u8])] = &[
        (false, &["GET", "pv"], b"$1\r\nv\r\n"),
        (true, &["GET", "pv"], b"$1\r\nv\r\n"),
        (false, &["GET", "nil2"], b"$-1\r\n"),
        (true, &["GET", "nil2"], b"_\r\n"),
        (true, &["GET", "nil3"], b"_\r\n"),
        (false, &["GET", "nil3"], b"$-1\r\n"),
        (
            true,
            &["MGET", "pv", "nil2", "nil4"],
            b"*3\r\n$1\r\nv\r\n_\r\n_\r\n",
        ),
        (
            false,
            &["MGET", "pv", "nil2", "nil4"],
            b"*3\r\n$1\r\nv\r\n$-1\r\n$-1\r\n",
        ),
        (false, &["MGET", "nil5"], b"*1\r\n$-1\r\n"),
        (true, &["MGET", "nil5"], b"*1\r\n_\r\n"),
        (true, &["GET", "nil5"], b"_\r\n"),
    ];
    for (resp3, request, want) in steps {
        let conn = if *resp3 { &mut r3 } else { &mut r2 };
        let proto = if *resp3 { "RESP3" } else { "RESP2" };
        assert_reply(
            &conn.cmd_str(request),
            want,
            &format!("{proto} {request:?}"),
        );
    }
}
