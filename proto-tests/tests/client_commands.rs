//! CLIENT subcommands and MONITOR through the sidecar, each as the README's command table
//! says: the application's own CLIENT TRACKING and MONITOR on its pinned connection, CLIENT
//! NO-EVICT/INFO on it too, CLIENT PAUSE/UNPAUSE and LIST forwarded (server-wide), CLIENT
//! KILL/REPLY/UNBLOCK refused (see `session.rs`).

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
