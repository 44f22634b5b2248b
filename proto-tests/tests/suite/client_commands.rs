//! CLIENT subcommands and MONITOR through the sidecar, each as the command table of docs/behaviour.md
//! says: the application's own CLIENT TRACKING and MONITOR on its pinned connection, CLIENT
//! NO-EVICT/INFO on it too, CLIENT PAUSE/UNPAUSE and LIST forwarded (server-wide), CLIENT
//! UNBLOCK, TRACKING REDIRECT and KILL ID by the ids the application knows (the sidecar's),
//! CLIENT KILL by other filters refused (see `session.rs`); CLIENT REPLY has its own suite (`client_reply.rs`).

use std::thread;
use std::time::Duration;

use proto_tests::*;

#[test]
fn an_applications_own_client_side_cache_gets_its_invalidations() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    c.hello3();
    assert_reply(&c.cmd_str(&["SET", "k", "v1"]), b"+OK\r\n", "SET");
    assert_reply(
        &c.cmd_str(&["CLIENT", "TRACKING", "on"]),
        b"+OK\r\n",
        "TRACKING on",
    );
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"v1"),
        "GET (tracked upstream)",
    );
    let info = c.cmd_str(&["CLIENT", "TRACKINGINFO"]);
    assert!(show(&info).contains("on"), "{}", show(&info));
    // A write from anywhere: the application hears of it as from Redis.
    assert_reply(
        &redis.conn().cmd_str(&["SET", "k", "v2"]),
        b"+OK\r\n",
        "SET",
    );
    let push = c.read_reply();
    assert_reply(
        &push,
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        "invalidation push",
    );
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"v2"),
        "GET after the push",
    );
    // OPTIN and CACHING as Redis has them.
    assert_reply(
        &c.cmd_str(&["CLIENT", "TRACKING", "off"]),
        b"+OK\r\n",
        "off",
    );
    assert_reply(
        &c.cmd_str(&["CLIENT", "TRACKING", "on", "OPTIN"]),
        b"+OK\r\n",
        "OPTIN",
    );
    assert_reply(
        &c.cmd_str(&["CLIENT", "CACHING", "yes"]),
        b"+OK\r\n",
        "CACHING",
    );
    assert_reply(
        &c.cmd_str(&["CLIENT", "TRACKING", "off"]),
        b"+OK\r\n",
        "off",
    );
    // Tracking off: back on the shared connections and L1.
    let before = commandstat_calls(&redis, "get");
    c.cmd_str(&["GET", "k"]);
    c.cmd_str(&["GET", "k"]);
    assert!(
        commandstat_calls(&redis, "get") <= before + 1,
        "served from L1 again"
    );
}

#[test]
fn monitor_shows_what_runs_upstream() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut m = sidecar.conn();
    assert_reply(&m.cmd_str(&["MONITOR"]), b"+OK\r\n", "MONITOR");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "watched", "1"]), b"+OK\r\n", "SET");
    m.set_read_timeout(Duration::from_secs(5));
    let mut seen = String::new();
    while !seen.contains("\"watched\"") {
        let line = m.read_reply();
        assert!(line.starts_with(b"+"), "{}", show(&line));
        seen.push_str(&String::from_utf8_lossy(&line));
    }
    assert!(seen.contains("\"SET\" \"watched\" \"1\""), "{seen}");
    // Lines already on their way (a health-check PING, the control plane's
    // own commands) may arrive before RESET's reply, as they do from Redis.
    let mut reply = m.cmd_str(&["RESET"]);
    while reply != b"+RESET\r\n" {
        assert!(
            is_monitor_line(&reply),
            "RESET ends MONITOR: {}",
            show(&reply)
        );
        reply = m.read_reply();
    }
    assert_reply(&m.cmd_str(&["PING"]), b"+PONG\r\n", "PING after RESET");
}

/// A MONITOR line: `+<seconds>.<micros> [<db> <addr>] "<command>" ...`.
fn is_monitor_line(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let Some(rest) = text.strip_prefix('+') else {
        return false;
    };
    let (stamp, tail) = rest.split_once(' ').unwrap_or(("", ""));
    stamp.split_once('.').is_some_and(|(s, us)| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && us.bytes().all(|b| b.is_ascii_digit())
    }) && tail.starts_with('[')
}

#[test]
fn no_evict_and_client_info_are_the_clients_own() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETNAME", "app"]),
        b"+OK\r\n",
        "SETNAME",
    );
    assert_reply(&c.cmd_str(&["SELECT", "4"]), b"+OK\r\n", "SELECT");
    assert_reply(
        &c.cmd_str(&["CLIENT", "NO-EVICT", "on"]),
        b"+OK\r\n",
        "NO-EVICT",
    );
    let info = String::from_utf8(bulk_reply(&c.cmd_str(&["CLIENT", "INFO"])).unwrap()).unwrap();
    let fields: Vec<&str> = info.split_whitespace().collect();
    for field in ["name=app", "db=4", "resp=2"] {
        assert!(fields.contains(&field), "{field} in {info}");
    }
    let flags = info
        .split(' ')
        .find_map(|f| f.strip_prefix("flags="))
        .unwrap();
    assert!(flags.contains('e'), "no-evict flag in {info}");
    assert_reply(
        &c.cmd_str(&["CLIENT", "NO-EVICT", "off"]),
        b"+OK\r\n",
        "off",
    );
    let info = String::from_utf8(bulk_reply(&c.cmd_str(&["CLIENT", "INFO"])).unwrap()).unwrap();
    let flags = info
        .split(' ')
        .find_map(|f| f.strip_prefix("flags="))
        .unwrap();
    assert!(!flags.contains('e'), "no-evict off in {info}");
}

#[test]
fn pause_and_list_are_the_servers() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETNAME", "lister"]),
        b"+OK\r\n",
        "SETNAME",
    );
    let list = c.cmd_str(&["CLIENT", "LIST"]);
    assert!(show(&list).contains("addr="), "{}", show(&list));
    assert_reply(
        &c.cmd_str(&["CLIENT", "PAUSE", "10000", "WRITE"]),
        b"+OK\r\n",
        "PAUSE",
    );
    let addr = sidecar.addr();
    let writer = thread::spawn(move || Conn::connect(addr).cmd_str(&["SET", "p", "1"]));
    thread::sleep(Duration::from_millis(300));
    assert_reply(
        &redis.conn().cmd_str(&["GET", "p"]),
        b"$-1\r\n",
        "the write waits while paused",
    );
    assert_reply(&c.cmd_str(&["CLIENT", "UNPAUSE"]), b"+OK\r\n", "UNPAUSE");
    assert_reply(&writer.join().unwrap(), b"+OK\r\n", "SET after UNPAUSE");
}

/// Blocks `conn` in `BLPOP <list> 0`, then unblocks it with `CLIENT UNBLOCK <id> <how>` sent
/// on `by` (retried until the pop has reached the server); returns (UNBLOCK's reply, the
/// pop's reply).
fn block_then_unblock(conn: &mut Conn, by: &mut Conn, id: i64, how: &str) -> (Vec<u8>, Vec<u8>) {
    conn.send(&encode_command_str(&["BLPOP", "nothing-here", "0"]));
    let id = id.to_string();
    let mut unblocked = Vec::new();
    poll_until(
        Duration::from_secs(5),
        "CLIENT UNBLOCK finds the blocked client",
        || {
            unblocked = by.cmd_str(&["CLIENT", "UNBLOCK", &id, how]);
            unblocked != b":0\r\n"
        },
    );
    (unblocked, conn.read_reply())
}

#[test]
fn client_unblock_takes_the_id_the_application_knows() {
    let (redis, sidecar) = start_pair(&[]);
    for resp3 in [false, true] {
        let (mut direct, mut other) = (redis.conn(), redis.conn());
        let (mut blocked, mut by) = (sidecar.conn(), sidecar.conn());
        if resp3 {
            direct.hello3();
            blocked.hello3();
        }
        let direct_id = int_reply(&direct.cmd_str(&["CLIENT", "ID"]));
        let id = int_reply(&blocked.cmd_str(&["CLIENT", "ID"]));
        for how in ["TIMEOUT", "ERROR", "timeout"] {
            let want = block_then_unblock(&mut direct, &mut other, direct_id, how);
            let got = block_then_unblock(&mut blocked, &mut by, id, how);
            assert_eq!(
                (show(&got.0), show(&got.1)),
                (show(&want.0), show(&want.1)),
                "{how} (resp3: {resp3})"
            );
        }
        // Nobody blocked, unknown ids, bad arguments: as Redis answers them.
        for args in [
            &["CLIENT", "UNBLOCK", &id.to_string()][..],
            &["CLIENT", "UNBLOCK", "987654"],
            &["CLIENT", "UNBLOCK", "-1"],
            &["CLIENT", "UNBLOCK", "0"],
            &["CLIENT", "UNBLOCK", "abc"],
            &["CLIENT", "UNBLOCK", "01"],
            &["CLIENT", "UNBLOCK", "1", "FOO"],
            &["CLIENT", "UNBLOCK", "abc", "FOO"],
            &["CLIENT", "UNBLOCK"],
            &["CLIENT", "UNBLOCK", "1", "2", "3"],
        ] {
            assert_same_reply(&mut other, &mut by, &encode_command_str(args));
        }
    }
}

#[test]
fn client_unblock_never_reaches_an_upstream_client_with_the_same_number() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let upstream_id = int_reply(&direct.cmd_str(&["CLIENT", "ID"]));
    direct.send(&encode_command_str(&["BLPOP", "nothing-here", "0"]));
    let mut c = sidecar.conn();
    // The direct client is blocked (seen from Redis) before the sidecar is asked.
    poll_until(Duration::from_secs(5), "the direct client blocks", || {
        let list = redis.conn().cmd_str(&["CLIENT", "LIST"]);
        String::from_utf8_lossy(&list).contains("cmd=blpop")
    });
    assert_reply(
        &c.cmd_str(&["CLIENT", "UNBLOCK", &upstream_id.to_string()]),
        b":0\r\n",
        "no client of the sidecar has that id",
    );
    assert_reply(
        &redis
            .conn()
            .cmd_str(&["CLIENT", "UNBLOCK", &upstream_id.to_string()]),
        b":1\r\n",
        "still blocked",
    );
    assert_reply(&direct.read_reply(), b"*-1\r\n", "BLPOP timed out");
}

#[test]
fn tracking_redirect_takes_the_id_the_application_knows() {
    let (redis, sidecar) = start_pair(&[]);
    let mut listener = sidecar.conn();
    let id = int_reply(&listener.cmd_str(&["CLIENT", "ID"]));
    listener.send(&encode_command_str(&["SUBSCRIBE", "__redis__:invalidate"]));
    listener.read_reply();
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &id.to_string()]),
        b"+OK\r\n",
        "TRACKING on REDIRECT <the listener's id>",
    );
    assert_reply(&c.cmd_str(&["SET", "tk", "1"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "tk"]), &bulk(b"1"), "GET (tracked)");
    assert_reply(
        &redis.conn().cmd_str(&["SET", "tk", "2"]),
        b"+OK\r\n",
        "SET",
    );
    listener.set_read_timeout(Duration::from_secs(5));
    assert_reply(
        &listener.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\ntk\r\n",
        "the invalidation, redirected to the listener",
    );
    // Ids that name no connection, and bad ones, as Redis answers them.
    let mut direct = redis.conn();
    let mut fresh = sidecar.conn();
    for target in ["987654", "abc", "-3"] {
        let args = ["CLIENT", "TRACKING", "on", "REDIRECT", target];
        assert_same_reply(
            &mut direct,
            &mut fresh,
            &encode_command_str(args.as_slice()),
        );
    }
    // A client of the sidecar without a connection of its own upstream: the same number
    // upstream is some other connection, never redirected to.
    let idle = int_reply(&sidecar.conn().cmd_str(&["CLIENT", "ID"])).to_string();
    assert_reply(
        &fresh.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &idle]),
        b"-ERR The client ID you want redirect to does not exist\r\n",
        "REDIRECT to a client with no connection of its own",
    );
}

#[test]
fn client_kill_id_closes_the_sidecar_client_with_that_id() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut killer = sidecar.conn();
    let own = int_reply(&killer.cmd_str(&["CLIENT", "ID"])).to_string();
    // An idle client, and one blocked on its pinned connection.
    for blocked in [false, true] {
        let mut victim = sidecar.conn();
        let id = int_reply(&victim.cmd_str(&["CLIENT", "ID"])).to_string();
        if blocked {
            victim.send(&encode_command_str(&["BLPOP", "nothing-here", "0"]));
            poll_until(Duration::from_secs(5), "the victim blocks", || {
                let list = redis.conn().cmd_str(&["CLIENT", "LIST"]);
                String::from_utf8_lossy(&list).contains("cmd=blpop")
            });
        }
        assert_reply(
            &killer.cmd_str(&["CLIENT", "KILL", "ID", &id]),
            b":1\r\n",
            "KILL ID <victim>",
        );
        assert!(
            victim.read_to_close().is_empty(),
            "closed without a reply (blocked: {blocked})"
        );
        assert_reply(
            &killer.cmd_str(&["CLIENT", "KILL", "ID", &id]),
            b":0\r\n",
            "KILL ID <gone>",
        );
    }
    // Unknown ids, bad arguments, and this client itself (skipped unless SKIPME no): as
    // Redis answers them.
    let direct_own = int_reply(&direct.cmd_str(&["CLIENT", "ID"])).to_string();
    for (direct_id, id) in [("987654", "987654"), (&direct_own[..], &own[..])] {
        for args in [
            &["CLIENT", "KILL", "ID", direct_id][..],
            &["CLIENT", "KILL", "ID", direct_id, "SKIPME", "yes"],
            &["CLIENT", "KILL", "ID", direct_id, "SKIPME", "maybe"],
        ] {
            let want = direct.cmd_str(args);
            let mut args = args.to_vec();
            args[3] = id;
            assert_reply(&killer.cmd_str(&args), &want, &format!("{args:?}"));
        }
    }
    for args in [
        &["CLIENT", "KILL", "ID", "0"][..],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "ID", "-1"],
    ] {
        assert_same_reply(&mut direct, &mut killer, &encode_command_str(args));
    }
    // An upstream connection with the same number as a client id is never killed.
    let mut other = redis.conn();
    let other_id = int_reply(&other.cmd_str(&["CLIENT", "ID"]));
    if other_id.to_string() != own {
        killer.cmd_str(&["CLIENT", "KILL", "ID", &other_id.to_string()]);
        assert_reply(
            &other.cmd_str(&["PING"]),
            b"+PONG\r\n",
            "upstream client alive",
        );
    }
    assert_reply(
        &killer.cmd_str(&["CLIENT", "KILL", "ID", &own, "SKIPME", "no"]),
        b":1\r\n",
        "KILL ID <itself> SKIPME no",
    );
    assert!(killer.read_to_close().is_empty(), "then closed");
}
