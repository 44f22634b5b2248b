//! `NEARCACHE`, the sidecar's own command: INVALIDATE evicts L1 entries by glob pattern,
//! DELPATTERN deletes keys upstream with SCAN + UNLINK as the client's user, FLUSH, STATS,
//! HELP, and errors worded as Redis words them for its own container commands.

use proto_tests::*;

/// A pair whose sidecar does not track: these tests change keys directly on Redis to see
/// what INVALIDATE evicts, which tracking would evict on its own.
fn untracked_pair() -> (Redis, Sidecar) {
    start_pair(&["--tracking", "off"])
}

fn ok(reply: &[u8], what: &str) {
    assert_reply(reply, b"+OK\r\n", what);
}

/// GETs `key` through `c` twice: the second must be a hit (no upstream GET).
fn cache(redis: &Redis, c: &mut Conn, key: &str, value: &str) {
    assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), key);
    let gets = commandstat_calls(redis, "get");
    assert_reply(&c.cmd_str(&["GET", key]), &bulk(value.as_bytes()), key);
    assert_eq!(
        commandstat_calls(redis, "get"),
        gets,
        "{key}: second GET is a hit"
    );
}

#[test]
fn invalidate_evicts_matching_keys_and_keeps_the_others() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(
        &direct.cmd_str(&["MSET", "user:1", "a1", "user:2", "a2", "item:1", "b1"]),
        "MSET",
    );
    let mut c = sidecar.conn();
    for (k, v) in [("user:1", "a1"), ("user:2", "a2"), ("item:1", "b1")] {
        cache(&redis, &mut c, k, v);
    }
    // Changed behind the sidecar's back: L1 still answers the old values.
    ok(
        &direct.cmd_str(&["MSET", "user:1", "n1", "user:2", "n2", "item:1", "m1"]),
        "MSET new",
    );
    assert_reply(&c.cmd_str(&["GET", "user:1"]), &bulk(b"a1"), "still cached");

    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", "user:*"]),
        b":2\r\n",
        "INVALIDATE user:*",
    );
    assert_reply(&c.cmd_str(&["GET", "user:1"]), &bulk(b"n1"), "user:1 after");
    assert_reply(&c.cmd_str(&["GET", "user:2"]), &bulk(b"n2"), "user:2 after");
    assert_reply(&c.cmd_str(&["GET", "item:1"]), &bulk(b"b1"), "item:1 kept");

    // Several patterns, case-insensitive subcommand; keys no longer cached count 0.
    assert_reply(
        &c.cmd_str(&[
            "nearcache",
            "invalidate",
            "item:[0-9]",
            "nothing:*",
            "user:?",
        ]),
        b":3\r\n",
        "INVALIDATE item:[0-9] nothing:* user:?",
    );
    assert_reply(&c.cmd_str(&["GET", "item:1"]), &bulk(b"m1"), "item:1 after");
}

#[test]
fn invalidate_covers_every_database() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "k:0", "old"]), "SET db 0");
    ok(&direct.cmd_str(&["SELECT", "3"]), "SELECT 3");
    ok(&direct.cmd_str(&["SET", "k:3", "old"]), "SET db 3");
    let mut c = sidecar.conn();
    assert_reply(&get_in_db(&mut c, 0, "k:0"), &bulk(b"old"), "cache db 0");
    assert_reply(&get_in_db(&mut c, 3, "k:3"), &bulk(b"old"), "cache db 3");
    ok(&direct.cmd_str(&["SET", "k:3", "new"]), "SET db 3 new");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", "k:*"]),
        b":2\r\n",
        "INVALIDATE from db 0",
    );
    assert_reply(&get_in_db(&mut c, 3, "k:3"), &bulk(b"new"), "db 3 after");
}

#[test]
fn delpattern_unlinks_every_matching_key_with_scan_and_evicts_the_cached_ones() {
    const N: usize = 2500;
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    let mut mset = vec!["MSET".to_string()];
    for i in 0..N {
        mset.push(format!("del:{i}"));
        mset.push(format!("v{i}"));
    }
    mset.extend(["keep:1".to_string(), "k".to_string()]);
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    ok(&direct.cmd_str(&args), "MSET");
    let mut c = sidecar.conn();
    cache(&redis, &mut c, "del:7", "v7");
    cache(&redis, &mut c, "keep:1", "k");
    reset_stats(&redis);

    let reply = c.cmd_str(&["NEARCACHE", "DELPATTERN", "del:*"]);
    assert_eq!(int_reply(&reply), N as i64, "DELPATTERN del:*");
    assert_eq!(
        int_reply(&direct.cmd_str(&["DBSIZE"])),
        1,
        "only keep:1 is left"
    );
    assert_eq!(commandstat_calls(&redis, "keys"), 0, "never KEYS");
    assert!(commandstat_calls(&redis, "scan") >= 3, "SCAN in pages");
    assert!(commandstat_calls(&redis, "unlink") >= 3, "UNLINK per page");

    assert_reply(&c.cmd_str(&["GET", "del:7"]), b"$-1\r\n", "del:7 evicted");
    let gets = commandstat_calls(&redis, "get");
    assert_reply(&c.cmd_str(&["GET", "keep:1"]), &bulk(b"k"), "keep:1");
    assert_eq!(
        commandstat_calls(&redis, "get"),
        gets,
        "keep:1 still cached"
    );
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN", "del:*"]),
        b":0\r\n",
        "nothing left to delete",
    );
}

#[test]
fn delpattern_runs_in_the_clients_database() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "x:1", "db0"]), "SET db 0");
    ok(&direct.cmd_str(&["SELECT", "2"]), "SELECT 2");
    ok(
        &direct.cmd_str(&["MSET", "x:1", "a", "x:2", "b"]),
        "MSET db 2",
    );
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["SELECT", "2"]), "SELECT 2 through the sidecar");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN", "x:*"]),
        b":2\r\n",
        "DELPATTERN in db 2",
    );
    assert_eq!(int_reply(&direct.cmd_str(&["DBSIZE"])), 0, "db 2 emptied");
    ok(&direct.cmd_str(&["SELECT", "0"]), "SELECT 0");
    assert_eq!(int_reply(&direct.cmd_str(&["DBSIZE"])), 1, "db 0 untouched");
}

/// (`u` may publish on the bus, which DELPATTERN needs, checked in MULTI ... DISCARD.)
#[test]
fn delpattern_is_checked_against_the_clients_acl_user() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["MSET", "k:1", "a", "k:2", "b"]), "MSET");
    ok(
        &direct.cmd_str(&[
            "ACL", "SETUSER", "u", "on", ">pw", "~*", "+ping", "+get", "+scan", "&*", "+publish",
            "+multi", "+discard",
        ]),
        "ACL SETUSER u",
    );
    let mut c = sidecar.conn();
    ok(&c.cmd_str(&["AUTH", "u", "pw"]), "AUTH u");
    let reply = c.cmd_str(&["NEARCACHE", "DELPATTERN", "k:*"]);
    assert!(
        reply.starts_with(b"-NOPERM") && reply.windows(6).any(|w| w == b"unlink"),
        "UNLINK refused to u: {}",
        show(&reply)
    );
    assert_eq!(
        int_reply(&direct.cmd_str(&["DBSIZE"])),
        2,
        "nothing deleted"
    );

    ok(
        &direct.cmd_str(&["ACL", "SETUSER", "u", "-scan"]),
        "ACL SETUSER u -scan",
    );
    let reply = c.cmd_str(&["NEARCACHE", "DELPATTERN", "k:*"]);
    assert!(
        reply.starts_with(b"-NOPERM"),
        "SCAN refused: {}",
        show(&reply)
    );
}

#[test]
fn flush_empties_this_l1() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "a", "1"]), "SET");
    let mut c = sidecar.conn();
    cache(&redis, &mut c, "a", "1");
    ok(&direct.cmd_str(&["SET", "a", "2"]), "SET new");
    ok(&c.cmd_str(&["NEARCACHE", "FLUSH"]), "NEARCACHE FLUSH");
    assert_reply(&c.cmd_str(&["GET", "a"]), &bulk(b"2"), "after FLUSH");
    assert_eq!(
        int_reply(&direct.cmd_str(&["DBSIZE"])),
        1,
        "upstream untouched"
    );
}

#[test]
fn help_and_stats() {
    let (_redis, sidecar) = untracked_pair();
    let mut c = sidecar.conn();
    let help = c.cmd_str(&["NEARCACHE", "HELP"]);
    assert!(
        help.starts_with(
            b"*32\r\n+NEARCACHE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
        ) && help.ends_with(b"+HELP\r\n+    Print this help.\r\n"),
        "HELP: {}",
        show(&help)
    );
    for sub in [
        "INVALIDATE",
        "DELPATTERN",
        "FLUSH",
        "STATS",
        "SLOWLOG",
        "HOTKEYS",
        "WARM",
    ] {
        let line = format!("\r\n+{sub}");
        assert!(
            help.windows(line.len()).any(|w| w == line.as_bytes()),
            "HELP names {sub}"
        );
    }
    let stats = bulk_reply(&c.cmd_str(&["NEARCACHE", "STATS"])).expect("STATS is a bulk string");
    let stats = String::from_utf8(stats).unwrap();
    assert!(stats.starts_with("# Nearcache\r\n"), "{stats}");
    info_u64(&stats, "l1_hits");
    info_u64(&stats, "l1_entries");
}

/// Redis's own wording for a container command, with `CONFIG` for `NEARCACHE`.
fn redis_wording(direct: &mut Conn, args: &[&str]) -> Vec<u8> {
    let reply = direct.cmd_str(args);
    String::from_utf8(reply)
        .unwrap()
        .replace("CONFIG", "NEARCACHE")
        .replace("config", "nearcache")
        .replace("|get", "|delpattern")
        .into_bytes()
}

#[test]
fn errors_are_worded_like_redis() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let cases: &[(&[&str], &[u8])] = &[
        (
            &["NEARCACHE"],
            b"-ERR wrong number of arguments for 'nearcache' command\r\n",
        ),
        (
            &["NEARCACHE", "slowlog2"],
            b"-ERR unknown subcommand 'slowlog2'. Try NEARCACHE HELP.\r\n",
        ),
        (
            &["NEARCACHE", "INVALIDATE"],
            b"-ERR wrong number of arguments for 'nearcache|invalidate' command\r\n",
        ),
        (
            &["NEARCACHE", "delpattern", "a", "b"],
            b"-ERR wrong number of arguments for 'nearcache|delpattern' command\r\n",
        ),
        (
            &["NEARCACHE", "FLUSH", "all", "now"],
            b"-ERR wrong number of arguments for 'nearcache|flush' command\r\n",
        ),
        (&["NEARCACHE", "FLUSH", "now"], b"-ERR syntax error\r\n"),
        (
            &["NEARCACHE", "HELP", "me"],
            b"-ERR wrong number of arguments for 'nearcache|help' command\r\n",
        ),
        (
            &["NEARCACHE", "STATS", "all"],
            b"-ERR wrong number of arguments for 'nearcache|stats' command\r\n",
        ),
    ];
    for (args, want) in cases {
        assert_reply(&c.cmd_str(args), want, &format!("{args:?}"));
    }
    // The same shapes as Redis's own CONFIG errors.
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "slowlog2"]),
        &redis_wording(&mut direct, &["CONFIG", "slowlog2"]),
        "unknown subcommand",
    );
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN"]),
        &redis_wording(&mut direct, &["CONFIG", "GET"]),
        "wrong arity",
    );
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "connection goes on");
}

#[test]
fn resp3_clients_get_the_same_replies() {
    let (redis, sidecar) = untracked_pair();
    let mut direct = redis.conn();
    ok(&direct.cmd_str(&["SET", "user:1", "a"]), "SET");
    let mut c = sidecar.conn();
    c.hello3();
    cache(&redis, &mut c, "user:1", "a");
    ok(&direct.cmd_str(&["SET", "user:1", "b"]), "SET new");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "INVALIDATE", "user:*"]),
        b":1\r\n",
        "INVALIDATE",
    );
    assert_reply(&c.cmd_str(&["GET", "user:1"]), &bulk(b"b"), "after");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "DELPATTERN", "user:*"]),
        b":1\r\n",
        "DELPATTERN",
    );
    assert_reply(&c.cmd_str(&["GET", "user:1"]), b"_\r\n", "deleted");
    ok(&c.cmd_str(&["NEARCACHE", "FLUSH"]), "FLUSH");
    let help = c.cmd_str(&["NEARCACHE", "HELP"]);
    assert!(help.starts_with(b"*32\r\n+NEARCACHE "), "{}", show(&help));
    let stats = c.cmd_str(&["NEARCACHE", "STATS"]);
    assert!(stats.starts_with(b"="), "verbatim: {}", show(&stats));
    let stats = String::from_utf8(bulk_reply(&stats).unwrap()).unwrap();
    info_u64(&stats, "l1_hits");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "nope"]),
        b"-ERR unknown subcommand 'nope'. Try NEARCACHE HELP.\r\n",
        "unknown subcommand",
    );
}
