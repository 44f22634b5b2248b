//! Upstream connections: large values are not copied whole and buffers shrink back, pools
//! and identities nobody uses go away, a slow command does not hold up other clients, and
//! a runaway script can be killed through the sidecar.

use std::time::Duration;

use proto_tests::*;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in MiB.
fn proc_mib(pid: u32, field: &str) -> u64 {
    proc_status_bytes(pid, field) >> 20
}

#[test]
fn large_values_leave_no_large_buffers_behind() {
    const SIZE: usize = 100 << 20;
    // L1 kept small so what stays resident is the connections' buffers, not a cached copy.
    let (_redis, sidecar) = start_pair(&["--l1-max-bytes", "1MiB"]);
    let value = random_bytes(SIZE, 7);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd(&[b"SET", b"big", &value]), b"+OK\r\n", "SET 100MiB");
    for round in 0..2 {
        let reply = c.cmd(&[b"GET", b"big"]);
        assert!(
            bulk_reply(&reply).as_deref() == Some(&value[..]),
            "GET {round} returned {} bytes, not the value",
            reply.len()
        );
    }
    drop(value);
    assert_reply(
        &c.cmd_str(&["PING"]),
        b"+PONG\r\n",
        "PING after the large values",
    );
    let pid = sidecar.pid();
    // Buffers are given back when idle: allow the connections a moment to notice.
    let mut idle = 0;
    poll_until(Duration::from_secs(5), "idle RSS below 120 MiB", || {
        idle = proc_mib(pid, "VmRSS");
        idle < 120
    });
    let peak = proc_mib(pid, "VmHWM");
    eprintln!("sidecar after 100MiB SET + 2 GETs: peak {peak} MiB, idle {idle} MiB");
    // One copy of the value in flight at a time, not a copy per buffer it passes through.
    assert!(peak < 250, "peak RSS {peak} MiB for a 100 MiB value");
}

/// `connected_clients` of the real Redis (includes the connection asking).
fn redis_clients(redis: &Redis) -> u64 {
    info_u64(&redis.conn().info(Some("clients")), "connected_clients")
}

#[test]
fn pools_of_many_identities_are_closed_when_idle() {
    let (redis, sidecar) = start_pair(&["--upstream-idle-timeout", "300ms"]);
    let mut direct = redis.conn();
    for i in 0..300 {
        let user = format!("u{i}");
        let rules = ["ACL", "SETUSER", &user, "on", "nopass", "~*", "+@all"];
        assert_reply(&direct.cmd_str(&rules), b"+OK\r\n", "ACL SETUSER");
    }
    for i in 0..300 {
        let mut c = sidecar.conn();
        // Each user is an identity of its own.
        let user = format!("u{i}");
        assert_reply(&c.cmd_str(&["AUTH", &user, "any"]), b"+OK\r\n", "AUTH");
        assert_reply(
            &c.cmd_str(&["GET", "k"]),
            b"$-1\r\n",
            "GET as that identity",
        );
    }
    poll_until(
        Duration::from_secs(10),
        "the upstream connections of 300 identities to be closed",
        || redis_clients(&redis) <= 3,
    );
    assert!(
        sidecar_stat(&sidecar, "upstream_routes") <= 1,
        "idle routes are gone"
    );
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["AUTH", "u1", "x1"]), b"+OK\r\n", "AUTH again");
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET afterwards");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET afterwards");
}

/// Passwords are not identities: one client holding many connections, each logged in as
/// the `nopass` default user with another password, uses one identity and cannot use up
/// `--max-upstream-routes` for the clients that come after it.
#[test]
fn many_passwords_of_one_user_share_one_route() {
    let (_redis, sidecar) = start_pair(&["--max-upstream-routes", "4"]);
    let mut held = Vec::new();
    for i in 0..50 {
        let mut c = sidecar.conn();
        let pass = format!("p{i}");
        assert_reply(&c.cmd_str(&["AUTH", "default", &pass]), b"+OK\r\n", "AUTH");
        assert_reply(&c.cmd_str(&["GET", "k"]), b"$-1\r\n", "GET while held");
        held.push(c);
    }
    let mut late = sidecar.conn();
    assert_reply(
        &late.cmd_str(&["AUTH", "default", "late"]),
        b"+OK\r\n",
        "AUTH",
    );
    assert_reply(
        &late.cmd_str(&["SET", "k", "v"]),
        b"+OK\r\n",
        "a later client",
    );
    assert!(sidecar_stat(&sidecar, "upstream_routes") <= 2);
}

#[test]
fn a_client_that_visited_every_db_in_both_protocols_leaves_one_pool() {
    let (redis, sidecar) = start_pair(&["--upstream-idle-timeout", "300ms"]);
    let mut c = sidecar.conn();
    for resp3 in [false, true] {
        if resp3 {
            c.hello3();
        }
        for db in 0..16 {
            let reply = c.cmd_str(&["SELECT", &db.to_string()]);
            assert_reply(&reply, b"+OK\r\n", "SELECT");
            let reply = c.cmd_str(&["GET", "k"]);
            assert!(
                reply == b"$-1\r\n" || reply == b"_\r\n",
                "GET: {}",
                show(&reply)
            );
        }
    }
    assert!(
        redis_clients(&redis) > 16,
        "32 routes were connected at some point"
    );
    // The client still holds its current route (db 15, RESP3): that pool stays.
    poll_until(
        Duration::from_secs(10),
        "the pools of the routes left behind to be closed",
        || redis_clients(&redis) <= 3,
    );
    let routes = sidecar_stat(&sidecar, "upstream_routes");
    assert!(
        routes <= 2,
        "{routes} routes left: the held one (and INFO's own)"
    );
    assert_reply(
        &c.cmd_str(&["SET", "k", "v"]),
        b"+OK\r\n",
        "SET on the kept route",
    );
}

#[test]
fn routes_beyond_the_bound_replace_unused_pools_or_get_an_error() {
    let (_redis, sidecar) = start_pair(&["--max-upstream-routes", "2"]);
    let mut a = sidecar.conn();
    assert_reply(&a.cmd_str(&["SET", "k", "v0"]), b"+OK\r\n", "A in db 0");
    let mut b = sidecar.conn();
    assert_reply(&b.cmd_str(&["SELECT", "1"]), b"+OK\r\n", "B to db 1");
    let mut c = sidecar.conn();
    let reply = c.cmd_str(&["SELECT", "2"]);
    assert!(
        reply.starts_with(b"-ERR nearcache: too many upstream routes"),
        "a third route while two are held: {}",
        show(&reply)
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v0"), "C stays in db 0");
    // B leaves db 1: its pool is unused and gives way to the next new route.
    assert_reply(&b.cmd_str(&["SELECT", "0"]), b"+OK\r\n", "B back to db 0");
    assert_reply(&c.cmd_str(&["SELECT", "2"]), b"+OK\r\n", "C to db 2 now");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$-1\r\n", "C in db 2");
    assert_reply(&a.cmd_str(&["GET", "k"]), &bulk(b"v0"), "A unaffected");
}

/// An L1 counter of the sidecar's `INFO nearcache`.
fn sidecar_stat(sidecar: &Sidecar, name: &str) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), name)
}

/// Sends `SET key value` on `a` without reading, and waits until Redis holds it blocked by
/// the write pause (and longer than the sidecar's stall threshold).
fn send_paused_write(redis: &Redis, a: &mut Conn) {
    a.send(&encode_command_str(&["SET", "paused", "1"]));
    poll_until(
        Duration::from_secs(5),
        "the SET to be held by the pause",
        || info_u64(&redis.conn().info(Some("clients")), "blocked_clients") >= 1,
    );
    // Not an assertion: the held call is older than the stall threshold from here on.
    std::thread::sleep(Duration::from_millis(50));
}

/// Primes `hot` in L1 and returns the hit count after reading it from L1 once.
fn prime_l1(sidecar: &Sidecar) -> u64 {
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "hot", "v"]), b"+OK\r\n", "SET hot");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "hot"]), &bulk(b"v"), "GET hot");
    }
    let hits = sidecar_stat(sidecar, "l1_hits");
    assert!(hits >= 1, "hot is served from L1");
    hits
}

/// Reads through the sidecar from four other clients, each in its own way.
fn other_clients_read(sidecar: &Sidecar) {
    let mut b = sidecar.conn();
    assert_reply(&b.cmd_str(&["GET", "hot"]), &bulk(b"v"), "B: cached GET");
    assert_reply(&b.cmd_str(&["GET", "cold1"]), b"$-1\r\n", "B: uncached GET");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["EXISTS", "hot"]), b":1\r\n", "C: EXISTS");
    assert_reply(&c.cmd_str(&["GET", "cold2"]), b"$-1\r\n", "C: uncached GET");
    let mut d = sidecar.conn();
    let reply = d.cmd_str(&["MGET", "cold3", "hot"]);
    assert_reply(&reply, b"*2\r\n$-1\r\n$1\r\nv\r\n", "D: MGET");
    let mut e = sidecar.conn();
    e.hello3();
    assert_reply(
        &e.cmd_str(&["GET", "cold4"]),
        b"_\r\n",
        "E: RESP3 uncached GET",
    );
    assert_reply(&e.cmd_str(&["STRLEN", "hot"]), b":1\r\n", "E: STRLEN");
}

#[test]
fn a_paused_write_does_not_hold_up_other_clients_reads() {
    // One connection per route: every client starts on the one A's write will block.
    // (--acl-recheck 0: a re-check would send one GET of `hot` upstream, which is not what
    // these tests count.)
    let (redis, sidecar) = start_pair(&["--upstream-connections", "1", "--acl-recheck", "0"]);
    let hits = prime_l1(&sidecar);
    let mut a = sidecar.conn();
    assert_reply(&a.cmd_str(&["PING"]), b"+PONG\r\n", "A connected");
    let mut direct = redis.conn();
    let pause = direct.cmd_str(&["CLIENT", "PAUSE", "20000", "WRITE"]);
    assert_reply(&pause, b"+OK\r\n", "CLIENT PAUSE");
    send_paused_write(&redis, &mut a);
    other_clients_read(&sidecar);
    // Every other client was answered while A's write is still held.
    a.set_read_timeout(Duration::from_millis(100));
    let early = a.try_read_reply();
    assert!(early.is_err(), "A answered during the pause: {early:?}");
    assert_reply(
        &direct.cmd_str(&["CLIENT", "UNPAUSE"]),
        b"+OK\r\n",
        "UNPAUSE",
    );
    a.set_read_timeout(IO_TIMEOUT);
    assert_reply(&a.read_reply(), b"+OK\r\n", "A's SET once unpaused");
    assert_reply(
        &a.cmd_str(&["GET", "paused"]),
        &bulk(b"1"),
        "A reads its write",
    );
    assert_reply(
        &a.cmd_str(&["GET", "hot"]),
        &bulk(b"v"),
        "hot after the pause",
    );
    assert!(
        sidecar_stat(&sidecar, "l1_hits") >= hits + 3,
        "hot stayed in L1 throughout (no flush)"
    );
}

#[test]
fn a_write_paused_past_the_timeout_fails_alone_without_flushing_l1() {
    let (redis, sidecar) = start_pair(&[
        "--upstream-timeout",
        "1s",
        "--upstream-connections",
        "1",
        "--acl-recheck",
        "0",
    ]);
    let hits = prime_l1(&sidecar);
    let mut a = sidecar.conn();
    assert_reply(&a.cmd_str(&["PING"]), b"+PONG\r\n", "A connected");
    let mut direct = redis.conn();
    let pause = direct.cmd_str(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    assert_reply(&pause, b"+OK\r\n", "CLIENT PAUSE");
    send_paused_write(&redis, &mut a);
    let reply = a.read_reply();
    assert!(
        reply.starts_with(b"-ERR nearcache: upstream timeout"),
        "A's SET past --upstream-timeout: {}",
        show(&reply)
    );
    other_clients_read(&sidecar);
    assert_reply(
        &direct.cmd_str(&["CLIENT", "UNPAUSE"]),
        b"+OK\r\n",
        "UNPAUSE",
    );
    poll_until(Duration::from_secs(10), "A's write to be applied", || {
        direct.cmd_str(&["GET", "paused"]) == bulk(b"1")
    });
    assert_reply(&a.cmd_str(&["GET", "paused"]), &bulk(b"1"), "A afterwards");
    assert_reply(&a.cmd_str(&["GET", "hot"]), &bulk(b"v"), "hot afterwards");
    assert!(
        sidecar_stat(&sidecar, "l1_hits") >= hits + 3,
        "hot stayed in L1 throughout (no flush)"
    );
    let text = sidecar.conn().info(Some("nearcache"));
    assert_eq!(
        info_field(&text, "upstream_link_status").as_deref(),
        Some("up"),
        "{text}"
    );
}

#[test]
fn a_runaway_script_is_killed_through_the_sidecar() {
    let redis = Redis::start_with(&["--busy-reply-threshold", "100"]);
    // One connection per route: B starts on the one running A's script.
    let sidecar = Sidecar::start(redis.port(), &["--upstream-connections", "1"]);
    let mut a = sidecar.conn();
    assert_reply(&a.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET before");
    let connections_before = info_u64(
        &redis.conn().info(Some("stats")),
        "total_connections_received",
    );
    a.send(&encode_command_str(&["EVAL", "while true do end", "0"]));
    poll_until(
        Duration::from_secs(5),
        "the script to make Redis busy",
        || redis.conn().cmd_str(&["PING"]).starts_with(b"-BUSY"),
    );
    let mut b = sidecar.conn();
    assert_reply(
        &b.cmd_str(&["SCRIPT", "KILL"]),
        b"+OK\r\n",
        "SCRIPT KILL via the sidecar",
    );
    let reply = a.read_reply();
    assert!(
        reply.starts_with(b"-ERR") && reply.windows(6).any(|w| w == b"killed"),
        "A gets Redis's error for the killed script: {}",
        show(&reply)
    );
    for (name, c) in [("A", &mut a), ("B", &mut b)] {
        assert_reply(
            &c.cmd_str(&["SET", "k", name]),
            b"+OK\r\n",
            "SET after the kill",
        );
        assert_reply(
            &c.cmd_str(&["GET", "k"]),
            &bulk(name.as_bytes()),
            "GET after the kill",
        );
    }
    let opened = info_u64(
        &redis.conn().info(Some("stats")),
        "total_connections_received",
    ) - connections_before;
    // The kill's own connection, the probes, and the direct connections asking: no storm.
    assert!(opened < 40, "{opened} connections opened around the kill");
}
