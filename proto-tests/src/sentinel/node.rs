//! `SentinelNode`: one `redis-server --sentinel` on a free port, plain text or TLS only.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, MASTER};
use crate::client::Conn;
use crate::redis::TlsFiles;
use crate::tempdir::TempDir;
use crate::{free_port, show};

/// Bound on a sentinel answering after its start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// One `redis-server --sentinel` child process, killed on drop.
pub struct SentinelNode {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    password: Option<String>,
    tls: Option<TlsFiles>,
}

impl SentinelNode {
    /// Starts a sentinel monitoring `127.0.0.1:<primary>` as [`MASTER`] with quorum 2; with
    /// `password`, the sentinel requires it (`requirepass`) and gives it to its peers.
    pub fn start(primary: u16, password: Option<&str>) -> SentinelNode {
        SentinelNode::start_with(primary, password, None)
    }

    /// Starts a sentinel that listens for TLS only (`port 0`, `tls-port <free>`) with the
    /// server certificate of `files` (also its client certificate), requires client
    /// certificates signed by their CA, and talks TLS to the nodes and to the other
    /// sentinels (`tls-replication yes`); the primary at `primary` must listen for TLS.
    pub fn start_tls(primary: u16, files: &TlsFiles) -> SentinelNode {
        SentinelNode::start_with(primary, None, Some(files))
    }

    fn start_with(primary: u16, password: Option<&str>, tls: Option<&TlsFiles>) -> SentinelNode {
        let mut last = String::new();
        for _ in 0..3 {
            let mut node = SentinelNode {
                port: free_port(),
                child: None,
                dir: TempDir::new("sentinel"),
                password: password.map(str::to_owned),
                tls: tls.cloned(),
            };
            match node.spawn(primary) {
                Ok(()) => return node,
                Err(e) => last = e,
            }
        }
        panic!("redis-server --sentinel did not start: {last}");
    }

    fn spawn(&mut self, primary: u16) -> Result<(), String> {
        let listen = match &self.tls {
            None => format!("port {}\n", self.port),
            Some(files) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients yes\ntls-replication yes\n",
                port = self.port,
                cert = files.cert,
                key = files.key,
                ca = files.ca,
            ),
        };
        let mut config = format!(
            "{listen}bind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER} 1\n",
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
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no answer on {}:\n{}", self.port, self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the sentinel answers PING.
    fn answers(&self) -> bool {
        if self.tls.is_some() {
            return self.cli(&["PING"]) == "PONG";
        }
        let Ok(mut c) = Conn::try_connect(self.addr()) else {
            return false;
        };
        if let Some(p) = self.password.clone() {
            c.cmd_str(&["AUTH", &p]);
        }
        c.cmd_str(&["PING"]) == b"+PONG\r\n"
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the sentinel listens for TLS only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The process id (for SIGSTOP / SIGCONT), 0 once killed.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A connection, authenticated when the sentinel requires a password (plain-text
    /// sentinels only: a TLS one is reached through [`SentinelNode::cli`]).
    pub fn conn(&self) -> Conn {
        assert!(self.tls.is_none(), "a TLS sentinel: use cli()");
        let mut c = Conn::connect(self.addr());
        if let Some(p) = &self.password {
            let r = c.cmd_str(&["AUTH", p]);
            assert_eq!(r, b"+OK\r\n", "AUTH on sentinel: {}", show(&r));
        }
        c
    }

    /// Runs `redis-cli --tls` with the client certificate against a TLS sentinel and
    /// returns its output (redis-cli's plain text form of the reply, one element a line).
    pub fn cli(&self, args: &[&str]) -> String {
        let files = self.tls.as_ref().expect("cli: a TLS sentinel");
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", &files.ca])
            .args(["--cert", &files.client_cert, "--key", &files.client_key])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
