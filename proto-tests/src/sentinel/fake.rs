//! `FakeSentinel`: a sentinel that names whatever primary the test sets.

use std::net::SocketAddr;

use super::MASTER;

/// A fake sentinel for what real ones do not do on demand: it names whatever address the
/// test sets (a replica, a node that is no primary, a change without `+switch-master`),
/// knows no other sentinel and never publishes.
pub struct FakeSentinel {
    addr: SocketAddr,
    /// The port the fake names, 0 for none.
    names: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl FakeSentinel {
    /// Starts the fake on a free port, naming no primary.
    pub fn start() -> FakeSentinel {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let names = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
        let shared = names.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let names = shared.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some(len)) =
                            crate::client::frame_len(&buf, crate::client::Protocol::Resp2)
                        {
                            let request = String::from_utf8_lossy(&buf[..len]).to_lowercase();
                            buf.drain(..len);
                            let port = names.load(SeqCst);
                            let reply = if request.contains("get-master-addr-by-name") {
                                match port {
                                    0 => "*-1\r\n".to_owned(),
                                    p => format!(
                                        "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{p}\r\n",
                                        p.to_string().len()
                                    ),
                                }
                            } else if request.contains("sentinels") {
                                "*0\r\n".to_owned()
                            } else if request.contains("subscribe") {
                                "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
                                    .to_owned()
                            } else if request.contains("ping") {
                                "*2\r\n$4\r\npong\r\n$0\r\n\r\n".to_owned()
                            } else {
                                "-ERR unknown command\r\n".to_owned()
                            };
                            if stream.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeSentinel { addr, names }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on names `127.0.0.1:<port>` (0: no primary).
    pub fn name(&self, port: u16) {
        self.names.store(port, std::sync::atomic::Ordering::SeqCst);
    }

    /// `redis+sentinel://` URL of this fake alone, naming [`MASTER`].
    pub fn url(&self) -> String {
        format!("redis+sentinel://{}/{MASTER}", self.addr)
    }
}
