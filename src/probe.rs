//! `nearcache probe`: is a sidecar answering on its listen address? One PING, a bounded
//! wait, an exit code. Kubernetes runs it as an exec probe inside the sidecar's container
//! (its TCP and HTTP probes go to the pod IP, while the sidecar listens on 127.0.0.1).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends `PING` to `addr` and waits at most `timeout` in all: `Ok` when the sidecar answers
/// `+PONG`, or `-NOAUTH` (it answers; its clients authenticate themselves), else why not.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_write_timeout(Some(left()))
        .and_then(|_| stream.write_all(b"*1\r\n$4\r\nPING\r\n"))
        .map_err(|e| format!("send PING to {addr}: {e}"))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\r\n") {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("{addr} closed the connection")),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no reply from {addr}: {e}")),
        }
        if reply.len() > 4096 {
            break;
        }
    }
    if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&reply);
        Err(format!("{addr} answered {}", text.trim_end()))
    }
}
