//! The command table: writes decided from Redis 7 key specs (PFCOUNT rewrites its key), and
//! the built-in table standing in while the upstream refuses the sidecar's own connection
//! (a password the `--upstream` URL does not carry) until a client authenticates.

use std::time::Duration;

use proto_tests::*;

/// The log line of the degraded state (built-in table only).
const DEGRADED: &str = "cannot read COMMAND from the upstream (NOAUTH";
/// The log line once a client's route loaded the upstream's table.
const LOADED: &str = "command table loaded from the upstream";

#[test]
fn pfcount_evicts_the_header_it_rewrites() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut proxied = sidecar.conn();
    assert_eq!(direct.cmd_str(&["PFADD", "h", "a", "b", "c"]), b":1\r\n");
    let before = proxied.cmd_str(&["GET", "h"]);
    assert_reply(&before, &direct.cmd_str(&["GET", "h"]), "GET h (fills L1)");
    assert_eq!(proxied.cmd_str(&["PFCOUNT", "h"]), b":3\r\n");
    let after = direct.cmd_str(&["GET", "h"]);
    assert_ne!(
        before, after,
        "PFCOUNT caches the cardinality in the header"
    );
    assert_reply(
        &proxied.cmd_str(&["GET", "h"]),
        &after,
        "GET h after PFCOUNT through the sidecar",
    );
}

/// A redis-server with a password, and a sidecar whose `--upstream` URL has none: the
/// command table and the invalidation link (tracking is on, the default) both come up with
/// the first client that authenticates.
fn password_pair() -> (Redis, Sidecar) {
    let redis = Redis::start_with(&["--requirepass", "secret"]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    poll_until(
        Duration::from_secs(10),
        "the degraded state is logged",
        || sidecar.stderr().contains(DEGRADED),
    );
    (redis, sidecar)
}

/// After `auth` (whose reply must start with `ok`), GETs mixed with other reads are L1
/// hits, and the upstream's table is loaded over the client's route, logged once.
fn authenticated_reads_hit_l1(redis: &Redis, sidecar: &Sidecar, auth: &[&str], ok: &[u8]) {
    const ROUNDS: u64 = 200;
    let mut client = sidecar.conn();
    let reply = client.cmd_str(auth);
    assert!(reply.starts_with(ok), "{auth:?}: {}", show(&reply));
    assert_eq!(client.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    reset_stats(redis);
    for _ in 0..ROUNDS {
        assert_eq!(client.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
        assert_eq!(client.cmd_str(&["STRLEN", "k"]), b":1\r\n");
        assert_eq!(client.cmd_str(&["EXISTS", "k"]), b":1\r\n");
        assert_eq!(client.cmd_str(&["TTL", "k"]), b":-1\r\n");
    }
    let info = client.info(Some("nearcache"));
    let hits = info_u64(&info, "l1_hits");
    assert!(
        hits >= ROUNDS - 2,
        "l1_hits {hits} of {ROUNDS} GETs:\n{info}"
    );
    let gets = commandstat_calls(redis, "get");
    assert!(gets <= 2, "the upstream ran {gets} of {ROUNDS} GETs");
    assert_eq!(commandstat_calls(redis, "strlen"), ROUNDS);
    poll_until(
        Duration::from_secs(10),
        "the upstream's table is loaded over the client's route",
        || sidecar.stderr().contains(LOADED),
    );
    let log = sidecar.stderr();
    assert_eq!(log.matches(DEGRADED).count(), 1, "stderr:\n{log}");
    assert_eq!(log.matches(LOADED).count(), 1, "stderr:\n{log}");
}

#[test]
fn password_upstream_serves_hits_after_client_auth() {
    let (redis, sidecar) = password_pair();
    authenticated_reads_hit_l1(&redis, &sidecar, &["AUTH", "secret"], b"+OK");
    // A second client authenticating does not load the table again.
    let commands = commandstat_calls(&redis, "command");
    let mut other = sidecar.conn();
    assert_eq!(other.cmd_str(&["AUTH", "secret"]), b"+OK\r\n");
    assert_eq!(other.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sidecar.stderr().matches(LOADED).count(), 1);
    assert_eq!(commandstat_calls(&redis, "command"), commands);
}

#[test]
fn password_upstream_serves_hits_after_acl_user_auth() {
    let (redis, sidecar) = password_pair();
    let reply = redis
        .conn()
        .cmd_str(&["ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all"]);
    assert_eq!(reply, b"+OK\r\n");
    authenticated_reads_hit_l1(&redis, &sidecar, &["AUTH", "app", "pw"], b"+OK");
}

#[test]
fn password_upstream_serves_hits_after_hello_auth() {
    let (redis, sidecar) = password_pair();
    let hello = ["HELLO", "2", "AUTH", "default", "secret"];
    authenticated_reads_hit_l1(&redis, &sidecar, &hello, b"*");
}

/// A write through the sidecar whose written keys come from key specs; every key in `read`
/// is cached first and must read as direct Redis does afterwards.
struct Case {
    setup: &'static [&'static [&'static str]],
    write: &'static [&'static str],
    read: &'static [&'static str],
}

const WRITES: &[Case] = &[
    Case {
        setup: &[
            &["RPUSH", "sort:src", "3", "1", "2"],
            &["SET", "sort:dst", "x"],
        ],
        write: &["SORT", "sort:src", "LIMIT", "0", "2", "STORE", "sort:dst"],
        read: &["sort:dst"],
    },
    Case {
        // The destination was cached as missing; LMOVE creates it as a list.
        setup: &[&["RPUSH", "lmove:a", "x"]],
        write: &["LMOVE", "lmove:a", "lmove:b", "LEFT", "RIGHT"],
        read: &["lmove:b"],
    },
    Case {
        setup: &[&["ZADD", "zu:a", "1", "m"], &["SET", "zu:dst", "x"]],
        write: &["ZUNIONSTORE", "zu:dst", "1", "zu:a"],
        read: &["zu:dst"],
    },
    Case {
        setup: &[
            &["GEOADD", "geo:src", "13.36", "38.11", "m"],
            &["SET", "geo:dst", "x"],
        ],
        write: &[
            "GEOSEARCHSTORE",
            "geo:dst",
            "geo:src",
            "FROMMEMBER",
            "m",
            "BYRADIUS",
            "1",
            "km",
        ],
        read: &["geo:dst"],
    },
    Case {
        setup: &[],
        write: &["XADD", "xadd:s", "*", "f", "v"],
        read: &["xadd:s"],
    },
    Case {
        setup: &[&["SET", "getdel:k", "v"]],
        write: &["GETDEL", "getdel:k"],
        read: &["getdel:k"],
    },
];

#[test]
fn writes_found_by_key_specs_evict_what_they_write() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut proxied = sidecar.conn();
    for case in WRITES {
        for cmd in case.setup {
            direct.cmd_str(cmd);
        }
        for key in case.read {
            proxied.cmd_str(&["GET", key]);
        }
        let reply = proxied.cmd_str(case.write);
        assert!(
            !reply.starts_with(b"-"),
            "{:?}: {}",
            case.write,
            show(&reply)
        );
        for key in case.read {
            assert_reply(
                &proxied.cmd_str(&["GET", key]),
                &direct.cmd_str(&["GET", key]),
                &format!("GET {key} after {:?}", case.write),
            );
        }
    }
}
