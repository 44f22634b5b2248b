//! `SentinelGroup`: a primary, a replica and three sentinels (`redis-server --sentinel`) on
//! free ports, monitoring the primary as `mymaster` with short down and failover timeouts;
//! started and waited for until the sentinels see each other and the replica, for the
//! Sentinel suites (discovery, failover, faults).

use std::fs::{self, File};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{bulk_reply, Conn};
use crate::redis::Redis;
use crate::tempdir::TempDir;
use crate::{free_port, info_field, show};

/// The master name the sentinels monitor.
pub const MASTER: &str = "mymaster";
/// A sentinel's `down-after-milliseconds`: a primary silent this long is subjectively down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// A sentinel's `failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Bound on the sentinels finding each other and the replica (hello messages every 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a sentinel answering after its start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// One `redis-server --sentinel` child process, killed on drop.
pub struct SentinelNode {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    password: Option<String>,
}

impl SentinelNode {
    /// Starts a sentinel monitoring `127.0.0.1:<primary>` as [`MASTER`] with quorum 2; with
    /// `password`, the sentinel requires it (`requirepass`) and gives it to its peers.
    pub fn start(primary: u16, password: Option<&str>) -> SentinelNode {
        let mut last = String::new();
        for _ in 0..3 {
            let mut node = SentinelNode {
                port: free_port(),
                child: None,
                dir: TempDir::new("sentinel"),
                password: password.map(str::to_owned),
            };
            match node.spawn(primary) {
                Ok(()) => return node,
                Err(e) => last = e,
            }
        }
        panic!("redis-server --sentinel did not start: {last}");
    }

    fn spawn(&mut self, primary: u16) -> Result<(), String> {
        let mut config = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER} 1\n",
            port = self.port,
            dir = self.dir.path().display(),
        );
        if let Some(p) = &self.password {
            config.push_str(&format!("requirepass {p}\nsentinel sentinel-pass {p}\n"));
        }
        let path = self.dir.path().join("sentinel.conf");
        fs::write(&path, config).expect("write sentinel.conf");
        let log = File::create(self.dir.path().join("sentinel.log")).expect("sentinel.log");
        let child = Command::new("redis-server")
            .arg(&path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning redis-server --sentinel: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("sentinel exited with {status}:\n{}", self.log()));
            }
            if let Ok(mut c) = Conn::try_connect(self.addr()) {
                if let Some(p) = self.password.clone() {
                    c.cmd_str(&["AUTH", &p]);
                }
                if c.cmd_str(&["PING"]) == b"+PONG\r\n" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no answer on {}:\n{}", self.port, self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id (for SIGSTOP / SIGCONT), 0 once killed.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A connection, authenticated when the sentinel requires a password.
    pub fn conn(&self) -> Conn {
        let mut c = Conn::connect(self.addr());
        if let Some(p) = &self.password {
            let r = c.cmd_str(&["AUTH", p]);
            assert_eq!(r, b"+OK\r\n", "AUTH on sentinel: {}", show(&r));
        }
        c
    }

    /// SIGKILLs the sentinel.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the sentinel logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for SentinelNode {
    fn drop(&mut self) {
        self.kill();
    }
}

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
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut r = replica.conn();
        while !String::from_utf8_lossy(&r.cmd_str(&["INFO", "replication"]))
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sentinels: Vec<SentinelNode> = (0..3)
            .map(|_| SentinelNode::start(primary.port(), sentinel_password))
            .collect();
        let group = SentinelGroup {
            primary,
            replica,
            sentinels,
        };
        for s in &group.sentinels {
            let mut c = s.conn();
            loop {
                let peers = count(&c.cmd_str(&["SENTINEL", "sentinels", MASTER]));
                let replicas = c.cmd_str(&["SENTINEL", "replicas", MASTER]);
                let replica_ok = count(&replicas) == 1
                    && !String::from_utf8_lossy(&replicas).contains("disconnected");
                if peers == 2 && replica_ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel {} sees {peers} peers, replicas {}:\n{}",
                    s.port(),
                    show(&replicas),
                    s.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        group
    }

    /// `redis+sentinel://` URL of the sentinels (in order), naming [`MASTER`].
    pub fn url(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", list.join(","))
    }

    /// The primary's address as the first live sentinel names it now.
    pub fn named_primary(&self) -> Option<String> {
        self.sentinels
            .iter()
            .filter(|s| s.pid() != 0)
            .find_map(|s| {
                let reply = s
                    .conn()
                    .cmd_str(&["SENTINEL", "get-master-addr-by-name", MASTER]);
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
        let mut c = self.sentinels[0].conn();
        loop {
            let reply = c.cmd_str(&["SENTINEL", "FAILOVER", MASTER]);
            if reply == b"+OK\r\n" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER: {}",
                show(&reply)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
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
