//! `Sidecar`: the real nearcache binary on a free port, for one test.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::tempdir::TempDir;

/// Bound on waiting for the `nearcache listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for the process to exit after SIGTERM (grace period 5 s by default).
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// The start-up line's prefix (see docs/configuration.md: "nearcache listening on <ip>:<port>").
const LISTENING: &str = "nearcache listening on ";
/// The second line's prefix when the HTTP endpoint is on: its address follows.
const METRICS: &str = "nearcache metrics on ";
/// The second line when the HTTP endpoint is off.
const METRICS_OFF: &str = "nearcache metrics off";

/// Path of the nearcache binary: `$NEARCACHE_BIN`, else the `nearcache` beside the test's
/// target directory, else `<workspace>/target/debug/nearcache`.
pub fn nearcache_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NEARCACHE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "NEARCACHE_BIN={} is not a file", p.display());
        return p;
    }
    let mut tried = Vec::new();
    // The test executable is <target>/<profile>/deps/<name>; the binary is <target>/<profile>/nearcache.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            let p = profile_dir.join("nearcache");
            if p.is_file() {
                return p;
            }
            tried.push(p);
        }
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/nearcache");
    if p.is_file() {
        return p;
    }
    tried.push(p);
    panic!(
        "nearcache binary not found (tried {tried:?}): run `cargo build` first, or set NEARCACHE_BIN"
    );
}

/// A nearcache child process, killed on drop.
pub struct Sidecar {
    child: Option<Child>,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    dir: TempDir,
}

impl Sidecar {
    /// Starts nearcache in front of `redis://127.0.0.1:<upstream_port>` with extra flags.
    pub fn start(upstream_port: u16, extra: &[&str]) -> Sidecar {
        Sidecar::start_url(&format!("redis://127.0.0.1:{upstream_port}"), extra)
    }

    /// Starts nearcache with `--upstream <url>` and extra flags.
    pub fn start_url(upstream_url: &str, extra: &[&str]) -> Sidecar {
        Sidecar::start_env(upstream_url, extra, &[])
    }

    /// Starts nearcache with `--listen 127.0.0.1:0 --upstream <url>`, extra flags and extra
    /// environment variables (every other `NEARCACHE_*` variable is removed), then waits for
    /// the listening line.
    pub fn start_env(upstream_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Sidecar {
        Sidecar::spawn(&[], Some(upstream_url), extra, env)
    }

    /// Starts nearcache with `--config <path>` and extra flags but no `--listen` nor
    /// `--upstream`: the file gives both (a reload can then see them change).
    pub fn start_config_file(path: &str, extra: &[&str]) -> Sidecar {
        let mut args = vec!["--config", path];
        args.extend_from_slice(extra);
        Sidecar::spawn(&[], None, &args, &[])
    }

    /// Like [`Sidecar::start_url`], run through a wrapper command such as
    /// `prlimit --nofile=64:64 --` (the wrapper must exec the binary, keeping its pid).
    pub fn start_wrapped(wrapper: &[&str], upstream_url: &str, extra: &[&str]) -> Sidecar {
        Sidecar::spawn(wrapper, Some(upstream_url), extra, &[])
    }

    fn spawn(
        wrapper: &[&str],
        upstream_url: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sidecar {
        let dir = TempDir::new("sidecar");
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(nearcache_bin());
                cmd
            }
            None => Command::new(nearcache_bin()),
        };
        if let Some(upstream_url) = upstream_url {
            cmd.args(["--listen", "127.0.0.1:0", "--upstream", upstream_url]);
        }
        // The periodic ACL re-check sends one GET/MGET per identity upstream every second,
        // which tests that count upstream reads would see at random: off unless a test
        // sets it (tests/suite/acl.rs does).
        let sets_recheck = extra.iter().any(|a| a.starts_with("--acl-recheck"))
            || env.iter().any(|(k, _)| *k == "NEARCACHE_ACL_RECHECK");
        if !sets_recheck {
            cmd.args(["--acl-recheck", "0"]);
        }
        // Many sidecars run at once: each gets its own metrics port unless a test sets one.
        let sets_metrics = extra.iter().any(|a| a.starts_with("--metrics-listen"))
            || env.iter().any(|(k, _)| *k == "NEARCACHE_METRICS_LISTEN");
        if !sets_metrics {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("create stderr.log"));
        clean_env(&mut cmd, env);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", nearcache_bin().display()));

        // A thread reads stdout for the whole life of the process so it never blocks on a
        // full pipe; lines go to the test through a channel.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens any more the send fails: keep draining regardless.
                let _ = tx.send(line);
            }
        });

        // The first line is the listening one (README: wrappers read it for the port); the
        // second names the HTTP endpoint or says it is off.
        let deadline = Instant::now() + START_TIMEOUT;
        let mut next_line = |what: &str| {
            let left = deadline.saturating_duration_since(Instant::now());
            rx.recv_timeout(left).unwrap_or_else(|e| {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "nearcache did not print {what} ({e:?}, exit: {status:?});\nstderr:\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            })
        };
        let first = next_line(&format!("`{LISTENING}<addr>`"));
        let second = next_line(&format!("`{METRICS}<addr>` or `{METRICS_OFF}`"));
        let addr = first
            .strip_prefix(LISTENING)
            .and_then(|rest| rest.trim().parse::<SocketAddr>().ok());
        let metrics = second
            .strip_prefix(METRICS)
            .and_then(|rest| rest.trim().parse::<SocketAddr>().ok());
        let (Some(addr), true) = (addr, metrics.is_some() || second == METRICS_OFF) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "stdout began {first:?}, {second:?}; want `{LISTENING}<addr>` first, then \
                 `{METRICS}<addr>` or `{METRICS_OFF}`"
            );
        };
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "listening line names {addr}, expected 127.0.0.1 and a real port"
        );
        Sidecar {
            child: Some(child),
            addr,
            metrics,
            dir,
        }
    }

    /// The HTTP endpoint's address (`/metrics`, `/healthz`, `/readyz`), unless it is off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The bound client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound client port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A new client connection.
    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("sidecar is running").id()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits (bounded by `timeout`) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("sidecar is running");
        let status = wait_bounded(child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nearcache did not exit within {timeout:?}; stderr:\n{}",
                fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
            )
        });
        self.child = None;
        status
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit(EXIT_TIMEOUT)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let stderr = self.stderr();
            let mut start = stderr.len().saturating_sub(4000);
            while !stderr.is_char_boundary(start) {
                start += 1;
            }
            let tail = &stderr[start..];
            eprintln!("--- nearcache {} stderr (tail) ---\n{tail}\n---", self.addr);
        }
    }
}

/// Output of a nearcache run that was expected to exit by itself.
#[derive(Debug)]
pub struct Exited {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs nearcache with exactly `args` (and `env`, every other `NEARCACHE_*` removed) and
/// waits, bounded by `timeout`, for it to exit by itself (e.g. on invalid configuration).
pub fn run_nearcache(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Exited {
    let dir = TempDir::new("run");
    let out_path = dir.path().join("stdout.log");
    let err_path = dir.path().join("stderr.log");
    let mut cmd = Command::new(nearcache_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout.log"))
        .stderr(File::create(&err_path).expect("create stderr.log"));
    clean_env(&mut cmd, env);
    let mut child = cmd.spawn().expect("spawn nearcache");
    let status = wait_bounded(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "nearcache {args:?} still running after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    };
    Exited {
        status,
        stdout,
        stderr,
    }
}

fn clean_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NEARCACHE_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => return None,
            Err(e) => panic!("waiting for nearcache: {e}"),
        }
    }
}
