//! Start-up: the first stdout line is the listening one (wrappers read it), and an
//! `--upstream` that leads back to the sidecar's own listener is refused at once (exit 64,
//! naming `--upstream`) instead of connecting to itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proto_tests::*;

/// Generous for a loaded machine: the refusal needs no upstream round trip at all.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs nearcache with `listen` and `upstream` and checks that it refuses them as the
/// sidecar itself.
fn refused_as_itself(listen: &str, upstream: &str) {
    let started = Instant::now();
    let args = ["--listen", listen, "--upstream", upstream];
    let out = run_nearcache(&args, &[], RUN_TIMEOUT);
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{args:?}: exit status {}, stderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.contains("--upstream") && out.stderr.contains("itself"),
        "{args:?}: stderr names --upstream and says why:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("nearcache listening on"),
        "{args:?}: started listening despite the error:\n{}",
        out.stdout
    );
    println!("{upstream} on {listen}: refused in {took:?}");
}

#[test]
fn an_upstream_that_is_the_listener_itself_exits_64() {
    let port = free_port();
    let own = format!("127.0.0.1:{port}");
    refused_as_itself(&own, &format!("redis://127.0.0.1:{port}"));
    refused_as_itself(&own, &format!("redis://127.1:{port}"));
    refused_as_itself(&own, &format!("redis://[::ffff:127.0.0.1]:{port}"));
    refused_as_itself(&own, &format!("redis://localhost:{port}"));
    refused_as_itself(
        &format!("0.0.0.0:{port}"),
        &format!("redis://127.0.0.1:{port}"),
    );
}

#[test]
fn an_upstream_on_another_port_of_the_same_host_is_accepted() {
    let (redis, sidecar) = start_pair(&[]);
    assert_ne!(redis.port(), sidecar.port());
    assert_reply(&sidecar.conn().cmd_str(&["PING"]), b"+PONG\r\n", "PING");
}

/// The first two stdout lines of a nearcache started with `extra`, then it is killed.
fn first_two_lines(extra: &[&str]) -> Vec<String> {
    let upstream = format!("redis://127.0.0.1:{}", free_port());
    let mut child = Command::new(nearcache_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--connect-timeout",
            "100ms",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nearcache");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok).take(2) {
            let _ = tx.send(line);
        }
    });
    let lines: Result<Vec<String>, _> = (0..2).map(|_| rx.recv_timeout(RUN_TIMEOUT)).collect();
    let _ = child.kill();
    let _ = child.wait();
    lines.expect("two stdout lines")
}

#[test]
fn the_first_stdout_line_is_the_listening_one() {
    for (metrics, second) in [
        ("127.0.0.1:0", "nearcache metrics on 127.0.0.1:"),
        ("off", "nearcache metrics off"),
    ] {
        let lines = first_two_lines(&["--metrics-listen", metrics]);
        assert!(
            lines[0].starts_with("nearcache listening on 127.0.0.1:"),
            "--metrics-listen {metrics}: first line {:?}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(second),
            "--metrics-listen {metrics}: second line {:?}",
            lines[1]
        );
    }
}

/// Query parameters clients write in their Redis URL (issue: the injector copies the app's
/// URL into the sidecar): `db` and `password` are applied, client options such as `protocol`
/// and `timeout` are accepted and ignored, a `#fragment` too.
#[test]
fn an_upstream_url_with_client_query_parameters_is_applied() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let url = format!(
        "redis://127.0.0.1:{}?db=3&password=s3cret&protocol=3&timeout=5s#frag",
        redis.port()
    );
    let sidecar = Sidecar::start_url(&url, &[]);
    let mut conn = sidecar.conn();
    assert_reply(&conn.cmd_str(&["SET", "q", "v"]), b"+OK\r\n", "SET");
    let mut direct = redis.conn();
    assert_reply(
        &direct.cmd_str(&["AUTH", "s3cret"]),
        b"+OK\r\n",
        "AUTH direct",
    );
    assert_eq!(get_in_db(&mut direct, 3, "q"), b"$1\r\nv\r\n");
}

/// A parameter the sidecar does not know is refused at start (exit 64), named.
#[test]
fn an_unknown_query_parameter_exits_64_naming_it() {
    let url = format!("redis://127.0.0.1:{}?poolsize=10", free_port());
    let out = run_nearcache(&["--upstream", &url], &[], RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr.contains("--upstream")
            && out.stderr.contains("unknown query parameter \"poolsize\""),
        "{}",
        out.stderr
    );
}
