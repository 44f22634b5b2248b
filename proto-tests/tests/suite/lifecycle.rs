//! Start-up, configuration (flags, env, TOML, exit code 64), bind failure, SIGTERM.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use proto_tests::tempdir::TempDir;
use proto_tests::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn sigterm_exits_zero() {
    let (_redis, mut sidecar) = start_pair(&["--shutdown-grace", "1s"]);
    let addr = sidecar.addr();
    let mut idle = sidecar.conn();
    assert_reply(&idle.cmd_str(&["PING"]), b"+PONG\r\n", "PING");
    let started = Instant::now();
    let status = sidecar.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "exit within the 1 s grace period (plus slack), took {:?}",
        started.elapsed()
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port still accepts after exit"
    );
    // The idle client was closed, not left hanging.
    assert_reply(&idle.read_to_close(), b"", "idle connection after shutdown");
}

#[test]
fn sigterm_finishes_in_flight_replies() {
    let (redis, mut sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    let mut observer = sidecar.conn();
    let misses = info_u64(&observer.info(Some("nearcache")), "l1_misses");
    let mut c = sidecar.conn();
    assert_reply(
        &direct.cmd_str(&["CLIENT", "PAUSE", "500", "ALL"]),
        b"+OK\r\n",
        "PAUSE",
    );
    c.send(&encode_command_str(&["GET", "k"]));
    poll_until(Duration::from_secs(2), "the GET to be in flight", || {
        info_u64(&observer.info(Some("nearcache")), "l1_misses") > misses
    });
    sidecar.send_sigterm();
    assert_reply(
        &c.read_reply(),
        &bulk(b"v"),
        "the in-flight GET is answered during shutdown",
    );
    let status = sidecar.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status: {status}");
}

fn assert_config_error(args: &[&str], env: &[(&str, &str)], names: &[&[&str]]) {
    let out = run_nearcache(args, env, RUN_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{args:?} {env:?}: exit status {}, stderr:\n{}",
        out.status,
        out.stderr
    );
    for alternatives in names {
        assert!(
            alternatives.iter().any(|n| out.stderr.contains(n)),
            "{args:?} {env:?}: stderr names none of {alternatives:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stdout.contains("nearcache listening on"),
        "{args:?}: started listening despite the error"
    );
}

/// Flags that make a run that would start harmless: a free port, an upstream nobody has.
fn base() -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        format!("redis://127.0.0.1:{}", free_port()),
    ]
}

fn with_base(extra: &[&str]) -> Vec<String> {
    let mut args = base();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn bad_config_exits_64() {
    let args = with_base(&["--l1-ttl", "abc", "--l1-max-bytes", "lots"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Every problem is reported at once.
    assert_config_error(&args, &[], &[&["--l1-ttl"], &["--l1-max-bytes"]]);

    let cases: &[(&[&str], &str)] = &[
        (
            &["--serve-stale-when-down", "maybe"],
            "--serve-stale-when-down",
        ),
        (&["--l1-cache-nil", "sometimes"], "--l1-cache-nil"),
        (&["--max-clients", "many"], "--max-clients"),
        (&["--upstream-timeout", "5 parsecs"], "--upstream-timeout"),
        (&["--connect-timeout", "soon"], "--connect-timeout"),
        (
            &["--l1-compress-min-bytes", "big"],
            "--l1-compress-min-bytes",
        ),
        (&["--max-bulk-bytes", "12XB"], "--max-bulk-bytes"),
    ];
    for (extra, name) in cases {
        let args = with_base(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_config_error(&args, &[], &[&[name]]);
    }
    let upstream = format!("redis://127.0.0.1:{}", free_port());
    let addresses: &[(&[&str], &str)] = &[
        (
            &["--listen", "not-an-address", "--upstream", &upstream],
            "--listen",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:6379",
            ],
            "--upstream",
        ),
    ];
    for (args, name) in addresses {
        assert_config_error(args, &[], &[&[name]]);
    }
}

#[test]
fn bad_config_from_env_and_file_exits_64() {
    let args = base();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_config_error(
        &args,
        &[("NEARCACHE_L1_TTL", "abc")],
        &[&["--l1-ttl", "NEARCACHE_L1_TTL", "l1_ttl"]],
    );

    let dir = TempDir::new("config");
    let unknown = dir.path().join("unknown.toml");
    fs::write(&unknown, "no_such_option = 1\n").unwrap();
    let bad_value = dir.path().join("bad-value.toml");
    fs::write(&bad_value, "l1_ttl = \"abc\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    let cases: &[(&std::path::Path, &[&str])] = &[
        (&unknown, &["no_such_option"]),
        (&bad_value, &["l1_ttl", "l1-ttl"]),
        (&missing, &["missing.toml"]),
    ];
    for (file, names) in cases {
        let mut args = base();
        args.push("--config".into());
        args.push(file.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_config_error(&args, &[], &[names]);
    }
}

#[test]
fn unknown_flag_exits_64() {
    let args = with_base(&["--no-such-flag", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_config_error(&args, &[], &[&["--no-such-flag"]]);
}

#[test]
fn bind_failure_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let mut args = base();
    args[1] = listen;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_nearcache(&args, &[], RUN_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bind failure: {}, stderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(
        !out.stderr.is_empty(),
        "bind failure is explained on stderr"
    );
}

/// Environment variables for one run.
type Env<'a> = &'a [(&'a str, &'a str)];

fn l1_max_bytes(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_max_bytes")
}

#[test]
fn config_precedence_is_flag_env_file_default() {
    let redis = Redis::start();
    let dir = TempDir::new("config");
    let file = dir.path().join("nearcache.toml");
    fs::write(&file, "l1_max_bytes = \"1MiB\"\n").unwrap();
    let file = file.display().to_string();
    let env = [("NEARCACHE_L1_MAX_BYTES", "2MiB")];
    let url = redis.url();

    let cases: &[(&[&str], Env, u64, &str)] = &[
        (&[], &[], 256 << 20, "default"),
        (&["--config", &file], &[], 1 << 20, "file"),
        (&["--config", &file], &env, 2 << 20, "env over file"),
        (
            &["--config", &file, "--l1-max-bytes", "3MiB"],
            &env,
            3 << 20,
            "flag over env and file",
        ),
        (&["--l1-max-bytes", "3MiB"], &env, 3 << 20, "flag over env"),
    ];
    for (args, env, want, what) in cases {
        let sidecar = Sidecar::start_env(&url, args, env);
        assert_eq!(l1_max_bytes(&sidecar), *want, "{what}");
    }
}

#[test]
fn size_and_duration_forms_are_accepted() {
    let redis = Redis::start();
    let sizes: &[(&str, u64)] = &[
        ("1048576", 1 << 20),
        ("2048B", 2048),
        ("512KiB", 512 << 10),
        ("512kib", 512 << 10),
        ("3MiB", 3 << 20),
        ("1GiB", 1 << 30),
    ];
    for (text, want) in sizes {
        let sidecar = Sidecar::start(redis.port(), &["--l1-max-bytes", text]);
        assert_eq!(l1_max_bytes(&sidecar), *want, "--l1-max-bytes {text}");
    }
    let others: &[&[&str]] = &[
        &[
            "--l1-ttl",
            "500ms",
            "--upstream-timeout",
            "2s",
            "--connect-timeout",
            "1s",
        ],
        &["--l1-ttl", "30", "--shutdown-grace", "1m"],
        &["--l1-ttl", "1h"],
        &["--serve-stale-when-down", "yes", "--l1-cache-nil", "no"],
        &["--serve-stale-when-down", "on", "--l1-cache-nil", "off"],
        &["--serve-stale-when-down", "1", "--l1-cache-nil", "0"],
        &["--serve-stale-when-down", "false", "--l1-cache-nil", "true"],
        &["--upstream-connections", "2", "--max-clients", "100"],
    ];
    for flags in others {
        let sidecar = Sidecar::start(redis.port(), flags);
        assert_reply(
            &sidecar.conn().cmd_str(&["PING"]),
            b"+PONG\r\n",
            &format!("{flags:?}"),
        );
    }
}

/// `--threads N` sets the number of worker threads the sidecar runs; with one (the default)
/// everything runs on the process's main thread, with no worker thread beside it.
#[test]
fn threads_flag_sets_the_worker_count() {
    let redis = Redis::start();
    for threads in [1usize, 3] {
        let sidecar = Sidecar::start(redis.port(), &["--threads", &threads.to_string()]);
        let mut c = sidecar.conn();
        assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
        let tasks = std::fs::read_dir(format!("/proc/{}/task", sidecar.pid())).expect("/proc");
        let workers = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "tokio-rt-worker")
            .count();
        let want = if threads == 1 { 0 } else { threads };
        assert_eq!(workers, want, "worker threads with --threads {threads}");
    }
}
