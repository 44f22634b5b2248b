//! A lost pooled upstream connection (killed with `CLIENT KILL`, reset) does not fail the
//! reads in flight on it: a call of read-only commands (by the command table's flags) or an
//! L1 fetch is sent once more on the slot's next connection and its reply is the current
//! value; writes in flight still get `-ERR nearcache: upstream unavailable`, as a direct
//! client's would fail. Counted as INFO `upstream_retries`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::Mutex;
use std::thread;
use std::time::Duration;

use proto_tests::*;

/// Reader and writer threads of the storm.
const READERS: usize = 20;
const WRITERS: usize = 5;
/// Rounds of killing the sidecar's pooled connections.
const KILLS: usize = 6;

/// What the clients of a storm saw.
#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    /// Every read that got an error or a reply other than the one expected.
    bad_reads: Mutex<Vec<String>>,
    /// Every write reply that was neither its success nor an error.
    bad_writes: Mutex<Vec<String>>,
}

/// The sidecar's pooled data connections, as Redis lists them: every client but the one
/// asking and the sidecar's control connection (`nearcache-control`).
fn pooled_ids(direct: &mut Conn) -> Vec<String> {
    let own = int_reply(&direct.cmd_str(&["CLIENT", "ID"])).to_string();
    let list = bulk_reply(&direct.cmd_str(&["CLIENT", "LIST"])).expect("CLIENT LIST");
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|line| !line.contains(" name=nearcache-control "))
        .filter_map(|line| {
            line.strip_prefix("id=")?
                .split(' ')
                .next()
                .map(String::from)
        })
        .filter(|id| *id != own)
        .collect()
}

fn reader(sidecar: std::net::SocketAddr, n: usize, stop: &AtomicBool, tally: &Tally) {
    let mut c = Conn::connect(sidecar);
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        i += 1;
        // Keys never written: every GET and MGET is a miss fetched upstream.
        let (got, want) = if i.is_multiple_of(2) {
            let key = format!("miss:{n}:{i}");
            (c.cmd_str(&["GET", &key]), b"$-1\r\n".to_vec())
        } else {
            let (a, b) = (format!("miss:{n}:{i}:a"), format!("miss:{n}:{i}:b"));
            let got = c.cmd_str(&["MGET", &a, "present", &b]);
            (got, b"*3\r\n$-1\r\n$1\r\nv\r\n$-1\r\n".to_vec())
        };
        if got != want {
            tally.bad_reads.lock().push(show(&got));
        }
        tally.reads.fetch_add(1, SeqCst);
    }
}

fn writer(sidecar: std::net::SocketAddr, n: usize, stop: &AtomicBool, tally: &Tally) {
    let mut c = Conn::connect(sidecar);
    let (key, counter) = (format!("written:{n}"), format!("counter:{n}"));
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        i += 1;
        let (got, ok) = if i.is_multiple_of(2) {
            let got = c.cmd_str(&["SET", &key, &i.to_string()]);
            let ok = got == b"+OK\r\n";
            (got, ok)
        } else {
            let got = c.cmd_str(&["INCR", &counter]);
            let ok = got.starts_with(b":") && got.ends_with(b"\r\n");
            (got, ok)
        };
        if got.starts_with(b"-ERR nearcache: upstream unavailable") {
            tally.write_errors.fetch_add(1, SeqCst);
        } else if !ok {
            tally.bad_writes.lock().push(show(&got));
        }
        tally.writes.fetch_add(1, SeqCst);
    }
}

/// Runs [`READERS`] readers and [`WRITERS`] writers through a sidecar with two pooled
/// connections (and `extra` flags) while the pooled connections are killed [`KILLS`]
/// times; returns what they saw and the sidecar's `upstream_retries`.
fn storm(extra: &[&str]) -> (Arc<Tally>, u64) {
    let redis = Redis::start();
    let mut args = vec!["--upstream-connections", "2"];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start(redis.port(), &args);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "present", "v"]), b"+OK\r\n", "SET");
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let mut threads = Vec::new();
    for n in 0..READERS + WRITERS {
        let (stop, tally, addr) = (stop.clone(), tally.clone(), sidecar.addr());
        threads.push(thread::spawn(move || match n < READERS {
            true => reader(addr, n, &stop, &tally),
            false => writer(addr, n, &stop, &tally),
        }));
    }
    let progress = |tally: &Tally, more: u64| {
        let (reads, writes) = (tally.reads.load(SeqCst), tally.writes.load(SeqCst));
        poll_until(
            Duration::from_secs(20),
            "the clients to make progress",
            || tally.reads.load(SeqCst) >= reads + more && tally.writes.load(SeqCst) >= writes + 20,
        );
    };
    progress(&tally, 200);
    for _ in 0..KILLS {
        let ids = pooled_ids(&mut direct);
        assert!(!ids.is_empty(), "no pooled connection to kill");
        for id in &ids {
            direct.cmd_str(&["CLIENT", "KILL", "ID", id]);
        }
        // Back on new connections, and busy again, before the next round.
        progress(&tally, 300);
    }
    stop.store(true, SeqCst);
    for t in threads {
        t.join().expect("a client thread panicked");
    }
    let info = sidecar.conn().info(Some("nearcache"));
    (tally, info_u64(&info, "upstream_retries"))
}

fn check_storm(extra: &[&str]) {
    let (tally, retries) = storm(extra);
    let bad_reads = tally.bad_reads.lock();
    let bad_writes = tally.bad_writes.lock();
    println!(
        "{extra:?}: {} reads, {} bad; {} writes, {} failed with upstream unavailable; {retries} retries",
        tally.reads.load(SeqCst),
        bad_reads.len(),
        tally.writes.load(SeqCst),
        tally.write_errors.load(SeqCst),
    );
    assert!(
        bad_reads.is_empty(),
        "{} reads got an error or a wrong reply, e.g. {:?}",
        bad_reads.len(),
        &bad_reads[..bad_reads.len().min(5)]
    );
    assert!(
        bad_writes.is_empty(),
        "malformed write replies: {bad_writes:?}"
    );
    assert!(retries > 0, "no read was retried");
}

/// GET misses (GET + PTTL fetches) and MGETs of misses, with L1 on.
#[test]
fn fetches_survive_killed_pooled_connections() {
    check_storm(&[]);
}

/// With no L1 (`--l1-ttl 0`) GET and MGET are plain forwards, retried as read-only commands.
#[test]
fn forwarded_reads_survive_killed_pooled_connections() {
    check_storm(&["--l1-ttl", "0"]);
}

/// The proxy's connections: each one's client side and whether its replies are held back.
type Proxied = Arc<Mutex<Vec<(TcpStream, Arc<AtomicBool>)>>>;

/// A TCP proxy in front of Redis that can hold back the replies of the connections open now
/// (the requests still reach Redis) and cut them: a connection lost after Redis ran a read
/// and before its reply arrived, which a real Redis cannot be made to do on cue.
struct Proxy {
    port: u16,
    conns: Proxied,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let conns: Proxied = Arc::default();
        let registry = conns.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let held = Arc::new(AtomicBool::new(false));
                registry
                    .lock()
                    .push((client.try_clone().unwrap(), held.clone()));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if !held.load(SeqCst) && c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { port, conns }
    }

    /// Holds back every reply of the connections open now.
    fn hold(&self) {
        for (_, held) in self.conns.lock().iter() {
            held.store(true, SeqCst);
        }
    }

    /// Resets every connection open now (new ones are served normally).
    fn cut(&self) {
        for (client, _) in self.conns.lock().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// Calls of `cmd` Redis has run (`INFO commandstats`).
fn calls(direct: &mut Conn, cmd: &str) -> u64 {
    let stats = direct.info(Some("commandstats"));
    let line = format!("cmdstat_{cmd}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Redis ran the read and the connection was lost before its reply: the retry reads the
/// value written meanwhile, and L1 is not left with the old one.
fn retried_read_is_current(read: &[&str], written: &str, old: &[u8], new: &[u8]) {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port());
    // A timeout no loaded machine reaches: the connection is lost by the cut alone, never
    // given up by the sidecar (and the read retried) before the write below.
    let flags = ["--upstream-connections", "1", "--upstream-timeout", "60s"];
    let sidecar = Sidecar::start(proxy.port, &flags);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET old");
    assert_reply(&direct.cmd_str(read), old, "the read, directly");
    let mut c = sidecar.conn();
    // The pooled connection is open (and warm) before it is held.
    assert_reply(&c.cmd_str(&["GET", "other"]), b"$-1\r\n", "GET other");
    let name = read[0].to_ascii_lowercase();
    let before = calls(&mut direct, &name);
    proxy.hold();
    c.send(&encode_command_str(read));
    poll_until(Duration::from_secs(5), "Redis to run the read", || {
        calls(&mut direct, &name) > before
    });
    assert_reply(
        &direct.cmd_str(&["SET", "k", written]),
        b"+OK\r\n",
        "SET new",
    );
    proxy.cut();
    assert_reply(&c.read_reply(), new, "the retried read");
    assert_reply(&c.cmd_str(read), new, "read again");
    let info = sidecar.conn().info(Some("nearcache"));
    assert!(info_u64(&info, "upstream_retries") >= 1, "{info}");
}

#[test]
fn a_retried_get_returns_the_current_value() {
    retried_read_is_current(&["GET", "k"], "new", &bulk(b"old"), &bulk(b"new"));
}

#[test]
fn a_retried_forwarded_read_returns_the_current_value() {
    // A forwarded read-only command: never cached, always upstream.
    retried_read_is_current(&["STRLEN", "k"], "newer", b":3\r\n", b":5\r\n");
}

/// A write in flight when its connection is lost gets the error (it may have run): only
/// reads are sent again.
#[test]
fn a_write_in_flight_on_a_lost_connection_gets_the_error() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port());
    let sidecar = Sidecar::start(proxy.port, &["--upstream-connections", "1"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "other"]), b"$-1\r\n", "GET other");
    let before = calls(&mut direct, "incr");
    proxy.hold();
    c.send(&encode_command_str(&["INCR", "n"]));
    poll_until(Duration::from_secs(5), "Redis to run the INCR", || {
        calls(&mut direct, "incr") > before
    });
    proxy.cut();
    let got = c.read_reply();
    assert!(
        got.starts_with(b"-ERR nearcache: upstream unavailable"),
        "INCR: {}",
        show(&got)
    );
    // Run once, not twice.
    assert_reply(&direct.cmd_str(&["GET", "n"]), &bulk(b"1"), "n");
}

/// A client's write sent after its read's connection was lost reaches Redis after the
/// retried read: the read does not see it, and the replies come in the order sent.
#[test]
fn a_retried_read_does_not_see_its_clients_later_write() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port());
    // A timeout no loaded machine reaches: the connection is lost by the cut alone, never
    // given up by the sidecar (and the read retried) before the write below.
    let flags = ["--upstream-connections", "1", "--upstream-timeout", "60s"];
    let sidecar = Sidecar::start(proxy.port, &flags);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET old");
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["GET", "other"]), b"$-1\r\n", "GET other");
    let before = calls(&mut direct, "get");
    proxy.hold();
    c.send(&encode_command_str(&["GET", "k"]));
    poll_until(Duration::from_secs(5), "Redis to run the read", || {
        calls(&mut direct, "get") > before
    });
    proxy.cut();
    c.send(&encode_command_str(&["SET", "k", "new"]));
    assert_reply(&c.read_reply(), &bulk(b"old"), "the retried GET");
    let set = c.read_reply();
    assert!(
        set == b"+OK\r\n" || set.starts_with(b"-ERR nearcache: upstream unavailable"),
        "SET: {}",
        show(&set)
    );
}
