//! The fetch/invalidate race, forced rather than hoped for: a sidecar's fetch has executed
//! in Redis (it read the old value), then a write replaces the value and its tracking
//! invalidation reaches the sidecar, and only then does the fetch's reply arrive. The fetched
//! value must never enter L1.
//!
//! The order cannot be forced with one Redis alone: once a slow script or `DEBUG SLEEP` ends,
//! Redis serves the waiting connections in no guaranteed order, and a fetch that runs after
//! the write reads the new value (no race at all). So the sidecar reaches Redis through
//! [`HoldingProxy`], which can hold back every reply on the data connections while letting the
//! control connection (`nearcache-control`) through. The steps wait on observable facts
//! (Redis counted the GET, the sidecar counted the invalidation), never on sleeps.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use proto_tests::*;

const WAIT: Duration = Duration::from_secs(5);

/// A TCP proxy in front of Redis that forwards bytes both ways, except that while `hold` is
/// set, replies to connections other than the sidecar's control connection wait.
struct HoldingProxy {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
}

impl HoldingProxy {
    fn start(upstream: SocketAddr) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let hold = Arc::new(AtomicBool::new(false));
        let hold_for_accept = hold.clone();
        // The threads end when the sidecar closes its connections (the test's end).
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let is_control = Arc::new(AtomicBool::new(false));
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    None,
                    is_control.clone(),
                );
                pipe(server, client, Some(hold_for_accept.clone()), is_control);
            }
        });
        HoldingProxy { addr, hold }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// Copies `from` to `to` on a thread. Client-to-server copies (`hold` None) mark the
/// connection as the control connection when it names itself `nearcache-control`;
/// server-to-client copies wait while `hold` is set, unless the connection is the control one.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    hold: Option<Arc<AtomicBool>>,
    is_control: Arc<AtomicBool>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match &hold {
                None => {
                    if buf[..n].windows(17).any(|w| w == b"nearcache-control") {
                        is_control.store(true, Ordering::SeqCst);
                    }
                }
                Some(hold) => {
                    while hold.load(Ordering::SeqCst) && !is_control.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn invalidations(sidecar: &Sidecar) -> u64 {
    info_u64(
        &sidecar.conn().info(Some("nearcache")),
        "invalidation_messages",
    )
}

/// Through the proxy: `k` holds "old" in Redis and is not in A's L1; A's fetch of `k` is
/// executed by Redis and its reply held. Returns the client connection awaiting that reply.
fn fetch_held(redis: &Redis, proxy: &HoldingProxy, a: &Sidecar) -> Conn {
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET old");
    // Upstream connections are opened (and their handshake answered) on first use: open
    // them before holding replies.
    let mut reader = a.conn();
    assert_reply(&reader.cmd_str(&["GET", "other"]), b"$-1\r\n", "GET other");
    let gets = commandstat_calls(redis, "get");
    proxy.hold.store(true, Ordering::SeqCst);
    reader.send(&encode_command_str(&["GET", "k"]));
    poll_until(WAIT, "Redis executes the sidecar's fetch of k", || {
        commandstat_calls(redis, "get") > gets
    });
    reader
}

#[test]
fn a_fetch_overtaken_by_a_tracking_invalidation_never_lands_in_l1() {
    let redis = Redis::start();
    let proxy = HoldingProxy::start(redis.addr());
    let a = Sidecar::start_url(&proxy.url(), &["--audit-rate", "0"]);
    let mut direct = redis.conn();
    assert_eq!(
        info_field(&a.conn().info(Some("nearcache")), "invalidation_link").as_deref(),
        Some("up")
    );

    let mut reader = fetch_held(&redis, &proxy, &a);
    // The fetch read "old" and tracked k; now the write replaces it and Redis sends the
    // invalidation on the control connection, which the proxy lets through.
    let before = invalidations(&a);
    assert_reply(&direct.cmd_str(&["SET", "k", "new"]), b"+OK\r\n", "SET new");
    poll_until(WAIT, "the sidecar receives the invalidation of k", || {
        invalidations(&a) > before
    });

    // Only now does the fetch's reply arrive. The read began before the write: "old" is a
    // correct answer for it, but must not be kept.
    proxy.hold.store(false, Ordering::SeqCst);
    assert_reply(&reader.read_reply(), &bulk(b"old"), "the held fetch");

    let gets = commandstat_calls(&redis, "get");
    let mut c = a.conn();
    assert_reply(
        &c.cmd_str(&["GET", "k"]),
        &bulk(b"new"),
        "GET after the write",
    );
    assert!(
        commandstat_calls(&redis, "get") > gets,
        "the GET after the write was served from L1, which the overtaken fetch filled"
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"new"), "GET again (hit)");
}

#[test]
fn a_fetch_in_flight_during_nearcache_invalidate_never_lands_in_l1() {
    let redis = Redis::start();
    let proxy = HoldingProxy::start(redis.addr());
    let a = Sidecar::start_url(&proxy.url(), &["--audit-rate", "0"]);
    // The client's rights for INVALIDATE (SCAN, PUBLISH on the bus) are learned once.
    assert_eq!(
        a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "nothing"]),
        b":0\r\n"
    );

    let mut reader = fetch_held(&redis, &proxy, &a);
    // NEARCACHE INVALIDATE is answered by the sidecar itself (its rights known), so it
    // passes the held proxy.
    assert_eq!(
        a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "k"]),
        b":0\r\n"
    );
    proxy.hold.store(false, Ordering::SeqCst);
    assert_reply(&reader.read_reply(), &bulk(b"old"), "the held fetch");

    let gets = commandstat_calls(&redis, "get");
    assert_reply(&a.conn().cmd_str(&["GET", "k"]), &bulk(b"old"), "GET");
    assert!(
        commandstat_calls(&redis, "get") > gets,
        "a fill in flight when its key was invalidated landed in L1"
    );
}
