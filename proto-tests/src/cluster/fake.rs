//! `FakeClusterNode`: a node that answers `CLUSTER SHARDS` with whatever view the test sets,
//! for views a real node gives only when partitioned or misconfigured (one that drops
//! slots), and counts the views it was asked for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::client::{frame_len, Protocol};

/// A fake cluster node: `CLUSTER SHARDS` gets the reply the test set (an error while none
/// is set, and `CLUSTER SLOTS` always does), anything else `-ERR`.
pub struct FakeClusterNode {
    addr: SocketAddr,
    reply: Arc<Mutex<Option<String>>>,
    asked: Arc<AtomicU64>,
}

impl FakeClusterNode {
    /// Starts the fake on a free port, answering no view.
    pub fn start() -> FakeClusterNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let reply: Arc<Mutex<Option<String>>> = Arc::default();
        let asked = Arc::new(AtomicU64::new(0));
        let (shared, count) = (reply.clone(), asked.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (reply, asked) = (shared.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some(len)) = frame_len(&buf, Protocol::Resp2) {
                            let request = String::from_utf8_lossy(&buf[..len]).to_lowercase();
                            buf.drain(..len);
                            let answer = if request.contains("shards") {
                                asked.fetch_add(1, SeqCst);
                                reply.lock().clone()
                            } else {
                                None
                            };
                            let answer = answer.unwrap_or_else(|| "-ERR fake node\r\n".to_owned());
                            if stream.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeClusterNode { addr, reply, asked }
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The fake's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// From now on answers `CLUSTER SHARDS` with `reply` (raw RESP2; `None`: an error).
    pub fn answer(&self, reply: Option<String>) {
        *self.reply.lock() = reply;
    }

    /// How many times `CLUSTER SHARDS` was asked.
    pub fn asked(&self) -> u64 {
        self.asked.load(SeqCst)
    }
}

/// A `CLUSTER SHARDS` reply (RESP2) of shards with one primary each at `127.0.0.1:<port>`
/// owning the given slot ranges.
pub fn shards_reply(shards: &[(&[(u16, u16)], u16)]) -> String {
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let mut out = format!("*{}\r\n", shards.len());
    for (ranges, port) in shards {
        out.push_str("*4\r\n");
        out.push_str(&bulk("slots"));
        out.push_str(&format!("*{}\r\n", ranges.len() * 2));
        for (first, last) in *ranges {
            out.push_str(&format!(":{first}\r\n:{last}\r\n"));
        }
        out.push_str(&bulk("nodes"));
        out.push_str("*1\r\n*12\r\n");
        let id = format!("{port:0>40}");
        for (k, v) in [
            ("id", bulk(&id)),
            ("port", format!(":{port}\r\n")),
            ("ip", bulk("127.0.0.1")),
            ("endpoint", bulk("127.0.0.1")),
            ("role", bulk("master")),
            ("health", bulk("online")),
        ] {
            out.push_str(&bulk(k));
            out.push_str(&v);
        }
    }
    out
}
