//! Real client libraries through the sidecar: redis-py, ioredis and node-redis run the
//! scenario scripts in `proto-tests/clients/` (pipelines, read-your-writes, WATCH/MULTI/EXEC,
//! EXECABORT, a BRPOP/BLMOVE job queue, pub/sub, RESP3).
//!
//! Each test runs its script twice: first DIRECTLY against redis-server, which proves the
//! script and the library are right, then through nearcache, so a failure there is the
//! sidecar's. The scripts print one `ok <step>` or `FAIL <step>: <reason>` line per step and
//! exit non-zero if any step failed; a failing test shows their whole output.
//!
//! The libraries are installed under `target/clients/` by `scripts/ensure-clients.sh`
//! (`make test` runs it); a test whose library is missing fails and says so.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto_tests::*;

/// Bound on one run of a script (a run takes about 2 s; every step bounds its own waits).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The steps of the node script that use ioredis; the others use node-redis.
const IOREDIS_STEPS: &[&str] = &[
    "pipeline",
    "read_your_writes",
    "watch_retry",
    "multi_exec",
    "execabort",
    "job_queue",
    "brpop_timeout",
    "pubsub",
];
const NODE_REDIS_STEPS: &[&str] = &["resp3", "resp3_pubsub"];

const INSTALL_HINT: &str = "run scripts/ensure-clients.sh (make test runs it) to install it";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto-tests is inside the workspace")
        .to_path_buf()
}

/// A way to run one scenario script.
struct Script {
    library: &'static str,
    program: PathBuf,
    script: PathBuf,
    steps: Vec<String>,
    env: Vec<(&'static str, OsString)>,
}

fn redis_py() -> Script {
    let python = workspace().join("target/clients/venv/bin/python");
    assert!(
        python.is_file(),
        "redis-py is not installed ({} is missing): {INSTALL_HINT}",
        python.display()
    );
    let probe = Command::new(&python)
        .args(["-c", "import redis"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        probe.status.success(),
        "redis-py does not import in {}: {INSTALL_HINT}\n{}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    Script {
        library: "redis-py",
        program: python,
        script: workspace().join("proto-tests/clients/python/redis_py_scenarios.py"),
        steps: Vec::new(),
        env: Vec::new(),
    }
}

fn node(library: &'static str, steps: &[&str]) -> Script {
    let modules = workspace().join("target/clients/node/node_modules");
    for package in ["ioredis", "redis"] {
        let manifest = modules.join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "the npm package {package} is not installed ({} is missing): {INSTALL_HINT}",
            manifest.display()
        );
    }
    Script {
        library,
        program: PathBuf::from("node"),
        script: workspace().join("proto-tests/clients/node/ioredis_scenarios.js"),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        env: vec![("NODE_PATH", modules.into_os_string())],
    }
}

/// What one run of a script did.
struct Run {
    target: String,
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Run {
    /// `(step, passed)` for every `ok <step>` / `FAIL <step>:` line.
    fn steps(&self) -> Vec<(String, bool)> {
        self.stdout
            .lines()
            .filter_map(|line| {
                if let Some(rest) = line.strip_prefix("ok ") {
                    Some((rest.split_whitespace().next()?.to_string(), true))
                } else if let Some(rest) = line.strip_prefix("FAIL ") {
                    Some((rest.split(':').next()?.trim().to_string(), false))
                } else {
                    None
                }
            })
            .collect()
    }

    fn failed_steps(&self) -> Vec<String> {
        self.steps()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(step, _)| step)
            .collect()
    }

    fn report(&self) -> String {
        format!(
            "--- against {} ({}) ---\nstdout:\n{}stderr:\n{}",
            self.target, self.status, self.stdout, self.stderr
        )
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_bounded(child: &mut Child) -> String {
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    loop {
        match child.try_wait().expect("wait for the script") {
            Some(status) => return status.to_string(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return format!("killed after {SCRIPT_TIMEOUT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn run(script: &Script, target: &str, port: u16) -> Run {
    let url = format!("redis://127.0.0.1:{port}");
    let mut cmd = Command::new(&script.program);
    cmd.arg(&script.script)
        .arg(&url)
        .args(&script.steps)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &script.env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {} for {}: {e} ({INSTALL_HINT})",
            script.program.display(),
            script.library
        )
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child);
    Run {
        target: format!("{target} {url}"),
        success: status == "exit status: 0",
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `script` directly against a fresh redis-server (must pass), then through a sidecar
/// in front of it (must pass too).
fn scenarios_pass_directly_and_through_the_sidecar(script: Script) {
    let (redis, sidecar) = start_pair(&[]);

    let direct = run(&script, "redis-server", redis.port());
    assert!(
        direct.success && direct.failed_steps().is_empty() && !direct.steps().is_empty(),
        "{} scenarios fail DIRECTLY against redis-server, so the script or the library is \
         wrong, not the sidecar:\n{}",
        script.library,
        direct.report()
    );

    let proxied = run(&script, "nearcache", sidecar.port());
    let want: Vec<String> = direct.steps().into_iter().map(|(s, _)| s).collect();
    let got: Vec<String> = proxied.steps().into_iter().map(|(s, _)| s).collect();
    assert!(
        proxied.success && proxied.failed_steps().is_empty() && got == want,
        "{} scenarios fail through nearcache (they pass directly against redis-server); \
         failed steps: {:?}; steps that did not report: {:?}\n{}",
        script.library,
        proxied.failed_steps(),
        want.iter().filter(|s| !got.contains(s)).collect::<Vec<_>>(),
        proxied.report()
    );
}

#[test]
fn redis_py_scenarios() {
    scenarios_pass_directly_and_through_the_sidecar(redis_py());
}

#[test]
fn ioredis_scenarios() {
    scenarios_pass_directly_and_through_the_sidecar(node("ioredis", IOREDIS_STEPS));
}

#[test]
fn node_redis_resp3_scenarios() {
    scenarios_pass_directly_and_through_the_sidecar(node("node-redis", NODE_REDIS_STEPS));
}
