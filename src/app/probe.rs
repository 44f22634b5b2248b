//! `nearcache probe`: is a sidecar answering on its listen address? One request, a bounded
//! wait, an exit code. Kubernetes runs it as an exec probe inside the sidecar's container
//! (its TCP and HTTP probes go to the pod IP, while the sidecar listens on 127.0.0.1).
//!
//! Two questions: does it serve (`PING`, which needs the upstream: the readiness probe),
//! and does it listen (`--listening`: `QUIT`, answered by the sidecar itself whatever the
//! upstream does: the startup probe, so that the application starts while Redis is down).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What the probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Does the sidecar serve: `PING` answered `+PONG`, or `-NOAUTH` (it answers; its
    /// clients authenticate themselves). Fails while the upstream is unreachable.
    Serving,
    /// Does the sidecar listen: `QUIT` answered at all (the sidecar answers it itself,
    /// without the upstream).
    Listening,
}

/// Sends the request `check` names to `addr` and waits at most `timeout` in all: `Ok` when
/// the reply is the one `check` wants, else why not.
pub fn probe(addr: SocketAddr, timeout: Duration, check: Check) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("connect {addr}: {e}"))?;
    let (name, request): (&str, &[u8]) = match check {
        Check::Serving => ("PING", b"*1\r\n$4\r\nPING\r\n"),
        Check::Listening => ("QUIT", b"*1\r\n$4\r\nQUIT\r\n"),
    };
    stream
        .set_write_timeout(Some(left()))
        .and_then(|_| stream.write_all(request))
        .map_err(|e| format!("send {name} to {addr}: {e}"))?;
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
    let wanted = match check {
        Check::Serving => reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"),
        Check::Listening => reply.ends_with(b"\r\n"),
    };
    if wanted {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&reply);
        Err(format!("{addr} answered {}", text.trim_end()))
    }
}
