//! Logs on stderr: no password ever shows in them, nor in INFO, `NEARCACHE STATS` or an
//! error reply; `--log-format json` writes one JSON object a line; `--log-level` and
//! `RUST_LOG` choose what is written.

use std::time::Duration;

use proto_tests::*;

/// The password of the sidecar's own upstream user (`svc`, in the `--upstream` URL).
const UPSTREAM_PASS: &str = "s3cret-upstream-pass";
/// The password of the default user (`--requirepass`), used by some clients.
const DEFAULT_PASS: &str = "s3cret-default-pass";
/// The password of the client user `carol`.
const CLIENT_PASS: &str = "s3cret-client-pass";
/// Wrong passwords clients try.
const WRONG_PASSES: &[&str] = &[
    "s3cret-wrong-pass-1",
    "s3cret-wrong-pass-2",
    "s3cret-wrong-pass-3",
];

/// The passwords of `svc` given through `--upstream-password-file`: the first, the one it
/// is rotated to, and a wrong one written to the file by mistake.
const FILE_PASSES: &[&str] = &[
    "s3cret-file-pass-first",
    "s3cret-file-pass-rotated",
    "s3cret-file-pass-mistaken",
];
/// `--sentinel-password`, given as a value.
const SENTINEL_PASS: &str = "s3cret-sentinel-pass";

const WAIT: Duration = Duration::from_secs(15);

/// A redis-server with `--requirepass` for the default user and two ACL users, `svc` (the
/// sidecar's) and `carol` (a client's); all survive `restart` (they are arguments).
fn protected_redis() -> Redis {
    let svc_pass = format!(">{UPSTREAM_PASS}");
    let carol_pass = format!(">{CLIENT_PASS}");
    Redis::start_with(&[
        "--requirepass",
        DEFAULT_PASS,
        "--user",
        "svc",
        "on",
        &svc_pass,
        "~*",
        "&*",
        "+@all",
        "--user",
        "carol",
        "on",
        &carol_pass,
        "~*",
        "&*",
        "+@all",
    ])
}

fn every_secret() -> Vec<&'static str> {
    let mut all = vec![UPSTREAM_PASS, DEFAULT_PASS, CLIENT_PASS];
    all.extend_from_slice(WRONG_PASSES);
    all.extend_from_slice(FILE_PASSES);
    all.push(SENTINEL_PASS);
    all
}

/// Panics naming `what` if `text` holds any password, or any prefix of one long enough
/// to give it away (a server may quote a cut argument).
#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in every_secret() {
        assert!(
            !text.contains(secret) && !text.contains(&secret[..10]),
            "{what} shows a password ({secret}):\n{text}"
        );
    }
}

/// Every error reply among `replies`, as text.
fn errors(replies: &[Vec<u8>]) -> Vec<String> {
    replies
        .iter()
        .filter(|r| r.starts_with(b"-") || r.starts_with(b"!"))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

#[test]
fn no_password_in_logs_info_stats_or_error_replies() {
    let mut redis = protected_redis();
    let url = format!("redis://svc:{UPSTREAM_PASS}@127.0.0.1:{}", redis.port());
    let mut sidecar = Sidecar::start_url(&url, &[]);
    let mut replies: Vec<Vec<u8>> = Vec::new();

    // Clients authenticate every way, with right and wrong passwords.
    let mut a = sidecar.conn();
    assert_reply(
        &a.cmd_str(&["AUTH", "carol", CLIENT_PASS]),
        b"+OK\r\n",
        "AUTH carol",
    );
    assert_reply(&a.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET as carol");
    assert_reply(&a.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET as carol");
    let mut b = sidecar.conn();
    let hello = b.cmd_str(&["HELLO", "3", "AUTH", "carol", CLIENT_PASS]);
    assert!(hello.starts_with(b"%"), "HELLO 3 AUTH: {}", show(&hello));
    b.set_protocol(Protocol::Resp3);
    replies.push(hello);
    let mut d = sidecar.conn();
    assert_reply(
        &d.cmd_str(&["AUTH", DEFAULT_PASS]),
        b"+OK\r\n",
        "AUTH as default",
    );
    let mut w = sidecar.conn();
    let wrong: &[&[&str]] = &[
        &["AUTH", "carol", WRONG_PASSES[0]],
        &["AUTH", WRONG_PASSES[1]],
        &["HELLO", "3", "AUTH", "carol", WRONG_PASSES[2]],
        &["HELLO", "3", "AUTH", "nobody", WRONG_PASSES[0]],
        &["AUTH", "carol", WRONG_PASSES[1], "extra"],
        &["HELLO", "2", "AUTH", "carol"],
        &["HELLO", "3", "AUTH", "carol", WRONG_PASSES[2], "SETNAME"],
    ];
    for args in wrong {
        let reply = w.cmd_str(args);
        assert!(reply.starts_with(b"-"), "{args:?}: {}", show(&reply));
        replies.push(reply);
    }
    // The unauthenticated client cannot read; what it is told names no password.
    replies.push(w.cmd_str(&["GET", "k"]));

    // INFO and NEARCACHE STATS, from clients of each kind.
    for conn in [&mut a, &mut d] {
        for args in [
            &["INFO"][..],
            &["INFO", "nearcache"],
            &["INFO", "all"],
            &["INFO", "everything"],
            &["NEARCACHE", "STATS"],
            &["NEARCACHE", "STATS", "all"],
            &["CLIENT", "INFO"],
        ] {
            replies.push(conn.cmd_str(args));
        }
    }
    replies.push(b.cmd_str(&["INFO", "nearcache"]));

    // An upstream outage and its recovery are logged.
    redis.restart();
    poll_until(WAIT, "the sidecar serves again after the restart", || {
        let mut c = sidecar.conn();
        let auth = c.cmd_str(&["AUTH", "carol", CLIENT_PASS]);
        let get = c.cmd_str(&["GET", "k"]);
        replies.extend([auth.clone(), get.clone()]);
        auth == b"+OK\r\n" && !get.starts_with(b"-")
    });
    poll_until(WAIT, "the outage and the recovery are logged", || {
        let log = sidecar.stderr();
        (log.contains("upstream down") || log.contains("upstream unreachable"))
            && log.contains("upstream reachable again")
            && log.contains("invalidation link up again")
    });
    // Clients come back after the restart, right and wrong.
    let mut e = sidecar.conn();
    assert_reply(
        &e.cmd_str(&["AUTH", "carol", CLIENT_PASS]),
        b"+OK\r\n",
        "AUTH after the restart",
    );
    replies.push(e.cmd_str(&["AUTH", "carol", WRONG_PASSES[0]]));
    replies.push(e.cmd_str(&["INFO", "nearcache"]));
    replies.push(e.cmd_str(&["NEARCACHE", "STATS"]));
    let addr = sidecar.metrics_addr().expect("metrics on");
    for path in ["/metrics", "/readyz", "/healthz"] {
        let (_, body) = http_get(addr, path);
        assert_no_secret(path, &body);
    }

    let status = sidecar.terminate();
    assert_eq!(status.code(), Some(0), "exit: {status}");
    let log = sidecar.stderr();
    for line in ["INFO nearcache: started", "shutting down", "WARN"] {
        assert!(log.contains(line), "stderr lacks {line:?}:\n{log}");
    }
    assert_no_secret("the sidecar's stderr", &log);
    for (i, reply) in replies.iter().enumerate() {
        assert_no_secret(&format!("reply {i}"), &String::from_utf8_lossy(reply));
    }
    assert!(
        errors(&replies).len() >= wrong.len(),
        "the wrong passwords were refused: {:?}",
        errors(&replies)
    );
}

/// Writes `content` to `path` as Kubernetes does: a new file renamed over the old one.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_password_from_a_file_rotated_and_mistaken_never_shows() {
    let redis = protected_redis();
    let mut admin = redis.conn();
    let first = format!(">{}", FILE_PASSES[0]);
    let set = admin.cmd_str(&["ACL", "SETUSER", "svc", "resetpass", &first]);
    assert_reply(&set, b"+OK\r\n", "svc's password for the file");
    let dir = tempdir::TempDir::new("logs-secret-files");
    let (user, pass) = (dir.path().join("username"), dir.path().join("password"));
    replace_file(&user, "svc\n");
    replace_file(&pass, &format!("{}\n", FILE_PASSES[0]));
    let (user, pass) = (user.display().to_string(), pass.display().to_string());
    let args = [
        "--upstream-username-file",
        &user,
        "--upstream-password-file",
        &pass,
    ];
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &args);
    let mut outputs: Vec<(String, String)> = Vec::new();
    let snapshot = |sidecar: &Sidecar, outputs: &mut Vec<(String, String)>| {
        let mut c = sidecar.conn();
        let auth = c.cmd_str(&["AUTH", "carol", CLIENT_PASS]);
        assert_reply(&auth, b"+OK\r\n", "AUTH carol");
        for args in [&["INFO", "everything"][..], &["NEARCACHE", "STATS", "all"]] {
            let reply = c.cmd_str(args);
            outputs.push((args.join(" "), String::from_utf8_lossy(&reply).into_owned()));
        }
        // A client of the sidecar's own identity, served over its pools.
        let own = sidecar.conn().cmd_str(&["GET", "k"]);
        outputs.push(("GET".into(), String::from_utf8_lossy(&own).into_owned()));
        let addr = sidecar.metrics_addr().expect("metrics on");
        for path in ["/metrics", "/readyz", "/healthz"] {
            outputs.push((path.into(), http_get(addr, path).1));
        }
    };
    let link_up = |sidecar: &Sidecar| {
        let mut c = sidecar.conn();
        c.cmd_str(&["AUTH", "carol", CLIENT_PASS]);
        let info = String::from_utf8_lossy(&c.cmd_str(&["INFO", "nearcache"])).into_owned();
        info_field(&info, "invalidation_link").as_deref() == Some("up")
    };
    poll_until(WAIT, "the invalidation link is up", || link_up(&sidecar));
    snapshot(&sidecar, &mut outputs);

    // Rotated: the new password only; every connection of svc killed.
    let rotated = format!(">{}", FILE_PASSES[1]);
    let set = admin.cmd_str(&["ACL", "SETUSER", "svc", "resetpass", &rotated]);
    assert_reply(&set, b"+OK\r\n", "svc's rotated password");
    replace_file(
        std::path::Path::new(&pass),
        &format!("{}\n", FILE_PASSES[1]),
    );
    admin.cmd_str(&["CLIENT", "KILL", "USER", "svc"]);
    poll_until(WAIT, "the sidecar serves its own identity again", || {
        sidecar.conn().cmd_str(&["SET", "k", "v"]) == b"+OK\r\n"
    });
    poll_until(WAIT, "the invalidation link is up again", || {
        link_up(&sidecar)
    });
    snapshot(&sidecar, &mut outputs);

    // A wrong password written to the file: refused by the server, logged without it.
    replace_file(std::path::Path::new(&pass), FILE_PASSES[2]);
    admin.cmd_str(&["CLIENT", "KILL", "USER", "svc"]);
    poll_until(WAIT, "the refused password is logged", || {
        sidecar.stderr().contains("WRONGPASS")
    });
    snapshot(&sidecar, &mut outputs);

    // --print-config with the same options and a Sentinel upstream with its password: the
    // paths, never the contents, and `***` for the password.
    let sentinels = "redis+sentinel://127.0.0.1:1/mymaster";
    let printed = run_nearcache(
        &[
            &["--upstream", sentinels, "--print-config"][..],
            &args,
            &["--sentinel-password", SENTINEL_PASS],
        ]
        .concat(),
        &[],
        WAIT,
    );
    assert_eq!(printed.status.code(), Some(0), "{}", printed.stderr);
    assert!(printed.stdout.contains(&pass), "{}", printed.stdout);
    assert!(
        printed.stdout.contains("sentinel_password = \"***\""),
        "{}",
        printed.stdout
    );
    outputs.push(("--print-config".into(), printed.stdout));

    let log = sidecar.stderr();
    assert!(log.contains("secret file changed"), "{log}");
    outputs.push(("the sidecar's stderr".into(), log));
    for (what, text) in &outputs {
        assert_no_secret(what, text);
    }
}

#[test]
fn a_wrong_upstream_password_is_logged_and_replied_without_it() {
    let redis = protected_redis();
    let url = format!("redis://svc:{}@127.0.0.1:{}", WRONG_PASSES[0], redis.port());
    let sidecar = Sidecar::start_url(&url, &[]);
    let mut c = sidecar.conn();
    let replies = [
        c.cmd_str(&["GET", "k"]),
        c.cmd_str(&["SET", "k", "v"]),
        c.cmd_str(&["INFO", "nearcache"]),
        c.cmd_str(&["HELLO", "3", "SETNAME", "x"]),
    ];
    poll_until(WAIT, "the refused upstream is logged", || {
        sidecar.stderr().contains("WRONGPASS")
    });
    assert_no_secret("the sidecar's stderr", &sidecar.stderr());
    for (i, reply) in replies.iter().enumerate() {
        assert_no_secret(&format!("reply {i}"), &String::from_utf8_lossy(reply));
    }
}

/// A sidecar in front of nothing: it starts, logs the unreachable upstream (warn), and
/// its shutdown (info).
fn run_against_nothing(extra: &[&str], env: &[(&str, &str)]) -> String {
    // Port 1: nothing listens there, and unlike a port free now it can never become the
    // sidecar's own listener (`--listen 127.0.0.1:0`), which the sidecar refuses to start on.
    let url = format!("redis://svc:{UPSTREAM_PASS}@127.0.0.1:1");
    // An inherited RUST_LOG must not change what the tests expect.
    let env: Vec<(&str, &str)> = [("RUST_LOG", "")].iter().chain(env).copied().collect();
    let mut sidecar = Sidecar::start_env(&url, extra, &env);
    let quiet = env.contains(&("RUST_LOG", "error")) && !extra.contains(&"--log-level");
    if !quiet {
        poll_until(WAIT, "the unreachable upstream is logged", || {
            sidecar.stderr().contains("unreachable")
        });
    } else {
        // Nothing below error is written: give the warnings time to show if they would.
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = sidecar.terminate();
    assert_eq!(status.code(), Some(0), "exit: {status}");
    let log = sidecar.stderr();
    assert_no_secret("the sidecar's stderr", &log);
    log
}

#[test]
fn json_format_writes_one_object_a_line() {
    for (extra, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("NEARCACHE_LOG_FORMAT", "JSON")][..]),
    ] {
        let log = run_against_nothing(extra, env);
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.len() >= 3, "{log}");
        for line in &lines {
            assert!(
                line.starts_with('{')
                    && line.ends_with('}')
                    && line.contains("\"level\":\"")
                    && line.contains("\"fields\":{\"message\":\"")
                    && line.contains("\"timestamp\":\""),
                "not a JSON log line: {line}"
            );
        }
        for want in [
            "\"level\":\"INFO\",\"fields\":{\"message\":\"started\"",
            "\"level\":\"WARN\"",
            "\"message\":\"shutting down\"",
        ] {
            assert!(log.contains(want), "no {want} in:\n{log}");
        }
    }
}

#[test]
fn human_format_is_plain_text() {
    let log = run_against_nothing(&["--log-format", "human"], &[]);
    assert!(!log.contains('\u{1b}'), "no ANSI escapes: {log:?}");
    assert!(!log.contains("\"fields\""), "{log}");
    let started = log
        .lines()
        .find(|l| l.contains("started"))
        .expect("started");
    assert!(
        started.contains(" INFO nearcache: started version=") && started.contains(" upstream="),
        "{started}"
    );
}

#[test]
fn log_level_and_rust_log_choose_the_lines() {
    let started = "INFO nearcache: started";
    // --log-level warn: the unreachable upstream (warn), not the start-up line (info).
    let log = run_against_nothing(&["--log-level", "warn"], &[]);
    assert!(!log.contains(started), "{log}");
    assert!(log.contains("WARN"), "{log}");
    let log = run_against_nothing(&[], &[("NEARCACHE_LOG_LEVEL", "warn")]);
    assert!(!log.contains(started), "{log}");
    // RUST_LOG replaces the default...
    let log = run_against_nothing(&[], &[("RUST_LOG", "warn")]);
    assert!(!log.contains(started), "{log}");
    assert!(log.contains("WARN"), "{log}");
    let log = run_against_nothing(&[], &[("RUST_LOG", "error")]);
    assert!(!log.contains(started) && !log.contains("WARN"), "{log}");
    // ...and --log-level given explicitly wins over it.
    let log = run_against_nothing(&["--log-level", "info"], &[("RUST_LOG", "error")]);
    assert!(log.contains(started), "{log}");
    // The default is info.
    let log = run_against_nothing(&[], &[("RUST_LOG", "")]);
    assert!(log.contains(started), "{log}");
}

#[test]
fn bad_log_options_exit_64() {
    let listen = ["--listen", "127.0.0.1:0"];
    for (args, env, want) in [
        (
            &["--log-format", "xml"][..],
            &[][..],
            "--log-format: invalid log format \"xml\"",
        ),
        (
            &[][..],
            &[("NEARCACHE_LOG_FORMAT", "yaml")][..],
            "--log-format",
        ),
        (
            &["--log-level", "loud"][..],
            &[][..],
            "--log-level: invalid log level \"loud\"",
        ),
        (
            &[][..],
            &[("RUST_LOG", "nearcache=loud")][..],
            "RUST_LOG: invalid filter",
        ),
    ] {
        let all: Vec<&str> = listen.iter().chain(args).copied().collect();
        let out = run_nearcache(&all, env, Duration::from_secs(10));
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?} {env:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("nearcache: invalid configuration:") && out.stderr.contains(want),
            "{args:?} {env:?}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    }
}
