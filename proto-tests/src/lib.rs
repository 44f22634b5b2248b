//! Black-box test harness for nearcache.
//!
//! Every test starts its own `redis-server` ([`Redis`]) and its own nearcache binary
//! ([`Sidecar`]) on free ports, talks to both with raw RESP bytes ([`Conn`]) and checks
//! what the upstream executed through its `INFO commandstats` ([`commandstat_calls`]) or
//! `MONITOR` ([`Monitor`]).
//!
//! ```text
//!   test ──Conn──► Sidecar (target/debug/nearcache, --listen 127.0.0.1:0) ──► Redis (free port)
//!   test ──Conn──────────────────────────────────────────────────────────────► Redis (direct)
//! ```
//!
//! - `client`: `Conn`, a raw RESP2/RESP3 client with 10 s I/O bounds.
//! - `redis`: `Redis`, a redis-server child process.
//! - `sidecar`: `Sidecar`, a nearcache child process, and `run_nearcache` for runs that exit.
//! - `monitor`: `Monitor`, the commands the upstream executed.
//! - `cluster`: `ClusterGroup`, three primaries and three replicas in a Redis Cluster.
//! - `freeze`: `Frozen`, a process stopped with SIGSTOP until dropped.
//! - `sentinel`: `SentinelGroup`, a primary, a replica and three sentinels.
//! - `tempdir`: scratch directories for logs.

#![forbid(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod freeze;
pub mod http;
pub mod monitor;
pub mod redis;
pub mod sentinel;
pub mod sidecar;
pub mod tempdir;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use client::{
    bulk, bulk_reply, encode_command, encode_command_str, int_reply, Conn, Protocol, IO_TIMEOUT,
};
pub use freeze::Frozen;
pub use http::{http_get, metric};
pub use monitor::{Executed, Monitor};
pub use redis::{Redis, TlsFiles};
pub use sidecar::{nearcache_bin, run_nearcache, Exited, Sidecar};

/// A fresh redis-server and a sidecar in front of it started with `extra` flags.
///
/// Bind as `let (redis, sidecar) = ...` so the sidecar is dropped (killed) first.
pub fn start_pair(extra: &[&str]) -> (Redis, Sidecar) {
    let redis = Redis::start();
    let sidecar = Sidecar::start(redis.port(), extra);
    (redis, sidecar)
}

/// A bus key file (`--bus-key-file`) in a fresh scratch directory holding `lines`: keep
/// the directory alive as long as the sidecars that read it.
pub fn bus_key_file(lines: &[&str]) -> (tempdir::TempDir, String) {
    let dir = tempdir::TempDir::new("bus-key");
    let path = dir.path().join("bus.key");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the key file");
    let path = path.display().to_string();
    (dir, path)
}

/// The test fleet's bus key (any 16 bytes or more).
pub const BUS_KEY: &str = "test-fleet-bus-key-0123456789abcdef";

/// `GET key` in database `db` on `conn` (SELECT there and back to 0 when `db` is not 0).
pub fn get_in_db(conn: &mut Conn, db: u32, key: &str) -> Vec<u8> {
    if db != 0 {
        let r = conn.cmd_str(&["SELECT", &db.to_string()]);
        assert_eq!(r, b"+OK\r\n", "SELECT {db}: {}", show(&r));
    }
    let reply = conn.cmd_str(&["GET", key]);
    if db != 0 {
        let r = conn.cmd_str(&["SELECT", "0"]);
        assert_eq!(r, b"+OK\r\n", "SELECT 0: {}", show(&r));
    }
    reply
}

/// A port that was free a moment ago (bind `127.0.0.1:0`, read the port, drop).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Bytes shown readably in a failure message (escaped, long ones cut).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 600;
    let text = bytes[..bytes.len().min(MAX)].escape_ascii().to_string();
    if bytes.len() > MAX {
        format!("\"{text}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{text}\"")
    }
}

/// Asserts `got == want` byte for byte, showing both escaped and naming `what` on failure.
#[track_caller]
pub fn assert_reply(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}:\n   got: {}\n  want: {}",
        show(got),
        show(want)
    );
}

/// The value of a `name:value` line in INFO text.
pub fn info_field(section_text: &str, name: &str) -> Option<String> {
    section_text.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// An INFO field parsed as an integer; panics with the text if absent or not a number.
pub fn info_u64(section_text: &str, name: &str) -> u64 {
    let value = info_field(section_text, name)
        .unwrap_or_else(|| panic!("INFO has no `{name}:` line:\n{section_text}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("INFO `{name}:{value}` is not an integer"))
}

/// Sends `commands` in one write and reads their replies, in order.
pub fn send_pipeline(c: &mut Conn, commands: &[&[&str]]) -> Vec<Vec<u8>> {
    let bytes: Vec<u8> = commands
        .iter()
        .flat_map(|a| encode_command_str(a))
        .collect();
    c.send(&bytes);
    c.read_replies(commands.len())
}

/// Redis's count of keys it tracks for some client (`tracking_total_keys`).
pub fn tracked_keys(redis: &Redis) -> u64 {
    info_u64(&redis.conn().info(Some("stats")), "tracking_total_keys")
}

/// How many times the upstream executed `cmd` since start or the last `CONFIG RESETSTAT`
/// (`cmdstat_<cmd>:calls=N,...` in its `INFO commandstats`); 0 if never.
pub fn commandstat_calls(redis: &Redis, cmd: &str) -> u64 {
    let text = match redis.is_tls() {
        true => redis.cli(&["INFO", "commandstats"]),
        false => redis.conn().info(Some("commandstats")),
    };
    let name = format!("cmdstat_{}", cmd.to_ascii_lowercase());
    let Some(value) = info_field(&text, &name) else {
        return 0;
    };
    value
        .split(',')
        .find_map(|kv| kv.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read calls from `{name}:{value}`"))
}

/// `CONFIG RESETSTAT` on the upstream, over a direct connection.
pub fn reset_stats(redis: &Redis) {
    let reply = redis.conn().cmd_str(&["CONFIG", "RESETSTAT"]);
    assert_eq!(reply, b"+OK\r\n", "CONFIG RESETSTAT: {}", show(&reply));
}

/// Sends the same raw request bytes to a direct and a proxied connection and asserts the
/// replies are byte-identical; returns the reply.
pub fn assert_same_reply(direct: &mut Conn, proxied: &mut Conn, request: &[u8]) -> Vec<u8> {
    assert_same_replies(direct, proxied, request, 1)
        .pop()
        .expect("one reply")
}

/// Like [`assert_same_reply`] for `n` pipelined requests in `request`: every reply, in
/// order, must be identical.
pub fn assert_same_replies(
    direct: &mut Conn,
    proxied: &mut Conn,
    request: &[u8],
    n: usize,
) -> Vec<Vec<u8>> {
    direct.send(request);
    let expected = direct.read_replies(n);
    proxied.send(request);
    let got = proxied.read_replies(n);
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(
            show(g),
            show(e),
            "reply {i} of {n} differs from direct Redis for request {}",
            show(request)
        );
    }
    got
}

/// Polls `check` every 10 ms until it returns true; panics naming `what` after `timeout`.
pub fn poll_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` pseudo-random (xorshift64) bytes: incompressible and reproducible.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let text = "# Nearcache\r\nl1_hits:3\r\nl1_hit_rate:0.5000\r\nl1_hits_x:9\r\n";
        assert_eq!(info_field(text, "l1_hits").as_deref(), Some("3"));
        assert_eq!(info_field(text, "l1_hit_rate").as_deref(), Some("0.5000"));
        assert_eq!(info_field(text, "l1"), None);
        assert_eq!(info_u64(text, "l1_hits"), 3);
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show(b"+OK\r\n"), "\"+OK\\r\\n\"");
        assert!(show(&[b'a'; 1000]).ends_with("(1000 bytes)"));
        assert_ne!(random_bytes(16, 1), random_bytes(16, 2));
    }
}

/// A deterministic xorshift64 generator for randomized tests: a fixed seed makes every
/// failure reproducible, and no dependency is needed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Polls `GET key` through `c` until it returns `want` and returns how long that took;
/// panics, naming `what`, after `bound`.
pub fn expect_within(
    c: &mut Conn,
    key: &str,
    want: &[u8],
    bound: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < bound {
        last = c.cmd_str(&["GET", key]);
        if last == want {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "{what}: GET {key} still {} after {bound:?}, want {}",
        show(&last),
        show(want)
    );
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = info_field(&text, field)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB figure");
    kb << 10
}
