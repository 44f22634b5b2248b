//! Reload on SIGHUP: the sidecar reads its `--config` file again, applies what can change at
//! run time (log level, slow log, N+1 detection, ACL re-check, audit rate) without dropping
//! a client, logs each other changed option as needing a restart, and keeps running on the
//! old values when the new file is invalid, logging every problem.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use proto_tests::tempdir::TempDir;
use proto_tests::*;

const WAIT: Duration = Duration::from_secs(15);

/// A config file in a scratch directory, rewritten by the tests.
struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = TempDir::new("reload");
        let path = dir.path().join("nearcache.toml");
        let file = ConfigFile { _dir: dir, path };
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write the config file");
    }

    fn path(&self) -> String {
        self.path.display().to_string()
    }
}

fn sighup(sidecar: &Sidecar) {
    let status = Command::new("kill")
        .args(["-HUP", &sidecar.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP failed: {status}");
}

/// The value of `name` in `INFO nearcache`, asked on `conn`.
fn info_field(conn: &mut Conn, name: &str) -> String {
    let info = conn.info(Some("nearcache"));
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in INFO nearcache:\n{info}"))
        .to_owned()
}

/// Waits (on `conn`, bounded) until INFO's `name` reads `value`.
fn wait_info(conn: &mut Conn, name: &str, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = info_field(conn, name);
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "INFO {name} is {now}, waited for {value}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until the sidecar's stderr holds `text`.
fn wait_log(sidecar: &Sidecar, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !sidecar.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "stderr never said {text:?}:\n{}",
            sidecar.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_run_time_options_and_keeps_connected_clients() {
    let redis = Redis::start();
    let file = ConfigFile::new("log_level = \"warn\"\nslow_threshold = \"10ms\"\n");
    let sidecar = Sidecar::start(redis.port(), &["--config", &file.path()]);
    let mut conn = sidecar.conn();
    assert_eq!(conn.cmd_str(&["SET", "k", "v1"]), b"+OK\r\n");
    assert_eq!(info_field(&mut conn, "slow_threshold_us"), "10000");
    assert_eq!(info_field(&mut conn, "slowlog_max_len"), "128");
    assert_eq!(info_field(&mut conn, "n_plus_one_threshold"), "10");
    assert_eq!(info_field(&mut conn, "config_reloads"), "0");
    assert!(
        !sidecar.stderr().contains(" INFO "),
        "log_level warn writes no INFO line:\n{}",
        sidecar.stderr()
    );

    file.write(
        "log_level = \"info\"\nslow_threshold = \"0\"\nslowlog_max_len = 5\n\
         n_plus_one_threshold = 3\n",
    );
    sighup(&sidecar);
    wait_info(&mut conn, "config_reloads", "1");

    // The same connection goes on, with the new values in force.
    assert_eq!(info_field(&mut conn, "slow_threshold_us"), "0");
    assert_eq!(info_field(&mut conn, "slowlog_max_len"), "5");
    assert_eq!(info_field(&mut conn, "n_plus_one_threshold"), "3");
    assert_eq!(info_field(&mut conn, "config_reload_failures"), "0");
    for i in 0..8 {
        let v = format!("v{i}");
        assert_eq!(conn.cmd_str(&["SET", "k", &v]), b"+OK\r\n");
        assert_eq!(conn.cmd_str(&["GET", "k"]), bulk(v.as_bytes()));
    }
    // A zero threshold logs every upstream call; the log keeps 5 entries.
    let len = int_reply(&conn.cmd_str(&["NEARCACHE", "SLOWLOG", "LEN"]));
    assert_eq!(len, 5, "slow log length after the reload");

    // Written at the new level (info): one line per option and the summary.
    let log = sidecar.stderr();
    for line in [
        "reload: log_level warn -> info",
        "reload: slow_threshold 10ms -> 0ns",
        "reload: slowlog_max_len 128 -> 5",
        "reload: n_plus_one_threshold 10 -> 3",
        "reload: 4 options applied, 0 need a restart",
    ] {
        assert!(log.contains(line), "no {line:?} in stderr:\n{log}");
    }
    let metrics = sidecar.metrics_addr().expect("metrics on");
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let ok = metric(&body, "nearcache_config_reloads_total", "result=\"ok\"");
    assert_eq!(ok, Some(1.0), "/metrics:\n{body}");
}

#[test]
fn invalid_file_on_sighup_keeps_the_running_values_and_logs_every_problem() {
    let redis = Redis::start();
    let file = ConfigFile::new("slow_threshold = \"10ms\"\n");
    let sidecar = Sidecar::start(redis.port(), &["--config", &file.path()]);
    let mut conn = sidecar.conn();
    assert_eq!(conn.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");

    file.write("slow_threshold = \"soon\"\nn_plus_one_window = \"0\"\nslowlog_max_len = 7\n");
    sighup(&sidecar);
    wait_info(&mut conn, "config_reload_failures", "1");
    assert_eq!(info_field(&mut conn, "config_reloads"), "0");
    assert_eq!(info_field(&mut conn, "slow_threshold_us"), "10000");
    assert_eq!(
        info_field(&mut conn, "slowlog_max_len"),
        "128",
        "a valid option in an invalid file is not applied either"
    );
    assert_eq!(conn.cmd_str(&["GET", "k"]), bulk(b"v"));
    let log = sidecar.stderr();
    for text in [
        "reload: invalid configuration (2 problem(s)); the running configuration stays",
        "reload: --slow-threshold:",
        "reload: --n-plus-one-window:",
    ] {
        assert!(log.contains(text), "no {text:?} in stderr:\n{log}");
    }
    let metrics = sidecar.metrics_addr().expect("metrics on");
    let (_, body) = http_get(metrics, "/metrics");
    let invalid = metric(
        &body,
        "nearcache_config_reloads_total",
        "result=\"invalid\"",
    );
    assert_eq!(invalid, Some(1.0), "/metrics:\n{body}");

    // Fixed, it applies on the next SIGHUP.
    file.write("slow_threshold = \"5ms\"\n");
    sighup(&sidecar);
    wait_info(&mut conn, "config_reloads", "1");
    assert_eq!(info_field(&mut conn, "slow_threshold_us"), "5000");
    wait_log(&sidecar, "reload: slow_threshold 10ms -> 5ms");
}

#[test]
fn changed_listen_address_is_logged_as_needing_a_restart() {
    let redis = Redis::start();
    let base = format!("listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n", redis.url());
    let file = ConfigFile::new(&base);
    let sidecar = Sidecar::start_config_file(&file.path(), &[]);
    let mut conn = sidecar.conn();
    assert_eq!(conn.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");

    let moved = format!(
        "listen = \"127.0.0.1:{}\"\nupstream = \"{}\"\nl1_ttl = \"5s\"\naudit_rate = 0.5\n",
        free_port(),
        redis.url()
    );
    file.write(&moved);
    sighup(&sidecar);
    wait_info(&mut conn, "config_reloads", "1");
    wait_log(&sidecar, "reload: 1 option applied, 2 need a restart");
    let log = sidecar.stderr();
    for line in [
        "reload: listen changed; takes effect after a restart",
        "reload: l1_ttl changed; takes effect after a restart",
        "reload: audit_rate 0.001 -> 0.5",
    ] {
        assert!(log.contains(line), "no {line:?} in stderr:\n{log}");
    }
    assert_eq!(info_field(&mut conn, "audit_rate"), "0.5");
    // Still on the old address, old and new connections alike.
    assert_eq!(conn.cmd_str(&["GET", "k"]), bulk(b"v"));
    assert_eq!(sidecar.conn().cmd_str(&["GET", "k"]), bulk(b"v"));
}
