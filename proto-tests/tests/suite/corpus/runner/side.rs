//! Both sides of a run: the reference redis-server (A) and the tested side (B behind the
//! sidecar, B itself in the self-check, or a Redis Cluster behind the sidecar), and the
//! connection pairs each case opens on them after emptying them.

use std::net::SocketAddr;
use std::time::Duration;

use proto_tests::{encode_command, show, Conn, Redis, Sidecar};

use super::cluster;

/// The servers of one test: A (reference, direct) and the tested side.
pub struct Env {
    pub a: Redis,
    tested: Tested,
    /// `CORPUS_TRACE=1`: print every command with its (reference) reply.
    pub trace: bool,
}

/// What the cases are compared against A on.
enum Tested {
    /// B behind the sidecar (the sidecar is dropped before B: fields drop in order).
    Sidecar { sidecar: Sidecar, _b: Redis },
    /// `CORPUS_SELF_CHECK=1`: B itself.
    Direct(Redis),
    /// A Redis Cluster behind the sidecar.
    Cluster(cluster::ClusterSide),
}

impl Env {
    pub fn start() -> Env {
        let self_check = std::env::var("CORPUS_SELF_CHECK").is_ok_and(|v| v == "1");
        let perturb = std::env::var("CORPUS_PERTURB").is_ok_and(|v| v == "1");
        let a = Redis::start();
        let b = if perturb {
            Redis::start_with(&[
                "--hash-max-listpack-entries",
                "1",
                "--zset-max-listpack-entries",
                "1",
                "--set-max-intset-entries",
                "1",
            ])
        } else {
            Redis::start()
        };
        let tested = if self_check {
            Tested::Direct(b)
        } else {
            Tested::Sidecar {
                sidecar: Sidecar::start(b.port(), &[]),
                _b: b,
            }
        };
        Env {
            a,
            tested,
            trace: trace(),
        }
    }

    /// A reference redis-server and a Redis Cluster behind the sidecar.
    pub fn start_cluster() -> Env {
        Env {
            a: Redis::start(),
            tested: Tested::Cluster(cluster::ClusterSide::start()),
            trace: trace(),
        }
    }

    pub fn tested_addr(&self) -> SocketAddr {
        match &self.tested {
            Tested::Sidecar { sidecar, .. } => sidecar.addr(),
            Tested::Direct(b) => b.addr(),
            Tested::Cluster(c) => c.sidecar.addr(),
        }
    }

    pub fn what(&self) -> &'static str {
        match self.tested {
            Tested::Sidecar { .. } => "sidecar",
            Tested::Direct(_) => "redis B (self-check)",
            Tested::Cluster(_) => "sidecar (cluster)",
        }
    }

    pub fn cluster(&self) -> Option<&cluster::ClusterSide> {
        match &self.tested {
            Tested::Cluster(c) => Some(c),
            _ => None,
        }
    }
}

fn trace() -> bool {
    std::env::var("CORPUS_TRACE").is_ok_and(|v| v == "1")
}

/// One connection pair (main, other) on one side.
pub struct Side {
    main: Conn,
    other: Conn,
}

impl Side {
    /// Two fresh connections (after `HELLO 3` in RESP3); the main one then sends
    /// `resets` (each answered `+OK`): emptying the server with `FLUSHALL`, `SCRIPT FLUSH`,
    /// `FUNCTION FLUSH`, or, in front of a cluster whose nodes were emptied directly,
    /// `NEARCACHE FLUSH`.
    pub fn open(
        addr: SocketAddr,
        proto: u8,
        timeout: Duration,
        resets: &[&[&[u8]]],
    ) -> Result<Side, String> {
        let mut main = connect(addr, proto, timeout)?;
        let other = connect(addr, proto, timeout)?;
        for reset in resets {
            reset_with(&mut main, reset)?;
        }
        Ok(Side { main, other })
    }

    pub fn conn(&mut self, other: bool) -> &mut Conn {
        if other {
            &mut self.other
        } else {
            &mut self.main
        }
    }
}

/// What empties a server before each case.
pub const RESETS: [&[&[u8]]; 3] = [
    &[b"FLUSHALL"],
    &[b"SCRIPT", b"FLUSH"],
    &[b"FUNCTION", b"FLUSH"],
];

/// Sends `reset` on `conn`, which must answer `+OK`.
pub fn reset_with(conn: &mut Conn, reset: &[&[u8]]) -> Result<(), String> {
    conn.try_send(&encode_command(reset))
        .map_err(|e| format!("write: {e}"))?;
    let r = conn.try_read_reply().map_err(|e| format!("reset: {e}"))?;
    if r != b"+OK\r\n" {
        return Err(format!("reset {}: {}", show(&reset.concat()), show(&r)));
    }
    Ok(())
}

/// A connection with `timeout` on reads, switched to RESP3 with `HELLO 3` if `proto` is 3
/// (the reply, which carries a connection id, is only checked to be a map).
fn connect(addr: SocketAddr, proto: u8, timeout: Duration) -> Result<Conn, String> {
    let mut c = Conn::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(timeout);
    if proto == 3 {
        c.try_send(&encode_command(&[b"HELLO", b"3"]))
            .map_err(|e| format!("write: {e}"))?;
        c.set_protocol(proto_tests::Protocol::Resp3);
        let hello = c.try_read_reply().map_err(|e| format!("HELLO 3: {e}"))?;
        if hello.first() != Some(&b'%') {
            return Err(format!("HELLO 3 is not a map: {}", show(&hello)));
        }
    }
    Ok(c)
}
