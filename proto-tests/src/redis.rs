//! `Redis`: a real `redis-server` on a free port, for one test; plain TCP, or TLS only
//! ([`Redis::start_tls`], reached directly through `redis-cli --tls`).

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::tempdir::TempDir;
use crate::{free_port, show};

/// Bound on waiting for a started redis-server to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` child process, killed on drop.
///
/// Started with no persistence (`--save '' --appendonly no`), so a restart comes back
/// empty, and with `DEBUG` enabled.
pub struct Redis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
    password: Option<String>,
    tls: Option<TlsFiles>,
}

/// The PEM files of a TLS redis-server and of a client it accepts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server's and the client's certificates.
    pub ca: String,
    /// The server's certificate.
    pub cert: String,
    /// The server's private key.
    pub key: String,
    /// A client certificate signed by the CA.
    pub client_cert: String,
    /// Its private key.
    pub client_key: String,
}

impl Redis {
    /// Starts a redis-server on a free port.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Starts a redis-server with extra arguments (e.g. `["--requirepass", "secret"]`).
    pub fn start_with(extra: &[&str]) -> Redis {
        let mut redis = Redis::new(extra);
        // The port is free when picked but another process may take it before
        // redis-server binds it: try a few ports before giving up.
        let mut last_error = String::new();
        for _ in 0..3 {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Starts a redis-server that listens for TLS only (`--port 0 --tls-port <free>`), with
    /// the server certificate of `files`, requiring client certificates signed by its CA.
    pub fn start_tls(files: &TlsFiles, extra: &[&str]) -> Redis {
        let mut redis = Redis::new(extra);
        redis.tls = Some(files.clone());
        let mut last_error = String::new();
        for _ in 0..3 {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server (TLS) did not start: {last_error}");
    }

    /// Whether the server listens for TLS only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Runs `redis-cli` against a TLS server with the client certificate of its files and
    /// returns its output (`redis-cli`'s plain text form of the reply). The server's
    /// certificate is not verified (a test may give it an expired one).
    pub fn cli(&self, args: &[&str]) -> String {
        let files = self.tls.as_ref().expect("cli: a TLS server");
        let out = Command::new("redis-cli")
            .args(["--tls", "--insecure", "--cacert", &files.ca])
            .args(["--cert", &files.client_cert, "--key", &files.client_key])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a TLS-only redis-server (as [`Redis::start_tls`]) on the given port (e.g. one
    /// whose cluster bus port, port + 10000, is known to be free).
    pub fn start_tls_on(port: u16, files: &TlsFiles, extra: &[&str]) -> Redis {
        let mut redis = Redis::new(extra);
        redis.tls = Some(files.clone());
        redis.port = port;
        if let Err(e) = redis.spawn() {
            panic!("redis-server (TLS) did not start on port {port}: {e}");
        }
        redis
    }

    /// Starts a redis-server on the given port (e.g. one a sidecar already points at).
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let mut redis = Redis::new(extra);
        redis.port = port;
        if let Err(e) = redis.spawn() {
            panic!("redis-server did not start on port {port}: {e}");
        }
        redis
    }

    fn new(extra: &[&str]) -> Redis {
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| p.to_string());
        Redis {
            port: 0,
            child: None,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            password,
            tls: None,
        }
    }

    /// The port redis-server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The `--upstream` URL for a sidecar, with the password if one is required.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A direct connection (bypassing any sidecar), authenticated if a password is set.
    pub fn conn(&self) -> Conn {
        let mut conn = Conn::connect(self.addr());
        if let Some(p) = &self.password {
            let reply = conn.cmd_str(&["AUTH", p]);
            assert_eq!(
                reply,
                b"+OK\r\n",
                "AUTH on direct connection: {}",
                show(&reply)
            );
        }
        conn
    }

    /// The server's process id (0 once it was killed), for signals such as SIGSTOP.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILLs the server and waits for it: the upstream disappears without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with no data: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// What redis-server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("create redis.log");
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(files) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &files.cert, "--tls-key-file", &files.key])
                .args(["--tls-ca-cert-file", &files.ca])
                .args(["--tls-auth-clients", "yes"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("redis-server not found: run `make test`, which installs it")
            }
            Err(e) => panic!("spawning redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the server answers `INFO server` with its own process id.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server exited with {status}:\n{}",
                        self.log()
                    ));
                }
            }
            let pid = self.child.as_ref().map_or(0, Child::id);
            let answers = match &self.tls {
                None => answers_as(self.addr(), pid, self.password.as_deref()),
                Some(_) => self
                    .cli(&["INFO", "server"])
                    .contains(&format!("process_id:{pid}")),
            };
            if answers {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no answer from redis-server on port {} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// True if the server on `addr` answers and is the process `pid` (not another process that
/// took the port first).
fn answers_as(addr: SocketAddr, pid: u32, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = match password {
        Some(p) => format!("AUTH {p}\r\nINFO server\r\n"),
        None => "INFO server\r\n".to_string(),
    };
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let want = format!("process_id:{pid}\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&got).contains(&want) {
            return true;
        }
    }
    false
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
