//! Warming: `[warm] patterns` at start, `NEARCACHE WARM`, peers' hot keys, re-warming
//! after a link-loss flush, `/readyz` with `warm_before_ready`, and their bounds. Whether a
//! key was loaded is read from the upstream's own counts: a warmed key is a hit, so reading
//! it through the sidecar adds no GET or MGET upstream.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use proto_tests::tempdir::TempDir;
use proto_tests::*;

/// A sidecar in front of `redis` with `toml` as its config file (kept in `dir`).
fn start_with(redis: &Redis, dir: &TempDir, toml: &str, extra: &[&str]) -> Sidecar {
    let file = dir.path().join("nearcache.toml");
    fs::write(&file, toml).unwrap();
    let file = file.display().to_string();
    let mut args = vec!["--config", &file];
    args.extend_from_slice(extra);
    Sidecar::start(redis.port(), &args)
}

fn warm_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache_l1"))
}

/// Waits until the warmings started so far are over, and returns the section.
fn wait_done(sidecar: &Sidecar, runs: u64) -> String {
    let mut text = String::new();
    poll_until(Duration::from_secs(20), "the warming ends", || {
        text = warm_info(sidecar);
        let state = info_field(&text, "warm_state").unwrap_or_default();
        info_u64(&text, "warm_runs") >= runs && (state == "done" || state == "failed")
    });
    assert_eq!(
        info_field(&text, "warm_state").as_deref(),
        Some("done"),
        "{text}"
    );
    text
}

/// `SET prefix:i value` for `i` in `0..n`, directly.
fn fill(redis: &Redis, prefix: &str, n: usize, value: &str) {
    let mut direct = redis.conn();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        assert_eq!(direct.cmd_str(&["SET", &key, value]), b"+OK\r\n");
    }
}

/// GET and MGET calls the upstream ran.
fn reads(redis: &Redis) -> u64 {
    commandstat_calls(redis, "get") + commandstat_calls(redis, "mget")
}

/// Reads `prefix:i` for `i` in `0..n` through the sidecar (checking the value) and returns
/// how many of them went upstream.
fn misses(redis: &Redis, sidecar: &Sidecar, prefix: &str, n: usize, value: &str) -> u64 {
    let before = reads(redis);
    let mut c = sidecar.conn();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        assert_reply(&c.cmd_str(&["GET", &key]), &bulk(value.as_bytes()), &key);
    }
    reads(redis) - before
}

#[test]
fn pattern_warming_loads_exactly_the_matching_keys() {
    let redis = Redis::start();
    fill(&redis, "warm", 50, "w");
    fill(&redis, "other", 20, "o");
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"warm:*\"]\nfrom_peers = false\nbatch = 7\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let info = wait_done(&sidecar, 1);
    assert_eq!(info_u64(&info, "warm_keys_loaded"), 50, "{info}");
    assert!(info_u64(&info, "warm_bytes_loaded") > 50 * 6, "{info}");
    assert_eq!(
        misses(&redis, &sidecar, "warm", 50, "w"),
        0,
        "warmed keys are hits"
    );
    assert_eq!(
        misses(&redis, &sidecar, "other", 20, "o"),
        20,
        "others were not loaded"
    );
    let metrics = http_get(sidecar.metrics_addr().unwrap(), "/metrics").1;
    let loaded = metric(&metrics, "nearcache_warm_keys_loaded_total", "");
    assert_eq!(loaded, Some(50.0), "/metrics shows what INFO shows");
    let log = sidecar.stderr();
    assert!(
        log.contains("warming started (start-up, 1 pattern(s))"),
        "{log}"
    );
    assert!(
        log.contains("warming done (start-up, 1 pattern(s)): 50 keys"),
        "{log}"
    );
}

#[test]
fn warming_stops_at_max_keys_and_max_bytes() {
    let redis = Redis::start();
    fill(&redis, "k", 30, "v");
    let value = "x".repeat(100);
    fill(&redis, "b", 30, &value);
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"k:*\"]\nfrom_peers = false\nmax_keys = 10\nbatch = 4\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let info = wait_done(&sidecar, 1);
    assert_eq!(info_u64(&info, "warm_keys_loaded"), 10, "{info}");
    assert_eq!(misses(&redis, &sidecar, "k", 30, "v"), 20);

    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"b:*\"]\nfrom_peers = false\nmax_bytes = 1000\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let info = wait_done(&sidecar, 1);
    let (keys, bytes) = (
        info_u64(&info, "warm_keys_loaded"),
        info_u64(&info, "warm_bytes_loaded"),
    );
    // Each entry: a 3-4 byte key and a 107-byte encoded value.
    assert!(bytes <= 1000 && (8..=9).contains(&keys), "{info}");
    assert_eq!(misses(&redis, &sidecar, "b", 30, &value), 30 - keys);
}

/// `NEARCACHE WARM pattern` through `c`: its reply, and the bytes the upstream sent to its
/// clients meanwhile.
fn warm_and_count_output(redis: &Redis, c: &mut Conn, pattern: &str) -> (Vec<u8>, u64) {
    let output = || info_u64(&redis.conn().info(Some("stats")), "total_net_output_bytes");
    let before = output();
    let reply = c.cmd_str(&["NEARCACHE", "WARM", pattern]);
    (reply, output() - before)
}

#[test]
fn warming_never_fetches_values_l1_would_not_hold() {
    let redis = Redis::start();
    let huge = "h".repeat(5 << 20); // over the 4 MiB an L1 entry may hold
    let mut direct = redis.conn();
    for i in 0..4 {
        let key = format!("big:huge:{i}");
        assert_eq!(direct.cmd_str(&["SET", &key, &huge]), b"+OK\r\n");
    }
    fill(&redis, "big:s", 10, "v");
    assert_eq!(direct.cmd_str(&["HSET", "big:hash", "f", "v"]), b":1\r\n");
    let dir = TempDir::new("warming");
    let toml = "[warm]\nfrom_peers = false\nbatch = 5\nmax_bytes = \"2MiB\"\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();

    let (loaded, sent) = warm_and_count_output(&redis, &mut c, "big:*");
    assert_eq!(loaded, b":10\r\n");
    assert!(
        sent < 256 << 10,
        "the 5 MiB values were fetched: {sent} bytes sent"
    );
    assert_eq!(misses(&redis, &sidecar, "big:s", 10, "v"), 0);

    // A value L1 could hold but the byte budget cannot: not fetched either, and the
    // warming ends full.
    let mid = "m".repeat(3 << 20);
    assert_eq!(direct.cmd_str(&["SET", "mid:0", &mid]), b"+OK\r\n");
    let (loaded, sent) = warm_and_count_output(&redis, &mut c, "mid:*");
    assert_eq!(loaded, b":0\r\n");
    assert!(
        sent < 256 << 10,
        "the 3 MiB value was fetched: {sent} bytes sent"
    );
    // Both still read correctly through the sidecar.
    let got = c.cmd_str(&["GET", "big:huge:0"]);
    assert_eq!(got.len(), bulk(huge.as_bytes()).len());
    assert_reply(
        &c.cmd_str(&["GET", "mid:0"]),
        &bulk(mid.as_bytes()),
        "mid:0",
    );
}

#[test]
fn the_rate_bounds_how_fast_keys_are_fetched() {
    let redis = Redis::start();
    fill(&redis, "r", 400, "v");
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"r:*\"]\nfrom_peers = false\nrate = 200\nbatch = 100\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut running = false;
    poll_until(
        Duration::from_secs(5),
        "the warming shows as running",
        || {
            let info = warm_info(&sidecar);
            running |= info_field(&info, "warm_state").as_deref() == Some("running");
            running || info_field(&info, "warm_state").as_deref() == Some("done")
        },
    );
    let info = wait_done(&sidecar, 1);
    assert_eq!(info_u64(&info, "warm_keys_loaded"), 400, "{info}");
    // One batch is free, the other 300 keys come at 200 a second: at least 1.5 s.
    let ms = info_u64(&info, "warm_last_duration_ms");
    assert!(ms >= 1400, "400 keys at 200/s took {ms} ms");
    assert!(running, "INFO showed the warming running");
}

#[test]
fn nearcache_warm_loads_a_pattern_with_a_limit_one_at_a_time() {
    let redis = Redis::start();
    fill(&redis, "cmd", 40, "c");
    fill(&redis, "slow", 50, "s");
    let dir = TempDir::new("warming");
    let toml = "[warm]\nfrom_peers = false\nrate = 10\nbatch = 5\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();
    for (args, want) in [
        (
            &["NEARCACHE", "WARM"][..],
            "-ERR wrong number of arguments for 'nearcache|warm' command\r\n",
        ),
        (
            &["NEARCACHE", "WARM", "a", "b"],
            "-ERR wrong number of arguments for 'nearcache|warm' command\r\n",
        ),
        (
            &["NEARCACHE", "WARM", "a", "LIMIT", "0"],
            "-ERR LIMIT must be a positive integer\r\n",
        ),
        (
            &["NEARCACHE", "WARM", "a", "TOP", "3"],
            "-ERR syntax error\r\n",
        ),
        (
            &["NEARCACHE", "WARM", "a["],
            "-ERR bad pattern: unclosed character class\r\n",
        ),
    ] {
        let reply = c.cmd_str(args);
        assert!(
            reply.starts_with(&want.as_bytes()[..10]),
            "{args:?}: {}",
            show(&reply)
        );
    }
    assert_eq!(
        c.cmd_str(&["NEARCACHE", "WARM", "cmd:*", "LIMIT", "5"]),
        b":5\r\n"
    );
    assert_eq!(misses(&redis, &sidecar, "cmd", 40, "c"), 35);
    assert_eq!(info_u64(&warm_info(&sidecar), "warm_last_keys"), 5);

    // 50 keys at 10 a second: a few seconds, while a second warming is refused.
    let port = sidecar.port();
    let slow = thread::spawn(move || {
        let mut c = Conn::connect(([127, 0, 0, 1], port).into());
        c.set_read_timeout(Duration::from_secs(30));
        c.cmd_str(&["NEARCACHE", "WARM", "slow:*"])
    });
    poll_until(Duration::from_secs(5), "the warming runs", || {
        info_field(&warm_info(&sidecar), "warm_state").as_deref() == Some("running")
    });
    let reply = c.cmd_str(&["NEARCACHE", "WARM", "cmd:*"]);
    assert!(
        reply.starts_with(b"-ERR a warming is already running"),
        "{}",
        show(&reply)
    );
    let loaded = info_u64(&warm_info(&sidecar), "warm_keys_loaded");
    assert!(loaded < 5 + 50, "progress shows while it runs: {loaded}");
    assert_eq!(slow.join().unwrap(), b":50\r\n");
    assert_eq!(misses(&redis, &sidecar, "slow", 50, "s"), 0);
}

#[test]
fn a_warmed_entry_follows_writes_made_directly_to_redis() {
    let redis = Redis::start();
    fill(&redis, "co", 5, "old");
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"co:*\"]\nfrom_peers = false\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    wait_done(&sidecar, 1);
    assert_eq!(misses(&redis, &sidecar, "co", 5, "old"), 0);
    let mut direct = redis.conn();
    assert_eq!(direct.cmd_str(&["SET", "co:3", "new"]), b"+OK\r\n");
    let mut c = sidecar.conn();
    poll_until(
        Duration::from_secs(2),
        "the write reaches the warmed entry",
        || c.cmd_str(&["GET", "co:3"]) == bulk(b"new"),
    );
}

#[test]
fn readyz_waits_for_the_startup_warming_with_warm_before_ready() {
    let redis = Redis::start();
    fill(&redis, "ready", 60, "r");
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"ready:*\"]\nfrom_peers = false\nrate = 20\nbatch = 5\n\
                warm_before_ready = true\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let metrics = sidecar.metrics_addr().expect("a metrics address");
    // The upstream link may not be counted up yet at the first probe.
    poll_until(Duration::from_secs(5), "not ready while warming", || {
        http_get(metrics, "/readyz") == (503, "not ready: warming\n".to_owned())
    });
    let info = warm_info(&sidecar);
    assert_eq!(info_u64(&info, "warm_holds_ready"), 1);
    assert_eq!(info_field(&info, "warm_state").as_deref(), Some("running"));
    let started = Instant::now();
    poll_until(Duration::from_secs(20), "ready after the warming", || {
        http_get(metrics, "/readyz").0 == 200
    });
    assert_eq!(
        info_field(&warm_info(&sidecar), "warm_state").as_deref(),
        Some("done")
    );
    assert_eq!(info_u64(&warm_info(&sidecar), "warm_keys_loaded"), 60);
    println!("ready {:?} after the first 503", started.elapsed());
}

/// Reads the `hot:i` keys `n` times each (and a few cold ones once) through `c`.
fn skewed_workload(c: &mut Conn, hot: usize, n: usize) {
    for round in 0..n {
        for i in 0..hot {
            assert_eq!(c.cmd_str(&["GET", &format!("hot:{i}")]), bulk(b"h"));
        }
        assert_eq!(c.cmd_str(&["GET", &format!("cold:{round}")]), bulk(b"c"));
    }
}

#[test]
fn a_starting_sidecar_loads_its_peers_hottest_keys_from_the_upstream() {
    let redis = Redis::start();
    fill(&redis, "hot", 10, "h");
    fill(&redis, "cold", 200, "c");
    // Asks are answered only on a keyed bus.
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let a = Sidecar::start(redis.port(), &["--bus-key-file", &key]);
    skewed_workload(&mut a.conn(), 10, 200);
    let hot = a.conn().cmd_str(&["NEARCACHE", "HOTKEYS", "10"]);
    assert!(
        String::from_utf8_lossy(&hot).matches("hot:").count() == 10,
        "{}",
        show(&hot)
    );

    let b = Sidecar::start(redis.port(), &["--bus-key-file", &key]);
    let info = wait_done(&b, 1);
    assert_eq!(info_u64(&info, "warm_peer_answers"), 1, "{info}");
    assert!(info_u64(&info, "warm_peer_keys") >= 10, "{info}");
    assert!(info_u64(&info, "warm_keys_loaded") >= 10, "{info}");
    let before = (
        commandstat_calls(&redis, "get"),
        commandstat_calls(&redis, "mget"),
    );
    assert_eq!(
        misses(&redis, &b, "hot", 10, "h"),
        0,
        "B's first reads are hits"
    );
    let after = (
        commandstat_calls(&redis, "get"),
        commandstat_calls(&redis, "mget"),
    );
    assert_eq!(before, after);
    let bus = a.conn().info(Some("nearcache_invalidation"));
    assert_eq!(info_u64(&bus, "bus_hot_asks_received"), 1, "{bus}");
    assert_eq!(info_u64(&bus, "bus_hot_answers_sent"), 1, "{bus}");
}

#[test]
fn hot_keys_are_loaded_again_after_a_link_loss_flush() {
    let redis = Redis::start();
    fill(&redis, "hot", 10, "h");
    fill(&redis, "cold", 100, "c");
    let sidecar = Sidecar::start(redis.port(), &[]);
    let mut c = sidecar.conn();
    skewed_workload(&mut c, 10, 100);
    let mut direct = redis.conn();
    let list = String::from_utf8(direct.cmd_str(&["CLIENT", "LIST"])).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(" name=nearcache-control "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no control connection in CLIENT LIST:\n{list}"))
        .to_owned();
    assert_eq!(direct.cmd_str(&["CLIENT", "KILL", "ID", &id]), b":1\r\n");
    poll_until(Duration::from_secs(10), "the flush is re-warmed", || {
        let info = warm_info(&sidecar);
        info_u64(&info, "warm_rewarms") >= 1
            && info_field(&info, "warm_state").as_deref() == Some("done")
    });
    let info = warm_info(&sidecar);
    assert!(info_u64(&info, "warm_keys_loaded") >= 10, "{info}");
    let inv = c.info(Some("nearcache_invalidation"));
    assert!(info_u64(&inv, "l1_flushes_link_lost") >= 1, "{inv}");
    assert_eq!(info_field(&inv, "invalidation_link").as_deref(), Some("up"));
    assert_eq!(
        misses(&redis, &sidecar, "hot", 10, "h"),
        0,
        "hot keys are hits"
    );
    assert!(sidecar
        .stderr()
        .contains("warming done (re-warm after a link-loss flush"));
}

/// Kills the sidecar's pooled upstream connections (not the control connection).
fn kill_pool_connections(redis: &Redis) {
    let reply = redis.conn().cmd_str(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(int_reply(&reply) >= 1, "{}", show(&reply));
}

#[test]
fn hot_keys_are_loaded_again_after_the_upstream_link_is_lost() {
    let redis = Redis::start();
    fill(&redis, "hot", 10, "h");
    fill(&redis, "cold", 100, "c");
    let sidecar = Sidecar::start(redis.port(), &[]);
    skewed_workload(&mut sidecar.conn(), 10, 100);
    kill_pool_connections(&redis);
    poll_until(Duration::from_secs(10), "the flush is re-warmed", || {
        let info = warm_info(&sidecar);
        info_u64(&info, "warm_rewarms") >= 1
            && info_field(&info, "warm_state").as_deref() == Some("done")
    });
    assert_eq!(
        misses(&redis, &sidecar, "hot", 10, "h"),
        0,
        "hot keys are hits"
    );
}

#[test]
fn a_warming_resumes_after_its_upstream_connection_is_killed() {
    let redis = Redis::start();
    fill(&redis, "res", 50, "r");
    let dir = TempDir::new("warming");
    let toml = "[warm]\nfrom_peers = false\nrate = 20\nbatch = 5\nrewarm = false\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let port = sidecar.port();
    let warming = thread::spawn(move || {
        let mut c = Conn::connect(([127, 0, 0, 1], port).into());
        c.set_read_timeout(Duration::from_secs(30));
        c.cmd_str(&["NEARCACHE", "WARM", "res:*"])
    });
    poll_until(Duration::from_secs(5), "some keys loaded", || {
        info_u64(&warm_info(&sidecar), "warm_keys_loaded") >= 10
    });
    kill_pool_connections(&redis);
    assert_eq!(warming.join().unwrap(), b":50\r\n");
    let info = warm_info(&sidecar);
    assert_eq!(
        info_field(&info, "warm_state").as_deref(),
        Some("done"),
        "{info}"
    );
    assert_eq!(info_u64(&info, "warm_failures"), 0, "{info}");
}

#[test]
fn shutdown_stops_a_running_warming_promptly() {
    let redis = Redis::start();
    fill(&redis, "stop", 200, "s");
    let dir = TempDir::new("warming");
    let toml = "[warm]\npatterns = [\"stop:*\"]\nfrom_peers = false\nrate = 10\nbatch = 5\n";
    let mut sidecar = start_with(&redis, &dir, toml, &[]);
    let port = sidecar.port();
    poll_until(Duration::from_secs(5), "the start-up warming runs", || {
        info_field(&warm_info(&sidecar), "warm_state").as_deref() == Some("running")
    });
    let command = thread::spawn(move || {
        let mut c = Conn::connect(([127, 0, 0, 1], port).into());
        c.cmd_str(&["NEARCACHE", "WARM", "stop:*"])
    });
    thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    sidecar.send_sigterm();
    let status = sidecar.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    let reply = command.join().unwrap();
    assert!(
        reply.starts_with(b"-ERR a warming is already running"),
        "{}",
        show(&reply)
    );
    let log = sidecar.stderr();
    assert!(
        log.contains("warming stopped by shutdown (start-up"),
        "{log}"
    );
}
