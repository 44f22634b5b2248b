//! Error replies that describe the upstream's state (`-MASTERDOWN`, `-READONLY`,
//! `-NOSCRIPT`, `-BUSY`, `-LOADING`) reach the client byte for byte as a direct client gets
//! them, also when they answer the requests that open a new upstream connection; never an
//! `-ERR nearcache: ...` of the sidecar's own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto_tests::*;

fn is_nearcache_error(reply: &[u8]) -> bool {
    reply.starts_with(b"-ERR nearcache")
}

/// Asserts that `request` gets the same reply through the sidecar as directly, and that it
/// is an error reply starting with `code`.
#[track_caller]
fn same_error(direct: &mut Conn, proxied: &mut Conn, request: &[&str], code: &str) {
    let got = assert_same_reply(direct, proxied, &encode_command_str(request));
    assert!(
        got.starts_with(format!("-{code} ").as_bytes()),
        "{request:?}: expected -{code}, got {}",
        show(&got)
    );
}

/// A replica whose master is gone, with `replica-serve-stale-data no`, answers nearly every
/// command (PING too, the sidecar's liveness check) with `-MASTERDOWN`.
#[test]
fn masterdown_replies_are_forwarded() {
    let dead = free_port().to_string();
    let redis = Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &dead,
        "--replica-serve-stale-data",
        "no",
    ]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    for _ in 0..2 {
        same_error(&mut direct, &mut c, &["GET", "k"], "MASTERDOWN");
    }
    same_error(&mut direct, &mut c, &["PING"], "MASTERDOWN");
    let set = assert_same_reply(&mut direct, &mut c, &encode_command_str(&["SET", "k", "v"]));
    assert!(set.starts_with(b"-"), "SET on the replica: {}", show(&set));
    same_error(&mut direct, &mut c, &["MGET", "k", "j"], "MASTERDOWN");
    // A new connection in another database and protocol: new upstream connections.
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["SELECT", "3"]), b"+OK\r\n", "SELECT 3");
    same_error(&mut direct, &mut other, &["GET", "k"], "MASTERDOWN");
    let hello = other.hello3();
    assert!(hello.starts_with(b"%"), "HELLO 3: {}", show(&hello));
    let mut direct3 = redis.conn();
    direct3.hello3();
    assert_reply(&direct3.cmd_str(&["SELECT", "3"]), b"+OK\r\n", "SELECT 3");
    same_error(&mut direct3, &mut other, &["GET", "k"], "MASTERDOWN");
    // The invalidation link's heartbeat gets -MASTERDOWN too: the link stays down (L1 is
    // bypassed, as Redis serves no reads), retried with backoff, not up and down in turn.
    std::thread::sleep(Duration::from_secs(4));
    let stderr = sidecar.stderr();
    assert!(!stderr.contains("refused PUBLISH"), "{stderr}");
    assert!(!stderr.contains("link up again"), "{stderr}");
    same_error(&mut direct, &mut c, &["GET", "k"], "MASTERDOWN");
}

#[test]
fn readonly_replies_are_forwarded_and_reads_work() {
    let master = Redis::start();
    let port = master.port().to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]);
    let sidecar = Sidecar::start(replica.port(), &[]);
    assert_reply(
        &master.conn().cmd_str(&["SET", "k", "v"]),
        b"+OK\r\n",
        "SET on the master",
    );
    let mut direct = replica.conn();
    poll_until(Duration::from_secs(10), "the replica to have k", || {
        direct.cmd_str(&["GET", "k"]) == bulk(b"v")
    });
    let mut c = sidecar.conn();
    same_error(&mut direct, &mut c, &["SET", "k", "x"], "READONLY");
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET on the replica");
    }
    same_error(&mut direct, &mut c, &["DEL", "k"], "READONLY");
}

#[test]
fn noscript_replies_are_forwarded() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let sha = "ffffffffffffffffffffffffffffffffffffffff";
    same_error(&mut direct, &mut c, &["EVALSHA", sha, "0"], "NOSCRIPT");
    same_error(&mut direct, &mut c, &["EVALSHA_RO", sha, "0"], "NOSCRIPT");
}

/// Busy-loops for at most 10 s (killed long before).
const SPIN: &str = "local s=redis.call('TIME') \
    while true do \
      local t=redis.call('TIME') \
      if (t[1]-s[1])*1000000+(t[2]-s[2]) > 10000000 then break end \
    end \
    return 1";

/// The function library for the FUNCTION KILL case (same loop).
fn spin_library() -> String {
    format!("#!lua name=spinlib\nredis.register_function('spin', function() {SPIN} end)")
}

/// Starts `request` on `a` and waits until Redis answers -BUSY; returns that reply.
fn start_busy(redis: &Redis, a: &mut Conn, request: &[&str]) -> Vec<u8> {
    a.send(&encode_command_str(request));
    let mut busy = Vec::new();
    poll_until(Duration::from_secs(5), "the server to be busy", || {
        busy = redis.conn().cmd_str(&["GET", "probe"]);
        busy.starts_with(b"-BUSY")
    });
    busy
}

/// While a script or function runs: every client, old or new, in any route, gets Redis's
/// -BUSY; the kill goes through; then everything works again.
fn busy_case(start: &[&str], kill: &str, killed_prefix: &[u8], with_library: bool) {
    let redis = Redis::start_with(&["--busy-reply-threshold", "100"]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    let mut setup = redis.conn();
    assert_reply(&setup.cmd_str(&["SET", "somekey", "v"]), b"+OK\r\n", "SET");
    if with_library {
        let reply = setup.cmd_str(&["FUNCTION", "LOAD", &spin_library()]);
        assert_reply(&reply, &bulk(b"spinlib"), "FUNCTION LOAD");
    }
    let mut a = sidecar.conn();
    let mut b = sidecar.conn();
    assert_reply(&b.cmd_str(&["PING"]), b"+PONG\r\n", "B connected");
    // D is in db 5 before the script: its HELLO 3 needs a new connection that must SELECT 5.
    let mut d = sidecar.conn();
    assert_reply(&d.cmd_str(&["SELECT", "5"]), b"+OK\r\n", "D: SELECT 5");
    assert_reply(
        &d.cmd_str(&["GET", "somekey"]),
        b"$-1\r\n",
        "D: GET in db 5",
    );

    let busy = start_busy(&redis, &mut a, start);
    assert!(
        busy.starts_with(b"-BUSY Redis is busy running a"),
        "{}",
        show(&busy)
    );
    let mut direct = redis.conn();
    same_error(&mut direct, &mut b, &["GET", "somekey"], "BUSY");
    same_error(&mut direct, &mut b, &["GET", "uncached"], "BUSY");
    same_error(&mut direct, &mut b, &["SET", "somekey", "w"], "BUSY");
    same_error(&mut direct, &mut b, &["PING"], "BUSY");

    // A new client: its first command, a new database, a new protocol.
    let mut c = sidecar.conn();
    same_error(&mut direct, &mut c, &["GET", "somekey"], "BUSY");
    same_error(&mut direct, &mut c, &["SELECT", "5"], "BUSY");
    let hello = c.hello3();
    assert!(hello.starts_with(b"%"), "C: HELLO 3: {}", show(&hello));
    let mut direct3 = redis.conn();
    direct3.hello3();
    same_error(&mut direct3, &mut c, &["GET", "somekey"], "BUSY");
    same_error(&mut direct3, &mut c, &["SET", "k", "v"], "BUSY");

    // D's HELLO 3 opens a connection whose SELECT 5 is refused with -BUSY: D gets Redis's
    // -BUSY (a direct client's next command would), not an error of the sidecar's.
    let hello = d.cmd_str(&["HELLO", "3"]);
    assert!(
        hello == busy || hello.starts_with(b"%"),
        "D: HELLO 3 while busy: {}",
        show(&hello)
    );
    if hello == busy {
        same_error(&mut direct, &mut d, &["GET", "somekey"], "BUSY");
    } else {
        d.set_protocol(Protocol::Resp3);
        same_error(&mut direct3, &mut d, &["GET", "somekey"], "BUSY");
    }

    let kill: Vec<&str> = kill.split(' ').collect();
    assert_reply(&b.cmd_str(&kill), b"+OK\r\n", "the kill via the sidecar");
    let killed = a.read_reply();
    assert!(
        killed.starts_with(killed_prefix),
        "A gets Redis's error for the killed script: {}",
        show(&killed)
    );
    // The same through a direct connection: the same bytes.
    let mut direct_a = redis.conn();
    start_busy(&redis, &mut direct_a, start);
    assert_reply(&direct.cmd_str(&kill), b"+OK\r\n", "the kill, direct");
    let direct_killed = direct_a.read_reply();
    assert_eq!(
        show(&killed),
        show(&direct_killed),
        "the killed call's reply through the sidecar and direct"
    );

    for (name, conn) in [("A", &mut a), ("B", &mut b)] {
        assert_reply(&conn.cmd_str(&["SET", "somekey", name]), b"+OK\r\n", name);
        assert_reply(
            &conn.cmd_str(&["GET", "somekey"]),
            &bulk(name.as_bytes()),
            name,
        );
    }
    assert_reply(&c.cmd_str(&["GET", "somekey"]), &bulk(b"B"), "C after");
    poll_until(Duration::from_secs(10), "D's HELLO 3 to work", || {
        d.set_protocol(Protocol::Resp2);
        let reply = d.cmd_str(&["HELLO", "3"]);
        assert!(!is_nearcache_error(&reply), "D: {}", show(&reply));
        reply.starts_with(b"%")
    });
    d.set_protocol(Protocol::Resp3);
    assert_reply(&d.cmd_str(&["GET", "somekey"]), b"_\r\n", "D in db 5");
    let stderr = sidecar.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn busy_script_replies_are_forwarded_and_the_script_can_be_killed() {
    busy_case(
        &["EVAL", SPIN, "0"],
        "SCRIPT KILL",
        b"-ERR Script killed by user",
        false,
    );
}

#[test]
fn busy_function_replies_are_forwarded_and_the_function_can_be_killed() {
    busy_case(
        &["FCALL", "spin", "0"],
        "FUNCTION KILL",
        b"-ERR Script killed by user",
        true,
    );
}

const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";

/// Length of the first complete RESP request (array of bulk strings) in `buf`.
fn request_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    if buf.first()? != &b'*' {
        // Inline: one line.
        return buf.windows(2).position(|w| w == b"\r\n").map(|p| p + 2);
    }
    let (n, mut at) = line(buf, 0)?;
    for _ in 0..n {
        let (len, data) = line(buf, at)?;
        at = data + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

/// A server that answers every request with -LOADING (a real one leaves LOADING too soon
/// to be tested reliably); counts the connections it accepted.
fn loading_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer_loading(stream));
        }
    });
    (port, accepted)
}

fn answer_loading(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = request_len(&buf) {
            buf.drain(..len);
            if stream.write_all(LOADING).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn loading_replies_are_forwarded() {
    let (port, accepted) = loading_server();
    let sidecar = Sidecar::start(port, &[]);
    let mut c = sidecar.conn();
    for request in [
        &["GET", "k"][..],
        &["GET", "k"][..],
        &["SET", "k", "v"][..],
        &["MGET", "a", "b"][..],
        &["INCR", "n"][..],
    ] {
        let reply = c.cmd_str(request);
        assert_reply(&reply, LOADING, &format!("{request:?}"));
    }
    let mut other = sidecar.conn();
    assert_reply(&other.cmd_str(&["GET", "k"]), LOADING, "a second client");
    // The invalidation link cannot come up (HELLO gets -LOADING here): it retries with
    // backoff, not in a loop, and the sidecar keeps answering.
    let before = accepted.load(Ordering::SeqCst);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let opened = accepted.load(Ordering::SeqCst) - before;
    assert!(
        opened < 30,
        "{opened} connections in {:?} while loading",
        started.elapsed()
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), LOADING, "GET after a while");
    let stderr = sidecar.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
