//! `/metrics`, `/healthz`, `/readyz` and the INFO sections move exactly as a scripted
//! workload says; readiness follows the upstream and the invalidation link.

use std::time::Duration;

use proto_tests::*;

fn scrape(sidecar: &Sidecar) -> String {
    let (status, body) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn value(text: &str, name: &str, labels: &str) -> f64 {
    metric(text, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} in:\n{text}"))
}

#[test]
fn a_scripted_workload_moves_every_figure_by_exactly_its_steps() {
    // Tracking off: no invalidation arrives from Redis at an unknown moment.
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut c = sidecar.conn();
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", "a", "1"]), b"+OK\r\n", "SET");
    assert_reply(&direct.cmd_str(&["SET", "p:1", "x"]), b"+OK\r\n", "SET");
    let before = scrape(&sidecar);
    assert_eq!(
        value(&before, "nearcache_cache_hits_total", "layer=\"l1\""),
        0.0
    );
    for _ in 0..3 {
        assert_reply(&c.cmd_str(&["GET", "a"]), &bulk(b"1"), "GET a");
    }
    assert_reply(&c.cmd_str(&["GET", "nope"]), b"$-1\r\n", "GET nope");
    assert_reply(&c.cmd_str(&["GET", "p:1"]), &bulk(b"x"), "GET p:1");
    let mget = c.cmd_str(&["MGET", "a", "nope", "b"]);
    assert_reply(&mget, b"*3\r\n$1\r\n1\r\n$-1\r\n$-1\r\n", "MGET");
    // Misses: a, nope, p:1, b = 4 (l2: a and p:1 held, nope and b not); hits: a twice,
    // then a and nope in the MGET = 4.
    assert_reply(
        &c.cmd_str(&["SET", "a", "2"]),
        b"+OK\r\n",
        "SET a (evicts a)",
    );
    let invalidated = c.cmd_str(&["NEARCACHE", "INVALIDATE", "p:*"]);
    assert_reply(&invalidated, b":1\r\n", "INVALIDATE p:*");
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "FLUSH"]),
        b"+OK\r\n",
        "FLUSH (nope, b)",
    );
    let m = scrape(&sidecar);
    for (name, labels, want) in [
        ("nearcache_cache_hits_total", "layer=\"l1\"", 4.0),
        ("nearcache_cache_misses_total", "layer=\"l1\"", 4.0),
        ("nearcache_cache_hits_total", "layer=\"l2\"", 2.0),
        ("nearcache_cache_misses_total", "layer=\"l2\"", 2.0),
        ("nearcache_l1_evictions_total", "reason=\"written\"", 1.0),
        (
            "nearcache_l1_evictions_total",
            "reason=\"invalidated\"",
            1.0,
        ),
        ("nearcache_l1_evictions_total", "reason=\"flushed\"", 2.0),
        ("nearcache_l1_evictions_total", "reason=\"size\"", 0.0),
        ("nearcache_l1_entries", "", 0.0),
        ("nearcache_commands_total", "command=\"get\"", 5.0),
        ("nearcache_commands_total", "command=\"mget\"", 1.0),
        ("nearcache_commands_total", "command=\"set\"", 1.0),
        ("nearcache_commands_total", "command=\"nearcache\"", 2.0),
        ("nearcache_clients_connected", "", 1.0),
        ("nearcache_upstream_link_up", "", 1.0),
        ("nearcache_upstream_in_flight", "", 0.0),
    ] {
        assert_eq!(value(&m, name, labels), want, "{name}{{{labels}}}");
    }
    // The bus publishes in the background: the SET's key and the pattern, once each.
    let out = |kind: &str| format!("direction=\"out\",kind=\"{kind}\",source=\"bus\"");
    poll_until(Duration::from_secs(5), "the bus messages are sent", || {
        let m = scrape(&sidecar);
        let sent = |kind| metric(&m, "nearcache_invalidation_messages_total", &out(kind));
        sent("key") == Some(1.0) && sent("pattern") == Some(1.0)
    });
    // The upstream latency histogram counts the SET under its own label.
    let sets = value(
        &m,
        "nearcache_upstream_request_duration_seconds_count",
        "command=\"set\"",
    );
    assert_eq!(sets, 1.0);
    assert!(metric(&m, "process_resident_memory_bytes", "").unwrap_or(0.0) > 0.0);
    // INFO shows the same figures.
    let info = c.info(Some("nearcache_l1"));
    assert!(info.starts_with("# Nearcache_L1\r\n"), "{info}");
    for (field, want) in [
        ("l1_hits", 4),
        ("l1_misses", 4),
        ("l2_hits", 2),
        ("l2_misses", 2),
        ("l1_evicted_written", 1),
        ("l1_evicted_invalidated", 1),
        ("l1_evicted_flushed", 2),
    ] {
        assert_eq!(info_u64(&info, field), want, "{field}: {info}");
    }
    assert!(
        !info.contains("# Nearcache_Upstream"),
        "one section: {info}"
    );
}

#[test]
fn info_nearcache_has_five_sections_and_each_is_selectable() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    let all = c.info(Some("nearcache"));
    let titles: Vec<&str> = all.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        titles,
        [
            "# Nearcache",
            "# Nearcache_L1",
            "# Nearcache_Upstream",
            "# Nearcache_Invalidation",
            "# Nearcache_Profiler"
        ]
    );
    for (name, title) in [
        ("nearcache_upstream", "# Nearcache_Upstream"),
        ("NEARCACHE_INVALIDATION", "# Nearcache_Invalidation"),
        ("nearcache_profiler", "# Nearcache_Profiler"),
    ] {
        let one = c.info(Some(name));
        assert!(
            one.starts_with(title) && one.matches('#').count() == 1,
            "{one}"
        );
    }
    // Combined with one of Redis's own sections.
    let both =
        String::from_utf8(bulk_reply(&c.cmd_str(&["INFO", "server", "nearcache_l1"])).unwrap())
            .unwrap();
    assert!(
        both.contains("redis_version:") && both.contains("# Nearcache_L1"),
        "{both}"
    );
}

#[test]
fn readiness_follows_the_upstream_and_the_invalidation_link() {
    let (mut redis, sidecar) = start_pair(&["--invalidation-heartbeat", "100ms"]);
    let addr = sidecar.metrics_addr().expect("metrics on");
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_owned()));
    poll_until(Duration::from_secs(5), "ready at start", || {
        http_get(addr, "/readyz").0 == 200
    });
    // The control connection silent (its PINGs unanswered) while the pools still answer
    // within --upstream-timeout: not ready, for the invalidation link.
    let mut direct = redis.conn();
    assert_reply(
        &direct.cmd_str(&["CLIENT", "PAUSE", "1500", "ALL"]),
        b"+OK\r\n",
        "PAUSE",
    );
    poll_until(
        Duration::from_secs(3),
        "not ready while the link is down",
        || http_get(addr, "/readyz") == (503, "not ready: invalidation link down\n".to_owned()),
    );
    poll_until(Duration::from_secs(10), "ready again", || {
        http_get(addr, "/readyz").0 == 200
    });
    // The upstream gone: not ready; back: ready.
    redis.kill();
    let mut c = sidecar.conn();
    c.cmd_str(&["GET", "k"]);
    poll_until(
        Duration::from_secs(10),
        "not ready while the upstream is down",
        || {
            let (status, body) = http_get(addr, "/readyz");
            status == 503 && body.contains("upstream unreachable")
        },
    );
    assert_eq!(http_get(addr, "/healthz").0, 200, "alive all along");
    redis.restart();
    poll_until(Duration::from_secs(15), "ready after the restart", || {
        let _ = sidecar.conn().cmd_str(&["GET", "k"]);
        http_get(addr, "/readyz").0 == 200
    });
    assert_eq!(
        info_u64(&sidecar.conn().info(Some("nearcache")), "ready"),
        1
    );
    let m = scrape(&sidecar);
    assert!(
        value(&m, "nearcache_l1_flushes_total", "cause=\"link_lost\"") >= 1.0,
        "{m}"
    );
}

#[test]
fn the_endpoint_refuses_what_it_does_not_serve() {
    let (_redis, sidecar) = start_pair(&[]);
    let addr = sidecar.metrics_addr().expect("metrics on");
    assert_eq!(http_get(addr, "/nope").0, 404);
    // Not HTTP at all: the connection is closed, the sidecar keeps serving.
    use std::io::Write;
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    // Off: no endpoint.
    let (_r2, off) = start_pair(&["--metrics-listen", "off"]);
    assert!(off.metrics_addr().is_none());
    assert_reply(&off.conn().cmd_str(&["PING"]), b"+PONG\r\n", "PING");
}

#[test]
fn latency_histograms_fill_under_load() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &["--tracking", "off"]);
    let b = Sidecar::start(redis.port(), &["--tracking", "off"]);
    let (mut ca, mut cb) = (a.conn(), b.conn());
    assert_reply(&ca.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    for _ in 0..640 {
        assert_reply(&cb.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
    }
    let m = scrape(&b);
    let lookups = value(&m, "nearcache_cache_lookup_duration_seconds_count", "");
    assert!(
        (9.0..=10.0).contains(&lookups),
        "one hit in 64 timed: {lookups}"
    );
    // Writes through A reach B over the bus (batched: a message may name many keys): their
    // lag is observed there.
    for i in 0..20 {
        assert_reply(
            &ca.cmd_str(&["SET", "k", &i.to_string()]),
            b"+OK\r\n",
            "SET",
        );
    }
    poll_until(
        Duration::from_secs(5),
        "B observed the bus messages' lag",
        || {
            metric(&scrape(&b), "nearcache_invalidation_lag_seconds_count", "").unwrap_or(0.0)
                >= 1.0
        },
    );
    let gets = value(
        &scrape(&b),
        "nearcache_upstream_request_duration_seconds_count",
        "command=\"get\"",
    );
    assert!(gets >= 1.0, "the fill's GET is timed: {gets}");
}

#[test]
fn the_profiler_shows_in_metrics_and_info() {
    let (_redis, sidecar) = start_pair(&["--slow-threshold", "50ms"]);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["DEBUG", "SLEEP", "0.1"]),
        b"+OK\r\n",
        "DEBUG SLEEP",
    );
    for i in 0..12 {
        c.cmd_str(&["GET", &format!("order:{i}:total")]);
    }
    poll_until(Duration::from_secs(5), "the N+1 is counted", || {
        metric(&scrape(&sidecar), "nearcache_n_plus_one_total", "") == Some(1.0)
    });
    let m = scrape(&sidecar);
    assert_eq!(
        value(&m, "nearcache_slow_commands_total", "command=\"other\""),
        1.0
    );
    let info = c.info(Some("nearcache_profiler"));
    assert_eq!(info_u64(&info, "slow_commands"), 1, "{info}");
    assert_eq!(info_u64(&info, "slowlog_len"), 1, "{info}");
    assert_eq!(info_u64(&info, "n_plus_one_detected"), 1, "{info}");
}

/// 200 connections stalled in their request line and 64 idle keep-alive connections do not
/// stop a scrape: the oldest connections not answering a request make room for it.
#[test]
fn a_scrape_answers_while_slow_and_idle_connections_are_open() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let (_redis, sidecar) = start_pair(&[]);
    let addr = sidecar.metrics_addr().expect("metrics on");
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.ends_with(b"ok\n") {
                let n = s.read(&mut buf).expect("a keep-alive answer");
                assert!(n > 0, "closed before answering");
                got.extend_from_slice(&buf[..n]);
            }
            s
        })
        .collect();
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    let started = std::time::Instant::now();
    let m = scrape(&sidecar);
    println!(
        "scrape with {} idle and {} slow connections open: {:?}",
        idle.len(),
        slow.len(),
        started.elapsed()
    );
    assert!(
        m.contains("nearcache_up") || m.contains("nearcache_"),
        "{m}"
    );
    assert_eq!(http_get(addr, "/healthz").0, 200);
}
