//! `nearcache probe`, the Kubernetes exec probe: exit 0 when the sidecar on the listen
//! address (`--listen` or `NEARCACHE_LISTEN`, as the sidecar itself reads it) answers PING,
//! 1 when nothing answers, or the sidecar answers with an error, within `--timeout`; with
//! `--listening` (the startup probe), 0 once the sidecar answers at all, whatever its
//! upstream does.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use proto_tests::*;

const LIMIT: Duration = Duration::from_secs(10);

fn probe(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    let run = run_nearcache(&all, env, LIMIT);
    (run.status.code(), run.stderr)
}

#[test]
fn a_serving_sidecar_passes_by_flag_or_environment() {
    let (_redis, sidecar) = start_pair(&[]);
    let addr = sidecar.addr().to_string();
    assert_eq!(
        probe(&["--listen", &addr, "--timeout", "5s"], &[]).0,
        Some(0)
    );
    assert_eq!(
        probe(&["--timeout", "5s"], &[("NEARCACHE_LISTEN", &addr)]).0,
        Some(0)
    );
    // The sidecar's whole environment is accepted (the probe runs in its container).
    let env = [
        ("NEARCACHE_LISTEN", addr.as_str()),
        ("NEARCACHE_L1_MAX_BYTES", "64MiB"),
        ("NEARCACHE_METRICS_LISTEN", "0.0.0.0:9380"),
    ];
    assert_eq!(probe(&["--timeout", "5s"], &env).0, Some(0));
}

#[test]
fn nothing_listening_or_a_silent_listener_fails_within_the_timeout() {
    let port = free_port().to_string();
    let (code, stderr) = probe(&["--listen", &format!("127.0.0.1:{port}")], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nearcache probe: connect"), "{stderr}");
    // Accepts, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (code, stderr) = probe(&["--listen", &addr, "--timeout", "300ms"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no reply"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by --timeout"
    );
    let (code, _) = probe(&["--listen", &addr, "--timeout", "soon"], &[]);
    assert_eq!(code, Some(64), "a bad timeout is a usage error");
}

#[test]
fn an_unreachable_upstream_fails_and_a_password_protected_one_passes() {
    // The sidecar answers PING with its own error while the upstream is down: not ready.
    let port = free_port();
    let down = Sidecar::start(port, &[]);
    let addr = down.addr().to_string();
    let (code, stderr) = probe(&["--listen", &addr], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    // Its error reply, or no reply in time while it tries to connect: not ready either way.
    let why = stderr.contains("upstream unavailable") || stderr.contains("no reply");
    assert!(why, "{stderr}");
    // A password-protected upstream the sidecar has no credentials for: it answers NOAUTH,
    // as Redis would, and its clients authenticate themselves.
    let redis = Redis::start_with(&["--requirepass", "probe-secret"]);
    let sidecar = Sidecar::start(redis.port(), &[]);
    let addr = sidecar.addr().to_string();
    let (code, stderr) = probe(&["--listen", &addr, "--timeout", "5s"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn listening_passes_while_the_upstream_is_down_and_fails_with_nothing_listening() {
    // Nothing behind the sidecar: it listens (and accepts clients once one connect
    // timeout has passed without the upstream), so the startup probe passes...
    let sidecar = Sidecar::start(free_port(), &[]);
    let addr = sidecar.addr().to_string();
    let (code, stderr) = probe(&["--listening", "--listen", &addr, "--timeout", "5s"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // ... and the readiness probe, which needs the upstream, fails.
    let (code, stderr) = probe(&["--listen", &addr], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    // The sidecar goes on serving after the probe's QUIT.
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["QUIT"]), b"+OK\r\n", "QUIT");
    // Nothing listening: the startup probe fails too.
    let port = free_port().to_string();
    let nothing = format!("127.0.0.1:{port}");
    let (code, stderr) = probe(&["--listening", "--listen", &nothing], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("nearcache probe: connect"), "{stderr}");
}
