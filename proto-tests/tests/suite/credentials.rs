//! The sidecar's own credentials from files (`--upstream-username-file`,
//! `--upstream-password-file`): a password rotated as a Kubernetes Secret rotates (a new
//! file renamed over the old one) while clients run is used by every new upstream
//! connection (pooled, pinned, subscribed, the control connection), and no client sees an
//! error other than the connection drops Redis itself causes; bad files stop the start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use proto_tests::*;

const OLD: &str = "rotation-old-pass";
const NEW: &str = "rotation-new-pass";
const WAIT: Duration = Duration::from_secs(15);

/// Writes `content` to `dir/name` as Kubernetes does: a new file renamed over the old one.
fn write_secret(dir: &Path, name: &str, content: &str) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// What the clients saw: successes, drops (connections lost, as Redis's `CLIENT KILL`
/// causes; the sidecar's `upstream unavailable (connection ...)` for a request in flight on
/// a killed connection, or while its reconnect is under way), and any other error.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    drops: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Seen {
    /// Records an error reply: a drop if it is the sidecar's word for a lost connection,
    /// else a failure (a refused password among them).
    fn error(&self, what: &str, reply: &[u8]) {
        let text = String::from_utf8_lossy(reply).into_owned();
        let dropped = text.starts_with("-ERR nearcache: upstream unavailable")
            && !text.contains("authentication")
            && !text.contains("WRONGPASS");
        if dropped {
            self.drops.fetch_add(1, SeqCst);
        } else {
            self.errors.lock().push(format!("{what}: {text}"));
        }
    }
}

/// A client that SETs and GETs its own keys until `stop`; reconnects when dropped.
fn get_set_loop(sidecar: SocketAddr, id: usize, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut conn = Conn::connect(sidecar);
    let mut n = 0u64;
    while !stop.load(SeqCst) {
        n += 1;
        let (key, value) = (format!("rot:{id}:{}", n % 16), format!("v{n}"));
        let set = conn.try_send(&encode_command_str(&["SET", &key, &value]));
        let reply = set.and_then(|()| conn.try_read_reply());
        let Ok(reply) = reply else {
            seen.drops.fetch_add(1, SeqCst);
            conn = Conn::connect(sidecar);
            continue;
        };
        if reply != b"+OK\r\n" {
            seen.error("SET", &reply);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        for _ in 0..2 {
            // Twice: a miss, then (mostly) an L1 hit.
            let reply = conn.cmd_str(&["GET", &key]);
            if reply == bulk(value.as_bytes()) {
                seen.ok.fetch_add(1, SeqCst);
            } else {
                seen.error("GET", &reply);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A client that runs MULTI/SET/EXEC (a pinned upstream connection) until `stop`.
fn transaction_loop(sidecar: SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut conn = Conn::connect(sidecar);
    while !stop.load(SeqCst) {
        let mut batch = encode_command_str(&["MULTI"]);
        batch.extend(encode_command_str(&["INCR", "rot:tx"]));
        batch.extend(encode_command_str(&["EXEC"]));
        let replies = conn.try_send(&batch).and_then(|()| {
            (0..3)
                .map(|_| conn.try_read_reply())
                .collect::<std::io::Result<Vec<_>>>()
        });
        let Ok(replies) = replies else {
            seen.drops.fetch_add(1, SeqCst);
            conn = Conn::connect(sidecar);
            continue;
        };
        let good = replies[0] == b"+OK\r\n"
            && replies[1] == b"+QUEUED\r\n"
            && replies[2].starts_with(b"*1\r\n:");
        if good {
            seen.ok.fetch_add(1, SeqCst);
        } else if let Some(bad) = replies.iter().find(|r| r.starts_with(b"-")) {
            seen.error("MULTI/EXEC", bad);
            // What a transaction left open (an error after MULTI) is discarded.
            conn = Conn::connect(sidecar);
        } else {
            let shown: Vec<String> = replies.iter().map(|r| show(r)).collect();
            seen.errors.lock().push(format!("MULTI/EXEC: {shown:?}"));
        }
    }
}

/// A client subscribed to `rot:ch` until `stop`; when dropped it subscribes again, which
/// must succeed (a new pinned connection).
fn subscriber(sidecar: SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let subscribe = |seen: &Seen| loop {
        let mut conn = Conn::connect(sidecar);
        let reply = conn.cmd_str(&["SUBSCRIBE", "rot:ch"]);
        if reply.starts_with(b"*3\r\n$9\r\nsubscribe\r\n") {
            seen.ok.fetch_add(1, SeqCst);
            conn.set_read_timeout(Duration::from_millis(100));
            return conn;
        }
        seen.error("SUBSCRIBE", &reply);
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut conn = subscribe(&seen);
    while !stop.load(SeqCst) {
        match conn.try_read_reply() {
            Ok(msg) if msg.starts_with(b"*3\r\n$7\r\nmessage\r\n") => {}
            Ok(other) => seen.error("subscribed", &other),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                seen.drops.fetch_add(1, SeqCst);
                conn = subscribe(&seen);
            }
        }
    }
}

/// Kills the sidecar's connections on the server (those of user `app`) and waits until
/// the sidecar has new ones: a GET through it succeeds and the control connection (its
/// bus subscription, `sub=1`) is back, younger than the kill.
fn kill_and_wait_for_new_connections(redis: &Redis, sidecar: &Sidecar) {
    let mut admin = redis.conn();
    let before = int_reply(&admin.cmd_str(&["CLIENT", "ID"]));
    let killed = int_reply(&admin.cmd_str(&["CLIENT", "KILL", "USER", "app"]));
    assert!(killed > 0, "the sidecar's connections were killed");
    poll_until(
        WAIT,
        "the control connection is back with a new connection",
        || {
            let list = bulk_reply(&admin.cmd_str(&["CLIENT", "LIST"])).unwrap_or_default();
            String::from_utf8_lossy(&list).lines().any(|line| {
                let id: i64 = field(line, "id").parse().unwrap_or(0);
                id > before && field(line, "user") == "app" && field(line, "sub") == "1"
            })
        },
    );
    poll_until(WAIT, "the invalidation link is up", || link_up(sidecar));
}

/// Whether `INFO nearcache` says the invalidation link is up (an `INFO` that met a killed
/// connection is asked again; one refused for the sidecar's password fails the test).
fn link_up(sidecar: &Sidecar) -> bool {
    let reply = sidecar.conn().cmd_str(&["INFO", "nearcache"]);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        !text.contains("authentication failed"),
        "INFO through the sidecar: {text}"
    );
    reply.starts_with(b"$") && info_field(&text, "invalidation_link").as_deref() == Some("up")
}

/// `name=value` of a `CLIENT LIST` line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// A sidecar in front of `redis` logging in as `app` with the password [`OLD`], both from
/// files written in `dir` (rewrite `dir/password` to rotate it).
fn sidecar_with_files(redis: &Redis, dir: &tempdir::TempDir) -> Sidecar {
    let user = write_secret(dir.path(), "username", "app\n");
    let pass = write_secret(dir.path(), "password", &format!("{OLD}\n"));
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let (user_arg, pass_arg) = (user.display().to_string(), pass.display().to_string());
    Sidecar::start_url(
        &url,
        &[
            "--upstream-username-file",
            &user_arg,
            "--upstream-password-file",
            &pass_arg,
        ],
    )
}

/// A redis-server (started with `extra` too) with the ACL user `app` whose password is
/// [`OLD`], and a sidecar logging in as `app` from files in `dir`, its invalidation link up.
fn app_behind_sidecar(extra: &[&str], dir: &tempdir::TempDir) -> (Redis, Sidecar) {
    let pass = format!(">{OLD}");
    let user = ["--user", "app", "on", &pass, "~*", "&*", "+@all"];
    let redis = Redis::start_with(&[extra, &user[..]].concat());
    let sidecar = sidecar_with_files(&redis, dir);
    poll_until(WAIT, "the invalidation link is up", || link_up(&sidecar));
    (redis, sidecar)
}

#[test]
fn a_rotated_password_file_is_used_by_new_connections_and_no_client_sees_an_error() {
    let dir = tempdir::TempDir::new("credentials");
    let (redis, sidecar) = app_behind_sidecar(&[], &dir);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let addr = sidecar.addr();
    let mut clients = Vec::new();
    for id in 0..3 {
        let (stop, seen) = (stop.clone(), seen.clone());
        clients.push(std::thread::spawn(move || {
            get_set_loop(addr, id, stop, seen)
        }));
    }
    let (s, sn) = (stop.clone(), seen.clone());
    clients.push(std::thread::spawn(move || transaction_loop(addr, s, sn)));
    let (s, sn) = (stop.clone(), seen.clone());
    clients.push(std::thread::spawn(move || subscriber(addr, s, sn)));
    let progress = |what: &str| {
        let from = seen.ok.load(SeqCst);
        poll_until(WAIT, what, || seen.ok.load(SeqCst) >= from + 50);
    };
    progress("clients are served with the old password");

    // Both passwords valid; the file changes; new connections take the new one.
    let mut admin = redis.conn();
    let set = admin.cmd_str(&["ACL", "SETUSER", "app", &format!(">{NEW}")]);
    assert_reply(&set, b"+OK\r\n", "add the new password");
    write_secret(dir.path(), "password", &format!("{NEW}\n"));
    kill_and_wait_for_new_connections(&redis, &sidecar);
    progress("clients are served after the first kill");

    // The old password goes: every connection made from now on must use the new one.
    let del = admin.cmd_str(&["ACL", "SETUSER", "app", &format!("<{OLD}")]);
    assert_reply(&del, b"+OK\r\n", "remove the old password");
    kill_and_wait_for_new_connections(&redis, &sidecar);
    progress("clients are served after the old password is gone");
    // A new pinned connection and a new subscription, on new upstream connections.
    let mut late = sidecar.conn();
    assert_reply(&late.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(
        &late.cmd_str(&["SET", "late", "1"]),
        b"+QUEUED\r\n",
        "queued",
    );
    assert_reply(&late.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n", "EXEC");
    let mut sub = sidecar.conn();
    let reply = sub.cmd_str(&["SUBSCRIBE", "late:ch"]);
    assert!(
        reply.starts_with(b"*3\r\n$9\r\nsubscribe"),
        "{}",
        show(&reply)
    );
    admin.cmd_str(&["PUBLISH", "late:ch", "hello"]);
    let msg = sub.read_reply();
    assert!(msg.ends_with(b"$5\r\nhello\r\n"), "{}", show(&msg));

    stop.store(true, SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let errors = seen.errors.lock().clone();
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    eprintln!(
        "served {} requests; {} drops caused by CLIENT KILL",
        seen.ok.load(SeqCst),
        seen.drops.load(SeqCst)
    );
    let log = sidecar.stderr();
    assert!(log.contains("secret file changed"), "{log}");
    for secret in [OLD, NEW] {
        assert!(!log.contains(secret), "the log shows a password:\n{log}");
    }
}

#[test]
fn a_secret_file_that_is_missing_or_empty_at_start_is_a_configuration_error() {
    let dir = tempdir::TempDir::new("credentials-bad");
    let empty = write_secret(dir.path(), "empty", "\n");
    let missing = dir.path().join("missing");
    for (flag, path) in [
        ("--upstream-password-file", &empty),
        ("--upstream-password-file", &missing),
        ("--upstream-username-file", &missing),
        ("--sentinel-password-file", &empty),
    ] {
        let path = path.display().to_string();
        let mut args = vec!["--upstream", "redis://:x@127.0.0.1:1", flag, &path];
        if flag == "--upstream-password-file" {
            args[1] = "redis://127.0.0.1:1";
        }
        if flag.starts_with("--sentinel") {
            args[1] = "redis+sentinel://127.0.0.1:1/mymaster";
        }
        let out = run_nearcache(&args, &[], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(64), "{flag} {path}: {}", out.stderr);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(&path),
            "{flag}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_secret_given_twice_is_a_configuration_error() {
    let dir = tempdir::TempDir::new("credentials-twice");
    let file = write_secret(dir.path(), "secret", "from-file-secret\n");
    let file = file.display().to_string();
    for (args, flag) in [
        (
            vec![
                "--upstream",
                "redis://app:url-pass@127.0.0.1:1",
                "--upstream-password-file",
                &file,
            ],
            "--upstream-password-file",
        ),
        (
            vec![
                "--upstream",
                "redis://app:url-pass@127.0.0.1:1",
                "--upstream-username-file",
                &file,
            ],
            "--upstream-username-file",
        ),
        (
            vec![
                "--upstream",
                "redis+sentinel://127.0.0.1:1/mymaster",
                "--sentinel-password",
                "given-value-7x",
                "--sentinel-password-file",
                &file,
            ],
            "--sentinel-password-file",
        ),
        (
            vec![
                "--upstream",
                "redis://127.0.0.1:1",
                "--upstream-username-file",
                &file,
            ],
            "--upstream-username-file",
        ),
    ] {
        let out = run_nearcache(&args, &[], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(flag), "{args:?}: {}", out.stderr);
        for secret in ["url-pass", "given-value-7x", "from-file-secret"] {
            assert!(!out.stderr.contains(secret), "{}", out.stderr);
        }
    }
}

#[test]
fn a_client_sending_no_credentials_is_served_as_the_files_user() {
    // The default user needs a password the sidecar does not have: only the files' user
    // gets in.
    let dir = tempdir::TempDir::new("credentials-anonymous");
    let (_redis, sidecar) = app_behind_sidecar(&["--requirepass", "not-the-sidecars-pass"], &dir);
    let mut c = sidecar.conn();
    // HELLO with an option is checked by the upstream on a fresh connection, which logs in
    // with the files' credentials as every connection of the sidecar's own does.
    let hello = c.cmd_str(&["HELLO", "3", "SETNAME", "app-client"]);
    assert!(hello.starts_with(b"%"), "HELLO: {}", show(&hello));
    let info = c.cmd_str(&["INFO", "nearcache"]);
    assert!(bulk_reply(&info).is_some(), "INFO: {}", show(&info));
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
}
