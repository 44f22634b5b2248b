//! `SentinelGroup`: a primary, a replica and three sentinels (`redis-server --sentinel`) on
//! free ports, monitoring the primary as `mymaster` with short down and failover timeouts;
//! started and waited for until the sentinels see each other and the replica, for the
//! Sentinel suites (discovery, failover, faults). [`SentinelGroup::start_tls`] runs the
//! same group over TLS only (nodes, replication and sentinels).

mod fake;
mod node;

use std::time::{Duration, Instant};

use crate::client::{bulk_reply, Conn};
use crate::info_field;
use crate::redis::{Redis, TlsFiles};

pub use fake::FakeSentinel;
pub use node::SentinelNode;

/// The master name the sentinels monitor.
pub const MASTER: &str = "mymaster";
/// A sentinel's `down-after-milliseconds`: a primary silent this long is subjectively down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// A sentinel's `failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Bound on the sentinels finding each other and the replica (hello messages every 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A primary, its replica and three sentinels that agree on both.
pub struct SentinelGroup {
    /// The primary at start.
    pub primary: Redis,
    /// Its replica at start.
    pub replica: Redis,
    /// Three sentinels monitoring the primary as [`MASTER`].
    pub sentinels: Vec<SentinelNode>,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel knows the other two and the
    /// replica; `sentinel_password` makes the sentinels require it.
    pub fn start(sentinel_password: Option<&str>) -> SentinelGroup {
        let primary = Redis::start();
        let port = primary.port().to_string();
        let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinels = |primary: u16| {
            (0..3)
                .map(|_| SentinelNode::start(primary, sentinel_password))
                .collect()
        };
        SentinelGroup::settle(primary, replica, sentinels)
    }

    /// The same group over TLS only: primary and replica listen for TLS alone
    /// ([`Redis::start_tls`], client certificates required) and replicate over TLS, the
    /// sentinels listen for TLS alone and talk TLS to the nodes and to each other
    /// ([`SentinelNode::start_tls`]). The server certificate of `files` must name 127.0.0.1
    /// and serve as a client certificate too (replication and sentinels present it).
    pub fn start_tls(files: &TlsFiles) -> SentinelGroup {
        let primary = Redis::start_tls(files, &["--tls-replication", "yes"]);
        let port = primary.port().to_string();
        let replica = Redis::start_tls(
            files,
            &[
                "--tls-replication",
                "yes",
                "--replicaof",
                "127.0.0.1",
                &port,
            ],
        );
        let sentinels = |primary: u16| {
            (0..3)
                .map(|_| SentinelNode::start_tls(primary, files))
                .collect()
        };
        SentinelGroup::settle(primary, replica, sentinels)
    }

    /// Waits for the replica to sync, starts the sentinels and waits until each knows the
    /// other two and the replica.
    fn settle(
        primary: Redis,
        replica: Redis,
        sentinels: impl FnOnce(u16) -> Vec<SentinelNode>,
    ) -> SentinelGroup {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !info_text(&replica, "replication").contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sentinels = sentinels(primary.port());
        let group = SentinelGroup {
            primary,
            replica,
            sentinels,
        };
        for s in &group.sentinels {
            loop {
                let (peers, _) = entries(s, "sentinels");
                let (replicas, text) = entries(s, "replicas");
                if peers == 2 && replicas == 1 && !text.contains("disconnected") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel {} sees {peers} peers, replicas {text}:\n{}",
                    s.port(),
                    s.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        group
    }

    /// `redis+sentinel://` URL of the sentinels (in order), naming [`MASTER`]
    /// (`rediss+sentinel://` for a TLS group).
    pub fn url(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let scheme = match self.sentinels.iter().any(SentinelNode::is_tls) {
            true => "rediss+sentinel",
            false => "redis+sentinel",
        };
        format!("{scheme}://{}/{MASTER}", list.join(","))
    }

    /// The primary's address as the first live sentinel names it now.
    pub fn named_primary(&self) -> Option<String> {
        self.sentinels
            .iter()
            .filter(|s| s.pid() != 0)
            .find_map(|s| {
                let args = ["SENTINEL", "get-master-addr-by-name", MASTER];
                if s.is_tls() {
                    let text = s.cli(&args);
                    let parts: Vec<&str> = text.lines().collect();
                    return (parts.len() == 2).then(|| format!("{}:{}", parts[0], parts[1]));
                }
                let reply = s.conn().cmd_str(&args);
                let text = String::from_utf8_lossy(&reply).into_owned();
                let parts: Vec<&str> = text.split("\r\n").collect();
                // *2 $len ip $len port
                (parts.len() >= 5).then(|| format!("{}:{}", parts[2], parts[4]))
            })
    }

    /// Asks the first sentinel for a failover, retrying while it has no good replica yet
    /// (`-NOGOODSLAVE` right after start or a previous failover).
    pub fn failover(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let first = &self.sentinels[0];
        let args = ["SENTINEL", "FAILOVER", MASTER];
        loop {
            let reply = match first.is_tls() {
                true => first.cli(&args),
                false => String::from_utf8_lossy(&first.conn().cmd_str(&args)).into_owned(),
            };
            if reply.trim_start_matches('+').trim_end() == "OK" {
                return;
            }
            assert!(Instant::now() < deadline, "SENTINEL FAILOVER: {reply:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `INFO <section>` of a node as text (through redis-cli for a TLS one).
fn info_text(node: &Redis, section: &str) -> String {
    match node.is_tls() {
        true => node.cli(&["INFO", section]),
        false => String::from_utf8_lossy(&node.conn().cmd_str(&["INFO", section])).into_owned(),
    }
}

/// How many entries `SENTINEL <what> mymaster` lists on `s`, and the reply as text.
fn entries(s: &SentinelNode, what: &str) -> (usize, String) {
    let args = ["SENTINEL", what, MASTER];
    if s.is_tls() {
        // redis-cli prints every field and value of every entry on a line of its own.
        let text = s.cli(&args);
        return (text.lines().filter(|l| *l == "name").count(), text);
    }
    let reply = s.conn().cmd_str(&args);
    (count(&reply), crate::show(&reply))
}

/// The element count of an array reply (0 for anything else).
fn count(reply: &[u8]) -> usize {
    let text = String::from_utf8_lossy(reply);
    text.strip_prefix('*')
        .and_then(|r| r.split("\r\n").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The `sentinel_primary` a sidecar's `INFO nearcache` shows.
pub fn sidecar_primary(conn: &mut Conn) -> String {
    let info = bulk_reply(&conn.cmd_str(&["INFO", "nearcache"])).unwrap_or_default();
    info_field(&String::from_utf8_lossy(&info), "sentinel_primary").unwrap_or_default()
}
