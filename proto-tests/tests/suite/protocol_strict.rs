//! Request framing accepted and refused exactly as Redis does: tricky bytes sent to a real
//! Redis and through the sidecar get the same replies and the same close; malformed frames
//! never reach the shared upstream connections.

use std::io::ErrorKind;
use std::thread;
use std::time::Duration;

use proto_tests::*;

/// Sent after a case (when it asks for it) to see that the connection is still in step.
const SENTINEL: &[u8] = b"*2\r\n$4\r\nECHO\r\n$8\r\nsentinel\r\n";
const SENTINEL_REPLY: &[u8] = b"$8\r\nsentinel\r\n";

/// How a connection ended up after a case.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The peer closed it.
    Closed,
    /// Still open (the sentinel was answered, or nothing more came).
    Open,
}

/// Sends `input` (and the sentinel after it when `sentinel`) in one write and returns
/// every reply up to the sentinel's or the close.
fn outcome(conn: &mut Conn, input: &[u8], sentinel: bool) -> (Vec<Vec<u8>>, End) {
    conn.set_read_timeout(Duration::from_millis(700));
    let mut bytes = input.to_vec();
    if sentinel {
        bytes.extend_from_slice(SENTINEL);
    }
    let _ = conn.try_send(&bytes);
    let mut replies = Vec::new();
    loop {
        match conn.try_read_reply() {
            Ok(r) => {
                let done = sentinel && r == SENTINEL_REPLY;
                replies.push(r);
                if done {
                    return (replies, End::Open);
                }
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => return (replies, End::Open),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                ) =>
            {
                return (replies, End::Closed)
            }
            Err(e) => panic!("reading after {}: {e}", show(input)),
        }
    }
}

fn long(prefix: &[u8], byte: u8, n: usize) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.resize(prefix.len() + n, byte);
    v
}

/// (what, request bytes, send the sentinel after them).
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let fixed: &[(&str, &[u8], bool)] = &[
        ("canonical", b"*1\r\n$4\r\nPING\r\n", true),
        (
            "bulk length with a leading zero",
            b"*1\r\n$04\r\nPING\r\n",
            true,
        ),
        ("count with a leading zero", b"*01\r\n$4\r\nPING\r\n", true),
        ("count 00", b"*00\r\n", true),
        ("bulk length -0", b"*1\r\n$-0\r\n", true),
        ("count -0", b"*-0\r\n", true),
        ("count +1", b"*+1\r\n$4\r\nPING\r\n", true),
        ("bulk length +4", b"*1\r\n$+4\r\nPING\r\n", true),
        ("space before the count", b"* 1\r\n$4\r\nPING\r\n", true),
        ("space after the count", b"*1 \r\n$4\r\nPING\r\n", true),
        ("space in a bulk length", b"*1\r\n$ 4\r\nPING\r\n", true),
        ("empty count", b"*\r\n", true),
        ("empty bulk length", b"*1\r\n$\r\nPING\r\n", true),
        ("count over INT_MAX", b"*2147483648\r\n", true),
        ("count over i64", b"*99999999999999999999\r\n", true),
        (
            "count i64::MIN (an empty request)",
            b"*-9223372036854775808\r\n",
            true,
        ),
        (
            "bulk length over i64",
            b"*1\r\n$9223372036854775808\r\n",
            true,
        ),
        ("bulk length -1", b"*1\r\n$-1\r\n", true),
        ("bulk length over 512 MiB", b"*1\r\n$536870913\r\n", true),
        ("*0 is skipped", b"*0\r\n", true),
        ("*-1 is skipped", b"*-1\r\n", true),
        ("*-5 is skipped", b"*-5\r\n", true),
        (
            "integer where a bulk is expected",
            b"*2\r\n$4\r\nECHO\r\n:1\r\n",
            true,
        ),
        ("LF where a bulk is expected", b"*1\r\n\n\r\n", true),
        ("inline where a bulk is expected", b"*1\r\nPING\r\n", true),
        (
            "payload longer than declared",
            b"*1\r\n$3\r\nPINGX\r\n",
            true,
        ),
        (
            "no CRLF after the payload",
            b"*2\r\n$4\r\nECHO\r\n$2\r\nhiXY",
            true,
        ),
        ("no LF after a count", b"*1\rX$4\r\nPING\r\n", true),
        ("no LF after a bulk length", b"*1\r\n$4\rXPING\r\n", true),
        ("LF without CR after a count", b"*1\n$4\r\nPING\r\n", true),
        (
            "skipped bytes eat the next request's star",
            b"*1\r\n$4\r\nPING\r*1\r\n$4\r\nPING\r\n",
            true,
        ),
        (
            "a bulk header as an inline command",
            b"$4\r\nPING\r\n",
            true,
        ),
        ("inline", b"PING\r\n", true),
        ("inline with LF only", b"ECHO a\n", true),
        ("empty lines", b"\r\n\r\n\n", true),
        ("blank line", b"  \t \r\n", true),
        ("inline double quotes", b"ECHO \"a b\"\r\n", true),
        ("inline escapes", b"ECHO \"\\x41\\n\\t\\q\\xZZ\"\r\n", true),
        ("inline single quotes", b"ECHO 'it\\'s \\n'\r\n", true),
        ("inline quotes inside a word", b"ECHO a\"b c\"\r\n", true),
        ("inline empty quotes", b"ECHO \"\"\r\n", true),
        ("inline vertical tab", b"ECHO a\x0bb\r\n", true),
        ("inline leading form feed", b"\x0cECHO x\r\n", true),
        ("inline CR inside the line", b"ECHO a\rb\r\n", true),
        ("inline unbalanced double quote", b"ECHO \"open\r\n", true),
        ("inline unbalanced single quote", b"ECHO 'open\r\n", true),
        (
            "inline text after a closing quote",
            b"ECHO \"a\"b\r\n",
            true,
        ),
        ("inline escaped closing quote", b"ECHO \"a\\\"\r\n", true),
        (
            "pipelined good then bad",
            b"PING\r\n*1\r\n$04\r\nPING\r\n",
            true,
        ),
    ];
    let mut all: Vec<_> = fixed.iter().map(|(w, b, s)| (*w, b.to_vec(), *s)).collect();
    all.push((
        "too big mbulk count string",
        long(b"*", b'1', 70_000),
        false,
    ));
    all.push((
        "too big bulk count string",
        long(b"*1\r\n$", b'1', 70_000),
        false,
    ));
    all.push(("too big inline request", long(b"", b'A', 70_000), false));
    all
}

#[test]
fn tricky_framing_gets_the_same_replies_and_close_as_redis() {
    let (redis, sidecar) = start_pair(&[]);
    let mut failures = Vec::new();
    for (what, input, sentinel) in cases() {
        let want = outcome(&mut redis.conn(), &input, sentinel);
        let got = outcome(&mut sidecar.conn(), &input, sentinel);
        if got != want {
            let shown = |(r, end): &(Vec<Vec<u8>>, End)| {
                let replies: Vec<String> = r.iter().map(|r| show(r)).collect();
                format!("{} then {end:?}", replies.join(" "))
            };
            failures.push(format!(
                "{what} ({}):\n   got: {}\n  want: {}",
                show(&input),
                shown(&got),
                shown(&want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The ids of the upstream's client connections other than the asking one.
fn upstream_client_ids(redis: &Redis) -> Vec<u64> {
    let mut c = redis.conn();
    let me = int_reply(&c.cmd_str(&["CLIENT", "ID"])) as u64;
    let list = bulk_reply(&c.cmd_str(&["CLIENT", "LIST"])).expect("CLIENT LIST");
    String::from_utf8_lossy(&list)
        .lines()
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .filter(|&id| id != me)
        .collect()
}

fn nearcache_field(sidecar: &Sidecar, name: &str) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), name)
}

#[test]
fn malformed_frames_do_not_disturb_other_clients() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["SET", "stable", "v"]),
        b"+OK\r\n",
        "SET stable",
    );
    assert_reply(
        &c.cmd_str(&["GET", "stable"]),
        &bulk(b"v"),
        "GET stable (fill)",
    );
    assert_reply(
        &c.cmd_str(&["GET", "stable"]),
        &bulk(b"v"),
        "GET stable (hit)",
    );
    let hits_before = nearcache_field(&sidecar, "l1_hits");
    let upstream_before = upstream_client_ids(&redis);

    let addr = sidecar.addr();
    let bad = thread::spawn(move || {
        for frame in [
            &b"*1\r\n$04\r\nPING\r\n"[..],
            b"*01\r\n$4\r\nPING\r\n",
            b"*1\r\n$-0\r\n",
        ]
        .iter()
        .cycle()
        .take(60)
        {
            let mut c = Conn::connect(addr);
            c.send(frame);
            let got = c.read_to_close();
            assert!(
                got.starts_with(b"-ERR Protocol error: invalid"),
                "{}",
                show(&got)
            );
        }
    });
    let good: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..150 {
                    let key = format!("k{t}:{}", i % 10);
                    let value = format!("v{i}");
                    assert_reply(&c.cmd_str(&["SET", &key, &value]), b"+OK\r\n", "SET");
                    for _ in 0..2 {
                        assert_reply(&c.cmd_str(&["GET", &key]), &bulk(value.as_bytes()), "GET");
                    }
                }
            })
        })
        .collect();
    bad.join().expect("malformed-frame client");
    for g in good {
        g.join().expect("a well-behaved client saw a failure");
    }

    // L1 was not flushed: the entry filled before is still served without the upstream.
    let gets = commandstat_calls(&redis, "get");
    assert_reply(
        &c.cmd_str(&["GET", "stable"]),
        &bulk(b"v"),
        "GET stable after",
    );
    assert_eq!(
        commandstat_calls(&redis, "get"),
        gets,
        "GET stable was not an L1 hit"
    );
    assert!(nearcache_field(&sidecar, "l1_hits") > hits_before + 1);
    // No upstream connection was closed (some may have been opened for the new clients).
    let upstream_after = upstream_client_ids(&redis);
    for id in &upstream_before {
        assert!(
            upstream_after.contains(id),
            "upstream connection {id} was closed: before {upstream_before:?}, after {upstream_after:?}"
        );
    }
}

#[test]
fn bulk_over_upstream_proto_max_bulk_len_is_refused_locally() {
    let redis = Redis::start_with(&["--proto-max-bulk-len", "1mb"]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    poll_until(
        Duration::from_secs(10),
        "the sidecar asks the upstream's proto-max-bulk-len",
        || commandstat_calls(&redis, "config|get") > 0,
    );
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["SET", "o", "1"]), b"+OK\r\n", "SET before");
    let upstream_before = upstream_client_ids(&redis);

    // A bulk of exactly proto-max-bulk-len is accepted, one byte more is not.
    let max = vec![b'x'; 1 << 20];
    let mut c = sidecar.conn();
    let reply = c.cmd(&[b"SET", b"big", &max]);
    assert_reply(&reply, b"+OK\r\n", "SET of exactly 1 MiB");

    // A 2 MB SET: its header is refused before the payload, as Redis itself does.
    let mut request = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2000000\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 1000]);
    let want = outcome(&mut redis.conn(), &request, false);
    let got = outcome(&mut sidecar.conn(), &request, false);
    assert_eq!(
        want,
        (
            vec![b"-ERR Protocol error: invalid bulk length\r\n".to_vec()],
            End::Closed
        ),
        "direct Redis"
    );
    assert_eq!(got, want, "through the sidecar");

    // The shared upstream connections were not touched.
    assert_reply(&other.cmd_str(&["GET", "o"]), &bulk(b"1"), "GET after");
    assert_reply(
        &other.cmd_str(&["STRLEN", "big"]),
        b":1048576\r\n",
        "STRLEN",
    );
    let upstream_after = upstream_client_ids(&redis);
    assert!(
        upstream_before.iter().all(|id| upstream_after.contains(id)),
        "an upstream connection was closed: before {upstream_before:?}, after {upstream_after:?}"
    );
}
