//! Malformed and oversized input, connection limits, many clients at once.

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use proto_tests::*;

const LIMITS: &[&str] = &[
    "--max-bulk-bytes",
    "1024",
    "--max-array-len",
    "8",
    "--max-inline-bytes",
    "64",
];

/// (what, request bytes, text the error must contain after `-ERR Protocol error`).
const MALFORMED: &[(&str, &[u8], &str)] = &[
    (
        "integer where a bulk is expected",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        "",
    ),
    ("negative bulk length", b"*1\r\n$-5\r\n", ""),
    ("non-numeric multibulk length", b"*abc\r\n", ""),
    ("non-numeric bulk length", b"*1\r\n$x\r\n", ""),
    (
        "inline with unbalanced quotes",
        b"ECHO \"unbalanced\r\n",
        "",
    ),
    (
        "bulk over --max-bulk-bytes",
        b"*2\r\n$3\r\nSET\r\n$1025\r\n",
        "invalid bulk length",
    ),
    (
        "multibulk over --max-array-len",
        b"*9\r\n",
        "invalid multibulk length",
    ),
    (
        "inline line over --max-inline-bytes without a newline",
        &[b'A'; 100],
        "too big inline request",
    ),
];

#[test]
fn malformed_frame_gets_error_then_close() {
    let (_redis, sidecar) = start_pair(LIMITS);
    let mut failures = Vec::new();
    for (what, request, detail) in MALFORMED {
        let mut c = sidecar.conn();
        c.send(request);
        let got = match c.try_read_to_close() {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{what} ({}): {e}", show(request)));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&got);
        let one_error_line = text.starts_with("-ERR Protocol error")
            && text.ends_with("\r\n")
            && text.matches("\r\n").count() == 1;
        if !one_error_line || !text.contains(detail) {
            failures.push(format!(
                "{what} ({}): got {} before close, want one `-ERR Protocol error...{detail}` line",
                show(request),
                show(&got)
            ));
        }
        // The process survived and serves new connections.
        assert_reply(
            &sidecar.conn().cmd_str(&["PING"]),
            b"+PONG\r\n",
            &format!("PING after {what}"),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn requests_before_a_malformed_frame_are_answered() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    c.send(b"PING\r\n*3\r\n$3\r\nSET\r\n$2\r\npk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n*abc\r\n");
    let got = c.read_to_close();
    assert!(
        got.starts_with(b"+PONG\r\n+OK\r\n+PONG\r\n-ERR Protocol error"),
        "earlier requests are answered in order before the error: {}",
        show(&got)
    );
    assert_reply(
        &sidecar.conn().cmd_str(&["GET", "pk"]),
        &bulk(b"v"),
        "the SET before the bad frame ran",
    );
}

#[test]
fn requests_within_the_limits_are_accepted() {
    let (_redis, sidecar) = start_pair(LIMITS);
    let mut c = sidecar.conn();
    let value = vec![b'v'; 1024];
    assert_reply(
        &c.cmd(&[b"SET", b"lim", &value]),
        b"+OK\r\n",
        "1024-byte bulk",
    );
    assert_reply(
        &c.cmd_str(&["GET", "lim"]),
        &bulk(&value),
        "GET 1024-byte value",
    );
    assert_reply(
        &c.cmd_str(&["DEL", "a", "b", "c", "d", "e", "f", "g"]),
        b":0\r\n",
        "8-element multibulk",
    );
    // 40 bytes with the CRLF, well under --max-inline-bytes 64.
    let word = "an-inline-request-of-40-bytes-all";
    let line = format!("ECHO {word}\r\n");
    assert_eq!(line.len(), 40);
    c.send(line.as_bytes());
    assert_reply(&c.read_reply(), &bulk(word.as_bytes()), "short inline");
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "still open");
}

#[test]
fn max_clients_refuses_extra_connections() {
    let (_redis, sidecar) = start_pair(&["--max-clients", "2"]);
    let mut c1 = sidecar.conn();
    let mut c2 = sidecar.conn();
    assert_reply(&c1.cmd_str(&["PING"]), b"+PONG\r\n", "client 1");
    assert_reply(&c2.cmd_str(&["PING"]), b"+PONG\r\n", "client 2");
    let mut c3 = sidecar.conn();
    assert_reply(
        &c3.read_to_close(),
        b"-ERR max number of clients reached\r\n",
        "client 3 gets the error and is closed",
    );
    drop(c1);
    // The freed slot is reusable once the sidecar has seen the close.
    poll_until(
        Duration::from_secs(5),
        "a new client to be accepted after one left",
        || {
            let Ok(mut c) = Conn::try_connect(sidecar.addr()) else {
                return false;
            };
            c.try_send(b"PING\r\n").is_ok() && c.try_read_reply().is_ok_and(|r| r == b"+PONG\r\n")
        },
    );
    assert_reply(&c2.cmd_str(&["PING"]), b"+PONG\r\n", "client 2 unaffected");
}

#[test]
fn many_connections() {
    const THREADS: usize = 20;
    const PER_THREAD: usize = 100;
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    for i in 0..10 {
        direct.cmd_str(&["SET", &format!("many:{i}"), &format!("v{i}")]);
    }
    let connected = Arc::new(Barrier::new(THREADS + 1));
    let go = Arc::new(Barrier::new(THREADS + 1));
    let addr = sidecar.addr();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (connected, go) = (Arc::clone(&connected), Arc::clone(&go));
            thread::spawn(move || {
                // No panics before the barriers: a failed connect is reported, not unwound.
                let mut conns: Vec<(usize, Conn)> = Vec::new();
                let mut failures = Vec::new();
                for j in 0..PER_THREAD {
                    match Conn::try_connect(addr) {
                        Ok(c) => conns.push((j, c)),
                        Err(e) => failures.push(format!("conn {t}/{j}: connect: {e}")),
                    }
                }
                connected.wait();
                go.wait();
                for (j, c) in conns.iter_mut() {
                    let key = format!("many:{}", (t * PER_THREAD + *j) % 20);
                    let mut batch = encode_command_str(&["PING"]);
                    batch.extend_from_slice(&encode_command_str(&["GET", &key]));
                    if let Err(e) = c.try_send(&batch) {
                        failures.push(format!("conn {t}/{j}: send: {e}"));
                    }
                }
                for (j, c) in conns.iter_mut() {
                    let i = (t * PER_THREAD + *j) % 20;
                    let want = if i < 10 {
                        bulk(format!("v{i}").as_bytes())
                    } else {
                        b"$-1\r\n".to_vec()
                    };
                    match (c.try_read_reply(), c.try_read_reply()) {
                        (Ok(ping), Ok(get)) if ping == b"+PONG\r\n" && get == want => {}
                        (ping, get) => failures.push(format!("conn {t}/{j}: {ping:?} {get:?}")),
                    }
                }
                failures
            })
        })
        .collect();
    connected.wait();
    // Connections complete in the kernel before the sidecar accepts them: poll (without
    // panicking, the threads wait on `go`) until all are counted.
    let mut clients = 0;
    if let Ok(mut c) = Conn::try_connect(sidecar.addr()) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while clients <= (THREADS * PER_THREAD) as u64 && std::time::Instant::now() < deadline {
            let info = c.info(Some("nearcache"));
            clients = info_field(&info, "connected_clients")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            thread::sleep(Duration::from_millis(10));
        }
    }
    go.wait();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 500 connections failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        clients >= (THREADS * PER_THREAD) as u64,
        "connected_clients {clients} with 501 connections open"
    );
    // Still accepting afterwards.
    assert!(TcpStream::connect(sidecar.addr()).is_ok());
}

/// A client that pipelines reads of a large cached value and does not read its replies
/// holds about a megabyte of the sidecar's buffers, not a batch of values; other clients
/// are served meanwhile, and the slow client still gets every reply once it reads.
#[test]
fn a_client_that_does_not_read_holds_a_bounded_output() {
    const VALUE: usize = 512 << 10;
    const GETS: usize = 1000;
    let (redis, sidecar) = start_pair(&[]);
    let value = random_bytes(VALUE, 7);
    assert_reply(
        &redis.conn().cmd(&[b"SET", b"big", &value]),
        b"+OK\r\n",
        "SET",
    );
    let mut slow = sidecar.conn();
    for _ in 0..2 {
        assert_eq!(
            bulk_reply(&slow.cmd_str(&["GET", "big"])).as_deref(),
            Some(&value[..])
        );
    }
    let before = proc_status_bytes(sidecar.pid(), "VmRSS");
    slow.send(&encode_command_str(&["GET", "big"]).repeat(GETS));
    // Others are served while the slow client's replies wait.
    let mut other = sidecar.conn();
    for i in 0..20 {
        let v = i.to_string();
        assert_reply(
            &other.cmd_str(&["SET", "k", &v]),
            b"+OK\r\n",
            "SET by another client",
        );
        assert_reply(
            &other.cmd_str(&["GET", "k"]),
            &bulk(v.as_bytes()),
            "GET by another client",
        );
    }
    let grown = proc_status_bytes(sidecar.pid(), "VmRSS").saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "{GETS} unread replies of {VALUE} bytes grew the sidecar by {} MiB",
        grown >> 20
    );
    for i in 0..GETS {
        let reply = slow.read_reply();
        assert!(
            bulk_reply(&reply).as_deref() == Some(&value[..]),
            "reply {i}"
        );
    }
}

/// Connections pinned to one client (MULTI, WATCH, SUBSCRIBE, blocking calls) are bounded
/// by `--max-pinned`: past it the command that would pin gets Redis's own `maxclients`
/// error and is not run, the session stays usable, and pooled traffic goes on.
#[test]
fn max_pinned_refuses_the_command_that_would_pin() {
    const FULL: &[u8] = b"-ERR max number of clients reached\r\n";
    let (_redis, sidecar) = start_pair(&["--max-pinned", "2"]);
    let (mut a, mut b, mut c) = (sidecar.conn(), sidecar.conn(), sidecar.conn());
    assert_reply(&a.cmd_str(&["MULTI"]), b"+OK\r\n", "client 1 pins");
    assert_reply(
        &b.cmd_str(&["SUBSCRIBE", "ch"]),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        "client 2 pins",
    );
    for pinning in [
        &["MULTI"][..],
        &["WATCH", "k"],
        &["SUBSCRIBE", "ch"],
        &["BLPOP", "q", "1"],
    ] {
        assert_reply(
            &c.cmd_str(pinning),
            FULL,
            &format!("{pinning:?} past --max-pinned"),
        );
    }
    // The refused MULTI left no transaction: the session goes on over the pool.
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
    let upstream = c.info(Some("nearcache_upstream"));
    assert_eq!(
        info_u64(&upstream, "upstream_pinned_connections"),
        2,
        "{upstream}"
    );
    assert_eq!(
        info_u64(&upstream, "upstream_pinned_refused"),
        4,
        "{upstream}"
    );
    let (_, m) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    let refused = metric(&m, "nearcache_upstream_pinned_refused_total", "");
    assert_eq!(refused, Some(4.0), "{m}");
    // A pinned client that leaves frees its place.
    drop(a);
    poll_until(
        Duration::from_secs(5),
        "a place freed by a client that left",
        || c.cmd_str(&["MULTI"]) == b"+OK\r\n",
    );
    assert_reply(&c.cmd_str(&["SET", "k", "w"]), b"+QUEUED\r\n", "queued");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
}
