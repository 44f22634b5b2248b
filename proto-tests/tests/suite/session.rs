//! Per-connection state (SELECT, AUTH, HELLO, CLIENT SETNAME, RESET, QUIT) and the
//! session-pinned commands that are refused with a clear error.

use proto_tests::*;

#[test]
fn select_isolates_databases() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let mut other = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["SET", "k", "a"]),
        b"+OK\r\n",
        "SET k a in db 0",
    );
    assert_reply(&c.cmd_str(&["SELECT", "1"]), b"+OK\r\n", "SELECT 1");
    assert_reply(
        &c.cmd_str(&["SET", "k", "b"]),
        b"+OK\r\n",
        "SET k b in db 1",
    );
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"b"), "GET k in db 1");
        // Another connection is still in db 0.
        assert_reply(
            &other.cmd_str(&["GET", "k"]),
            &bulk(b"a"),
            "GET k on a db 0 connection",
        );
    }
    assert_reply(&c.cmd_str(&["SELECT", "0"]), b"+OK\r\n", "SELECT 0");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"a"), "GET k back in db 0");
    }

    // An invalid SELECT gets the upstream's error and leaves the db as it was.
    let err = assert_same_reply(
        &mut direct,
        &mut c,
        &encode_command_str(&["SELECT", "99999"]),
    );
    assert!(err.starts_with(b"-ERR"), "SELECT 99999: {}", show(&err));
    assert_same_reply(&mut direct, &mut c, &encode_command_str(&["SELECT", "abc"]));
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"a"),
        "GET k after failed SELECT in db 0",
    );
    assert_reply(&c.cmd_str(&["SELECT", "1"]), b"+OK\r\n", "SELECT 1");
    assert_same_reply(
        &mut direct,
        &mut c,
        &encode_command_str(&["SELECT", "99999"]),
    );
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"b"),
        "GET k after failed SELECT in db 1",
    );
}

/// (request, the command in the error) for what the sidecar does not proxy (docs/behaviour.md's
/// command table says why).
const REFUSED: &[(&[&str], &str)] = &[
    (&["CLIENT", "KILL", "USER", "default"], "CLIENT KILL"),
    (
        &["CLIENT", "KILL", "ID", "1", "TYPE", "normal"],
        "CLIENT KILL",
    ),
    (&["CLIENT", "KILL", "127.0.0.1:1"], "CLIENT KILL"),
    (&["SYNC"], "SYNC"),
    (&["PSYNC", "?", "-1"], "PSYNC"),
    (&["REPLCONF", "listening-port", "1"], "REPLCONF"),
];

#[test]
fn commands_not_proxied_are_refused_with_a_reason() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    let mut failures = Vec::new();
    for (request, name) in REFUSED {
        let reply = c.cmd_str(request);
        let text = String::from_utf8_lossy(&reply);
        let want = format!("-ERR nearcache: {name} is not supported (");
        if !(text.starts_with(&want) && text.ends_with(")\r\n")) {
            failures.push(format!("{request:?}: got {}", show(&reply)));
        }
        // The connection keeps working, with nothing left in a strange state.
        assert_reply(
            &c.cmd_str(&["PING"]),
            b"+PONG\r\n",
            &format!("PING after {request:?}"),
        );
        assert_reply(
            &c.cmd_str(&["GET", "k"]),
            b"$-1\r\n",
            &format!("GET after {request:?}"),
        );
    }
    assert!(
        failures.is_empty(),
        "refusals differ:\n{}",
        failures.join("\n")
    );
    // Forwarded like any command.
    let mut direct = redis.conn();
    let id = direct.cmd_str(&["XADD", "s", "1-1", "f", "v"]);
    assert_reply(&id, b"$3\r\n1-1\r\n", "XADD");
    assert_same_reply(
        &mut direct,
        &mut c,
        &encode_command_str(&["XREAD", "COUNT", "1", "STREAMS", "s", "0"]),
    );
    assert_same_reply(
        &mut direct,
        &mut c,
        &encode_command_str(&["CLIENT", "GETNAME"]),
    );
}

#[test]
fn quit_closes_after_ok() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["QUIT"]), b"+OK\r\n", "QUIT");
    assert_reply(&c.read_to_close(), b"", "after QUIT the connection closes");

    // Requests pipelined behind QUIT are not executed.
    let mut c = sidecar.conn();
    let mut batch = encode_command_str(&["QUIT"]);
    batch.extend_from_slice(&encode_command_str(&["SET", "afterquit", "x"]));
    c.send(&batch);
    assert_reply(&c.read_to_close(), b"+OK\r\n", "QUIT + SET in one write");
    assert_reply(
        &sidecar.conn().cmd_str(&["GET", "afterquit"]),
        b"$-1\r\n",
        "the SET behind QUIT ran",
    );
}

#[test]
fn reset_restores_connection_defaults() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SELECT", "1"]), b"+OK\r\n", "SELECT 1");
    assert_reply(
        &c.cmd_str(&["SET", "rk", "in-db1"]),
        b"+OK\r\n",
        "SET in db 1",
    );
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETNAME", "before-reset"]),
        b"+OK\r\n",
        "SETNAME",
    );
    let hello = c.hello3();
    assert_eq!(hello.first(), Some(&b'%'), "HELLO 3: {}", show(&hello));
    assert_reply(&c.cmd_str(&["RESET"]), b"+RESET\r\n", "RESET");
    c.set_protocol(Protocol::Resp2);
    // Back to db 0 and RESP2 (a nil is `$-1`, not `_`), no name.
    assert_reply(&c.cmd_str(&["GET", "rk"]), b"$-1\r\n", "GET after RESET");
    assert_reply(
        &c.cmd_str(&["CLIENT", "GETNAME"]),
        b"$-1\r\n",
        "GETNAME after RESET",
    );
    assert_reply(&c.cmd_str(&["SELECT", "1"]), b"+OK\r\n", "SELECT 1");
    assert_reply(
        &c.cmd_str(&["GET", "rk"]),
        &bulk(b"in-db1"),
        "db 1 still has the key",
    );
}

#[test]
fn client_setname_getname_is_per_connection() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c1 = sidecar.conn();
    let mut c2 = sidecar.conn();
    let mut c3 = sidecar.conn();
    assert_reply(
        &c1.cmd_str(&["CLIENT", "SETNAME", "alpha"]),
        b"+OK\r\n",
        "c1 SETNAME",
    );
    assert_reply(
        &c2.cmd_str(&["CLIENT", "SETNAME", "beta"]),
        b"+OK\r\n",
        "c2 SETNAME",
    );
    for _ in 0..2 {
        assert_reply(
            &c1.cmd_str(&["CLIENT", "GETNAME"]),
            &bulk(b"alpha"),
            "c1 GETNAME",
        );
        assert_reply(
            &c2.cmd_str(&["CLIENT", "GETNAME"]),
            &bulk(b"beta"),
            "c2 GETNAME",
        );
        assert_reply(
            &c3.cmd_str(&["CLIENT", "GETNAME"]),
            b"$-1\r\n",
            "c3 GETNAME",
        );
    }
    let mut direct = redis.conn();
    let err = assert_same_reply(
        &mut direct,
        &mut c1,
        &encode_command_str(&["CLIENT", "SETNAME", "has space"]),
    );
    assert!(err.starts_with(b"-ERR"), "bad name: {}", show(&err));
    assert_reply(
        &c1.cmd_str(&["CLIENT", "GETNAME"]),
        &bulk(b"alpha"),
        "name kept after bad SETNAME",
    );
}

#[test]
fn auth_is_checked_against_the_upstream() {
    let redis = Redis::start_with(&["--requirepass", "secret"]);
    let sidecar = Sidecar::start_url(&redis.url(), &[]);
    let mut direct = Conn::connect(redis.addr());
    let mut c = sidecar.conn();
    for bad in [&["AUTH", "wrong"][..], &["AUTH", "default", "wrong"][..]] {
        let reply = assert_same_reply(&mut direct, &mut c, &encode_command_str(bad));
        assert!(
            reply.starts_with(b"-WRONGPASS"),
            "{bad:?}: {}",
            show(&reply)
        );
    }
    assert_same_reply(
        &mut direct,
        &mut c,
        &encode_command_str(&["AUTH", "a", "b", "c"]),
    );
    assert_reply(&c.cmd_str(&["AUTH", "secret"]), b"+OK\r\n", "AUTH secret");
    assert_reply(
        &c.cmd_str(&["AUTH", "default", "secret"]),
        b"+OK\r\n",
        "AUTH default secret",
    );
    // The sidecar's own upstream connections use the URL's password.
    assert_reply(
        &c.cmd_str(&["SET", "ak", "v"]),
        b"+OK\r\n",
        "SET after AUTH",
    );
    assert_reply(&c.cmd_str(&["GET", "ak"]), &bulk(b"v"), "GET after AUTH");
    assert_reply(
        &redis.conn().cmd_str(&["GET", "ak"]),
        &bulk(b"v"),
        "the SET reached the upstream",
    );
}

#[test]
fn hello_switches_protocol_per_connection() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut r3 = sidecar.conn();
    let mut r2 = sidecar.conn();
    let hello = r3.hello3();
    assert_eq!(
        hello.first(),
        Some(&b'%'),
        "HELLO 3 returns a map: {}",
        show(&hello)
    );
    for _ in 0..2 {
        assert_reply(&r3.cmd_str(&["GET", "nokey"]), b"_\r\n", "RESP3 nil");
        assert_reply(
            &r2.cmd_str(&["GET", "nokey"]),
            b"$-1\r\n",
            "RESP2 nil on another connection",
        );
    }
    let hello = r3.hello2();
    assert_eq!(
        hello.first(),
        Some(&b'*'),
        "HELLO 2 returns an array: {}",
        show(&hello)
    );
    assert_reply(
        &r3.cmd_str(&["GET", "nokey"]),
        b"$-1\r\n",
        "RESP2 nil after HELLO 2",
    );
    let err = assert_same_reply(&mut direct, &mut r3, &encode_command_str(&["HELLO", "4"]));
    assert!(err.starts_with(b"-NOPROTO"), "HELLO 4: {}", show(&err));
    assert_reply(
        &r3.cmd_str(&["GET", "nokey"]),
        b"$-1\r\n",
        "still RESP2 after HELLO 4",
    );
    // HELLO with SETNAME names the connection.
    r2.send(&encode_command_str(&[
        "HELLO",
        "3",
        "SETNAME",
        "hello-name",
    ]));
    r2.set_protocol(Protocol::Resp3);
    let hello = r2.read_reply();
    assert_eq!(
        hello.first(),
        Some(&b'%'),
        "HELLO 3 SETNAME: {}",
        show(&hello)
    );
    assert_reply(
        &r2.cmd_str(&["CLIENT", "GETNAME"]),
        &bulk(b"hello-name"),
        "name set by HELLO",
    );
}

/// `CLIENT ID` names the client's own connection to the sidecar: distinct per connection,
/// stable on one, never the id of the upstream connection it shares with others.
#[test]
fn client_id_is_per_client_connection() {
    let (_redis, sidecar) = start_pair(&[]);
    // More clients than upstream connections (4 per route): some share one upstream.
    let mut conns: Vec<Conn> = (0..9).map(|_| sidecar.conn()).collect();
    let ids: Vec<i64> = conns
        .iter_mut()
        .map(|c| int_reply(&c.cmd_str(&["CLIENT", "ID"])))
        .collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids {ids:?}");
    assert!(ids.iter().all(|&id| id > 0), "ids {ids:?}");
    let again = int_reply(&conns[0].cmd_str(&["CLIENT", "ID"]));
    assert_eq!(again, ids[0], "stable on one connection");
    // HELLO reports the same id, in either protocol.
    for (i, conn) in conns.iter_mut().enumerate().take(5) {
        let hello = if i % 2 == 0 {
            conn.hello3()
        } else {
            conn.hello2()
        };
        let field = b"$2\r\nid\r\n:";
        let at = hello
            .windows(field.len())
            .position(|w| w == field)
            .unwrap_or_else(|| panic!("no id in HELLO reply {}", show(&hello)));
        let digits: Vec<u8> = hello[at + field.len()..]
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        let hello_id: i64 = String::from_utf8(digits).unwrap().parse().unwrap();
        assert_eq!(hello_id, ids[i], "HELLO id on connection {i}");
    }
}

/// Without credentials of its own, the sidecar answers an unauthenticated client exactly as
/// Redis would (`-NOAUTH ...`), and serves it once it authenticates itself.
#[test]
fn clients_authenticate_themselves_when_the_sidecar_has_no_credentials() {
    let redis = Redis::start_with(&["--requirepass", "secret"]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    let mut direct = Conn::connect(redis.addr());
    let mut c = sidecar.conn();
    let reply = assert_same_reply(&mut direct, &mut c, &encode_command_str(&["GET", "k"]));
    assert!(reply.starts_with(b"-NOAUTH"), "{}", show(&reply));
    assert_reply(&c.cmd_str(&["AUTH", "secret"]), b"+OK\r\n", "AUTH");
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET after AUTH");
    for round in ["miss", "hit"] {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), round);
    }
    let mut other = sidecar.conn();
    let reply = other.cmd_str(&["GET", "k"]);
    assert!(
        reply.starts_with(b"-NOAUTH"),
        "an unauthenticated client must not read what an authenticated one cached: {}",
        show(&reply)
    );
}
