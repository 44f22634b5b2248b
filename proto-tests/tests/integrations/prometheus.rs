//! The monitoring kit against real tools: `promtool` checks and unit-tests the alert rules
//! (deploy/helm/nearcache/files/nearcache-rules.yaml, which the chart's PrometheusRule
//! renders), and a real Prometheus scrapes a sidecar's `/metrics` under a workload, loads the
//! rules and evaluates every PromQL expression of the Grafana dashboard
//! (deploy/helm/nearcache/files/nearcache-dashboard.json) and of the rules through its HTTP
//! API.
//!
//! Needs `prometheus` and `promtool` on PATH (scripts/ensure-prometheus.sh installs them).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto_tests::tempdir::TempDir;
use proto_tests::*;

const RULES: &str = "deploy/helm/nearcache/files/nearcache-rules.yaml";
const RULES_TEST: &str = "deploy/helm/nearcache/files/nearcache-rules.test.yaml";
const DASHBOARD: &str = "deploy/helm/nearcache/files/nearcache-dashboard.json";

/// Grafana variables and what they become in the test (every target selected, the rate
/// window 15 scrapes of 1 s).
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("${__rate_interval}", "15s"),
    ("$__rate_interval", "15s"),
    ("${__interval}", "5s"),
    ("$__interval", "5s"),
    ("${__range}", "1m"),
    ("$__range", "1m"),
    ("${namespace}", ".*"),
    ("$namespace", ".*"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
    ("${pod}", ".*"),
    ("$pod", ".*"),
];

/// Metrics the expressions use that /metrics may not export, and why (the Sentinel and
/// Cluster families, exported only for those upstreams). While one is not
/// exported, the expressions using it may return nothing; once it is, they must return
/// data like every other.
const MAY_BE_MISSING: &[(&str, &str)] = &[
    (
        "nearcache_sentinel_primary_known",
        "only a redis+sentinel:// upstream exports the sentinel families",
    ),
    (
        "nearcache_sentinel_sentinels",
        "only a redis+sentinel:// upstream exports the sentinel families",
    ),
    (
        "nearcache_sentinel_failovers_total",
        "only a redis+sentinel:// upstream exports the sentinel families",
    ),
    (
        "nearcache_cluster_nodes",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_topology_epoch",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_refresh_requests_total",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_slots_moved_total",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_redirects_total",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_node_requests_total",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
    (
        "nearcache_cluster_node_latency_microseconds_total",
        "only a redis+cluster:// upstream exports the cluster families",
    ),
];

/// What the workload produces, as Prometheus must see it (each sum > 0).
const WORKLOAD_SHOWS: &[(&str, &str)] = &[
    ("nearcache_cache_hits_total", "L1 and L2 hits"),
    (
        "nearcache_namespace_hits_total{cache_namespace=\"k\"}",
        "L1 hits of the k namespace",
    ),
    ("nearcache_warm_keys_loaded_total", "NEARCACHE WARM"),
    (
        "nearcache_cache_misses_total{layer=\"l2\"}",
        "keys Redis did not hold",
    ),
    (
        "nearcache_l1_evictions_total{reason=\"written\"}",
        "SETs through the sidecar",
    ),
    (
        "nearcache_l1_evictions_total{reason=\"invalidated\"}",
        "writes behind its back",
    ),
    (
        "nearcache_l1_evictions_total{reason=\"flushed\"}",
        "NEARCACHE FLUSH",
    ),
    (
        "nearcache_invalidation_messages_total{source=\"tracking\", direction=\"in\"}",
        "tracking",
    ),
    (
        "nearcache_invalidation_messages_total{source=\"bus\", direction=\"in\"}",
        "bus messages",
    ),
    (
        "nearcache_invalidation_lag_seconds_count",
        "bus lag observed",
    ),
    (
        "nearcache_upstream_request_duration_seconds_count{command=\"mget\"}",
        "MGET misses fetched",
    ),
    (
        "nearcache_upstream_errors_total{kind=\"timeout\"}",
        "the DEBUG SLEEP 0.6 timeout",
    ),
    ("nearcache_slow_commands_total", "the DEBUG SLEEP 0.05"),
    (
        "nearcache_n_plus_one_total",
        "GETs of missing:# one at a time",
    ),
    (
        "nearcache_clients_rejected_total{reason=\"protocol\"}",
        "the garbage request",
    ),
    (
        "nearcache_commands_total{command=\"exec\"}",
        "the transaction",
    ),
];

/// Bound on Prometheus answering `/-/ready` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

// ---- promtool --------------------------------------------------------------------------

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let root = workspace_root();
    let check = run(Command::new(tool("promtool"))
        .args(["check", "rules", RULES])
        .current_dir(&root));
    assert_ok("promtool check rules", &check);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("SUCCESS"),
        "promtool check rules said no SUCCESS:\n{text}"
    );

    let test = run(Command::new(tool("promtool"))
        .args(["test", "rules", RULES_TEST])
        .current_dir(&root));
    assert_ok("promtool test rules", &test);

    // Every alert of the rules file has a unit test that fires it.
    let tests = fs::read_to_string(root.join(RULES_TEST)).expect("read rules test");
    for alert in alert_names(&root) {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{RULES_TEST} has no test for {alert}"
        );
    }
}

// ---- a real Prometheus -----------------------------------------------------------------

#[test]
fn dashboard_and_rules_evaluate_on_a_real_prometheus() {
    let started = Instant::now();
    let root = workspace_root();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    // A cache namespace for the workload's keys (the namespace panels).
    let dir = TempDir::new("prometheus");
    let config = dir.path().join("nearcache.toml");
    fs::write(
        &config,
        "[[namespace]]\nname = \"k\"\npattern = \"k:*\"\n[warm]\nfrom_peers = false\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let (redis, sidecar) = start_pair(&[
        "--config",
        &config,
        "--metrics-listen",
        &metrics_addr,
        // The workload's DEBUG SLEEP 0.6 times out: an upstream error and a reconnect.
        "--upstream-timeout",
        "400ms",
        // Its DEBUG SLEEP 0.05 is a slow command.
        "--slow-threshold",
        "20ms",
    ]);

    let prometheus = Prometheus::start(&root.join(RULES), &metrics_addr);
    // A labelled series appears at its first increment, and a rate needs it in two scrapes:
    // a first pass of the workload creates every series and is scraped, then the second
    // pass moves them all within the rate window.
    workload(&redis, &sidecar, 0);
    wait_until_scraped(&prometheus, &metrics_addr, 1);
    workload(&redis, &sidecar, 1);
    wait_until_scraped(&prometheus, &metrics_addr, 5);

    // What the workload does reached Prometheus, so the panels have something to show.
    let mut failures = Vec::new();
    for (expr, what) in WORKLOAD_SHOWS {
        let total: f64 = prometheus.query_values(expr).iter().sum();
        if total.is_nan() || total <= 0.0 {
            failures.push(format!("{what}: {expr} is {total}"));
        }
    }

    // ---- the dashboard
    let dashboard = fs::read_to_string(root.join(DASHBOARD)).expect("read dashboard");
    let dashboard = Json::parse(&dashboard).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    collect_strings(&dashboard, "expr", &mut exprs);
    assert!(exprs.len() >= 20, "only {} expressions found", exprs.len());

    // The metric names the sidecar exports, as Prometheus stored them.
    let exported: BTreeSet<String> = prometheus
        .query_label(
            "count by (__name__) ({__name__=~\"nearcache_.*|process_.*\"})",
            "__name__",
        )
        .expect("list metric names")
        .into_iter()
        .collect();
    let missing = |expr: &str| -> Option<&'static str> {
        MAY_BE_MISSING
            .iter()
            .find(|(name, _)| expr.contains(name) && !exported.contains(*name))
            .map(|(name, _)| *name)
    };

    let mut allowed = BTreeSet::new();
    for raw in &exprs {
        let expr = substitute(raw);
        match prometheus.query(&expr) {
            Err(e) => failures.push(format!("{expr}\n    does not evaluate: {e}")),
            Ok(values) => {
                if values.iter().any(|v| !v.is_nan()) {
                    continue;
                }
                if let Some(name) = missing(raw) {
                    allowed.insert(name);
                    continue;
                }
                failures.push(format!(
                    "{expr}\n    returned {} (no number)",
                    if values.is_empty() {
                        "no series".to_string()
                    } else {
                        format!("{} NaN series", values.len())
                    }
                ));
            }
        }
    }

    // Template variables: label_values(<selector>, <label>) must parse, and `instance`
    // must list the sidecar.
    let mut variables = Vec::new();
    collect_strings(&dashboard, "definition", &mut variables);
    assert!(variables.len() >= 3, "template variables: {variables:?}");
    for definition in &variables {
        let (selector, label) = parse_label_values(definition)
            .unwrap_or_else(|| panic!("not label_values(<selector>, <label>): {definition}"));
        let expr = format!("count by ({label}) ({})", substitute(selector));
        match prometheus.query_label(&expr, label) {
            Err(e) => failures.push(format!("variable {definition}: {expr}: {e}")),
            Ok(series) if label == "instance" => {
                if !series.contains(&metrics_addr) {
                    failures.push(format!(
                        "variable {definition} does not list {metrics_addr}: {series:?}"
                    ));
                }
            }
            Ok(_) => {}
        }
    }

    // ---- the rules, as Prometheus loaded them
    let want_alerts = alert_names(&root);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rules = loop {
        let rules = prometheus.loaded_rules();
        let evaluated = rules
            .iter()
            .all(|r| !r.last_evaluation.starts_with("0001-"));
        if evaluated && !rules.is_empty() {
            break rules;
        }
        assert!(
            Instant::now() < deadline,
            "rules not evaluated yet: {rules:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let loaded: BTreeSet<String> = rules.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        loaded, want_alerts,
        "alerts Prometheus loaded from {RULES} (group nearcache)"
    );
    for rule in &rules {
        if rule.health != "ok" {
            failures.push(format!(
                "rule {} health {}: {}",
                rule.name, rule.health, rule.last_error
            ));
        }
        if let Err(e) = prometheus.query(&rule.query) {
            failures.push(format!(
                "rule {}: {}\n    does not evaluate: {e}",
                rule.name, rule.query
            ));
        }
        // Every alert waits for its `for`: nothing can fire within this short test.
        if rule.state == "firing" {
            failures.push(format!("rule {} fires on a healthy sidecar", rule.name));
        }
    }

    // ---- every metric name used exists in Prometheus
    let mut names = BTreeSet::new();
    for expr in exprs.iter().chain(rules.iter().map(|r| &r.query)) {
        metric_names(expr, &mut names);
    }
    for name in &names {
        if !exported.contains(name) && missing(name).is_none() {
            failures.push(format!(
                "metric {name} is used but the sidecar does not export it"
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} problem(s) with {} dashboard expressions and {} rules:\n{}\n\nsidecar stderr:\n{}",
        failures.len(),
        exprs.len(),
        rules.len(),
        failures.join("\n"),
        sidecar.stderr()
    );
    eprintln!(
        "{} dashboard expressions, {} variables, {} rules, {} metric names checked against \
         Prometheus in {:?}",
        exprs.len(),
        variables.len(),
        rules.len(),
        names.len(),
        started.elapsed()
    );
    for (name, why) in MAY_BE_MISSING.iter().filter(|(n, _)| allowed.contains(n)) {
        eprintln!("allowed empty: the expressions using {name}: {why}");
    }
    drop(prometheus);
    drop(sidecar);
    drop(redis);
}

/// What the dashboard shows, produced through the sidecar: GET hits and misses (single,
/// pipelined and MGET), missing keys, SETs through the sidecar and behind its back,
/// invalidation bus messages, a transaction, a flush, a protocol error, an upstream timeout.
/// `pass` counts the runs (the bus messages' sequence numbers continue from one to the next).
fn workload(redis: &Redis, sidecar: &Sidecar, pass: usize) {
    poll_until(
        Duration::from_secs(10),
        "the invalidation link is up",
        || {
            let info = sidecar.conn().info(Some("nearcache"));
            info_field(&info, "invalidation_link").as_deref() == Some("up")
        },
    );
    const KEYS: usize = 500;
    let mut c = sidecar.conn();
    let value = "v".repeat(100);
    let key = |i: usize| format!("k:{i}");

    // SETs, pipelined 100 at a time.
    for batch in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut req = Vec::new();
        for &i in batch {
            req.extend(encode_command_str(&["SET", &key(i), &value]));
        }
        c.send(&req);
        for reply in c.read_replies(batch.len()) {
            assert_reply(&reply, b"+OK\r\n", "SET");
        }
    }
    // GETs: the first round misses L1 (hits upstream), the next ones hit L1.
    for round in 0..3 {
        for batch in (0..KEYS).collect::<Vec<_>>().chunks(50) {
            let mut req = Vec::new();
            for &i in batch {
                req.extend(encode_command_str(&["GET", &key(i)]));
            }
            c.send(&req);
            for reply in c.read_replies(batch.len()) {
                assert_reply(&reply, &bulk(value.as_bytes()), "GET");
            }
        }
        if round == 0 {
            // A few unpipelined ones too.
            for i in 0..50 {
                assert_reply(
                    &c.cmd_str(&["GET", &key(i)]),
                    &bulk(value.as_bytes()),
                    "GET",
                );
            }
        }
    }
    // Keys nobody has, one GET at a time: misses in L1 and in the upstream (nil), and an
    // N+1 (10 keys of one shape within 100 ms by default).
    for i in 0..200 {
        assert_reply(
            &c.cmd_str(&["GET", &format!("missing:{i}")]),
            b"$-1\r\n",
            "GET missing",
        );
    }
    // A warming of the keys (the warming panel), through the configured namespace `k`.
    let loaded = c.cmd_str(&["NEARCACHE", "WARM", "k:*", "LIMIT", "100"]);
    assert_reply(&loaded, b":100\r\n", "NEARCACHE WARM");
    // MGETs, 10 keys each.
    for start in (0..KEYS).step_by(10) {
        let keys: Vec<String> = (start..start + 10).map(key).collect();
        let mut args = vec!["MGET"];
        args.extend(keys.iter().map(String::as_str));
        let reply = c.cmd_str(&args);
        assert!(reply.starts_with(b"*10\r\n"), "MGET: {}", show(&reply));
    }
    // Writes through the sidecar evict what they write.
    for i in 0..100 {
        assert_reply(&c.cmd_str(&["SET", &key(i), "new"]), b"+OK\r\n", "SET");
    }
    // Writes behind the sidecar's back reach it through tracking.
    let mut direct = redis.conn();
    for i in 100..150 {
        assert_reply(
            &direct.cmd_str(&["SET", &key(i), "direct"]),
            b"+OK\r\n",
            "direct SET",
        );
    }
    // Bus messages from another (pretend) sender: invalidation lag.
    let sender = format!("loadgen{}", std::process::id());
    for seq in pass * 20 + 1..=pass * 20 + 20 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let k = key(200 + seq);
        let message = format!("v1 {sender} {seq} {ms} K 0 {}:{k}", k.len());
        let reply = direct.cmd_str(&["PUBLISH", "nearcache:invalidate", &message]);
        assert!(reply.starts_with(b":"), "PUBLISH: {}", show(&reply));
    }
    // A transaction (a pinned upstream connection).
    c.send(&encode_command_str(&["MULTI"]));
    c.send(&encode_command_str(&["SET", "tx", "1"]));
    c.send(&encode_command_str(&["EXEC"]));
    let replies = c.read_replies(3);
    assert_reply(&replies[2], b"*1\r\n+OK\r\n", "EXEC");
    // A flush of this sidecar's L1.
    assert_reply(
        &c.cmd_str(&["NEARCACHE", "FLUSH"]),
        b"+OK\r\n",
        "NEARCACHE FLUSH",
    );
    // A client that sends garbage.
    let mut bad = sidecar.conn();
    bad.send(b"*1\r\n$x\r\n");
    let _ = bad.try_read_to_close();
    // A slow call (over --slow-threshold 20ms), then one slower than --upstream-timeout: a
    // timeout.
    let reply = sidecar.conn().cmd_str(&["DEBUG", "SLEEP", "0.05"]);
    assert_reply(&reply, b"+OK\r\n", "DEBUG SLEEP 0.05");
    let mut slow = sidecar.conn();
    let reply = slow.cmd_str(&["DEBUG", "SLEEP", "0.6"]);
    assert!(reply.starts_with(b"-"), "DEBUG SLEEP 0.6: {}", show(&reply));
    // The sidecar serves again afterwards.
    poll_until(Duration::from_secs(5), "GET works again", || {
        sidecar.conn().cmd_str(&["GET", &key(400)]) == bulk(value.as_bytes())
    });
}

/// Waits until Prometheus has scraped the sidecar at least `scrapes` times and its last
/// scrape counted every command the sidecar has counted by now.
fn wait_until_scraped(prometheus: &Prometheus, metrics_addr: &str, scrapes: usize) {
    let commands = sidecar_commands(metrics_addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = |expr: &str| {
        prometheus
            .query_values(expr)
            .first()
            .copied()
            .unwrap_or(0.0)
    };
    loop {
        let done = first("count_over_time(up{job=\"nearcache\"}[1m])");
        let up = first("up{job=\"nearcache\"}");
        let seen = first("sum(nearcache_commands_total)");
        if done >= scrapes as f64 && up == 1.0 && seen >= commands {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {done} scrapes (up = {up}), {seen} of the {commands} commands the \
             sidecar counted; targets: {}\nprometheus log:\n{}",
            prometheus.get("/api/v1/targets"),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of `nearcache_commands_total` on the sidecar's /metrics now.
fn sidecar_commands(metrics_addr: &str) -> f64 {
    let addr: SocketAddr = metrics_addr.parse().expect("metrics address");
    let (status, body) = http_get(addr, "/metrics").expect("GET /metrics from the sidecar");
    assert_eq!(status, 200, "GET /metrics: {body}");
    let total: f64 = body
        .lines()
        .filter(|l| l.starts_with("nearcache_commands_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        total > 0.0,
        "no nearcache_commands_total in /metrics:\n{body}"
    );
    total
}

// ---- Prometheus process and HTTP API ---------------------------------------------------

/// A prometheus child process on a free port with its own config and data, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    fn start(rules: &Path, target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: nearcache\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let check = run(Command::new(tool("promtool"))
            .args(["check", "config"])
            .arg(&config));
        assert_ok("promtool check config", &check);

        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("create log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn prometheus: {e}"));
        let mut prometheus = Prometheus { child, addr, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, _)) = http_get(addr, "/-/ready") {
                return prometheus;
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", prometheus.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready on {addr} after {READY_TIMEOUT:?}:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GET `path` and return the body; panics on a transport error.
    fn get(&self, path: &str) -> String {
        match http_get(self.addr, path) {
            Ok((_, body)) => body,
            Err(e) => panic!("GET {path} from prometheus: {e}\n{}", self.log()),
        }
    }

    /// Evaluates `expr` now: the `data.result` of a success, or the error.
    fn query_result(&self, expr: &str) -> Result<Json, String> {
        let body = self.get(&format!("/api/v1/query?query={}", url_encode(expr)));
        let json = Json::parse(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
        if json.get("status").and_then(Json::as_str) != Some("success") {
            return Err(format!(
                "{}: {}",
                json.get("errorType").and_then(Json::as_str).unwrap_or("?"),
                json.get("error").and_then(Json::as_str).unwrap_or(&body)
            ));
        }
        let data = json.get("data").ok_or("no data")?;
        match data.get("resultType").and_then(Json::as_str) {
            Some("vector") | Some("scalar") => {}
            other => return Err(format!("result type {other:?}")),
        }
        Ok(data.get("result").cloned().ok_or("no result")?)
    }

    /// The values `expr` evaluates to (one per series; a scalar is one value).
    fn query(&self, expr: &str) -> Result<Vec<f64>, String> {
        let result = self.query_result(expr)?;
        let sample_value = |v: &Json| -> f64 {
            v.as_array()
                .and_then(|a| a.get(1))
                .and_then(Json::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN)
        };
        Ok(match &result {
            Json::Arr(series) => series
                .iter()
                .map(|s| s.get("value").map(sample_value).unwrap_or(f64::NAN))
                .collect(),
            scalar => vec![sample_value(scalar)],
        })
    }

    /// The values of `label` in the series `expr` evaluates to ("" where it is absent).
    fn query_label(&self, expr: &str, label: &str) -> Result<Vec<String>, String> {
        let result = self.query_result(expr)?;
        Ok(result
            .as_array()
            .unwrap_or(&[])
            .iter()
            .map(|s| {
                s.get("metric")
                    .and_then(|m| m.get(label))
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect())
    }

    /// Like [`Prometheus::query`], panicking on an error.
    fn query_values(&self, expr: &str) -> Vec<f64> {
        self.query(expr)
            .unwrap_or_else(|e| panic!("query {expr}: {e}\n{}", self.log()))
    }

    /// The alerting rules of group `nearcache` from `/api/v1/rules`.
    fn loaded_rules(&self) -> Vec<LoadedRule> {
        let body = self.get("/api/v1/rules?type=alert");
        let json = Json::parse(&body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"));
        let text = |r: &Json, k: &str| r.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        let mut out = Vec::new();
        for group in json
            .get("data")
            .and_then(|d| d.get("groups"))
            .and_then(Json::as_array)
            .unwrap_or(&[])
        {
            if group.get("name").and_then(Json::as_str) != Some("nearcache") {
                continue;
            }
            for rule in group.get("rules").and_then(Json::as_array).unwrap_or(&[]) {
                out.push(LoadedRule {
                    name: text(rule, "name"),
                    query: text(rule, "query"),
                    health: text(rule, "health"),
                    last_error: text(rule, "lastError"),
                    state: text(rule, "state"),
                    last_evaluation: text(rule, "lastEvaluation"),
                });
            }
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct LoadedRule {
    name: String,
    query: String,
    health: String,
    last_error: String,
    state: String,
    last_evaluation: String,
}

/// A minimal HTTP/1.0 GET: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- helpers ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto-tests has a parent")
        .to_path_buf()
}

/// `name` from PATH, or a panic saying how to install it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: run scripts/ensure-prometheus.sh (Debian's prometheus package)")
        })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

#[track_caller]
fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `- alert: <name>` names of the rules file.
fn alert_names(root: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(root.join(RULES)).expect("read rules");
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert!(names.len() >= 7, "alerts in {RULES}: {names:?}");
    names
}

/// The expression with the Grafana variables replaced; panics on one left over.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in SUBSTITUTIONS {
        out = out.replace(var, value);
    }
    assert!(
        !out.contains('$'),
        "unknown Grafana variable left in {out:?} (add it to SUBSTITUTIONS)"
    );
    out
}

/// `label_values(<selector>, <label>)` split in its two arguments.
fn parse_label_values(definition: &str) -> Option<(&str, &str)> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// The metric names (`nearcache_*`, `process_*`) an expression mentions.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            // Not inside a quoted label value.
            let quotes = expr[..start].matches('"').count();
            if quotes.is_multiple_of(2)
                && (word.starts_with("nearcache_") || word.starts_with("process_"))
            {
                out.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
}

/// Every string value of a `key` member anywhere in `json`.
fn collect_strings(json: &Json, key: &str, out: &mut Vec<String>) {
    match json {
        Json::Obj(members) => {
            for (k, v) in members {
                if k == key {
                    if let Json::Str(s) = v {
                        out.push(s.clone());
                    }
                }
                collect_strings(v, key, out);
            }
        }
        Json::Arr(items) => items.iter().for_each(|v| collect_strings(v, key, out)),
        _ => {}
    }
}

// ---- a small JSON reader (std only) ----------------------------------------------------

#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", b as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    members.push((key, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
            None => Err("unexpected end".to_string()),
        }
    }

    fn word(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let hex = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        Ok(hex)
    }
}

#[test]
fn json_reader_and_helpers() {
    let j = Json::parse(r#"{"a": [1, -2.5e1, "x\"\u00e9\n"], "b": {"c": null, "d": true}}"#)
        .expect("parse");
    assert_eq!(
        j.get("a").and_then(Json::as_array).map(<[Json]>::len),
        Some(3)
    );
    assert_eq!(
        j.get("a")
            .and_then(|a| a.as_array())
            .and_then(|a| a[2].as_str()),
        Some("x\"\u{e9}\n")
    );
    let a = j.get("a").and_then(Json::as_array).expect("a");
    assert!(matches!(a[1], Json::Num(n) if n == -25.0), "{a:?}");
    let b = j.get("b").expect("b");
    assert!(matches!(b.get("d"), Some(Json::Bool(true))), "{b:?}");
    assert!(matches!(b.get("c"), Some(Json::Null)), "{b:?}");
    assert!(Json::parse("[1,]").is_err());
    assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    assert_eq!(
        parse_label_values("label_values(m{a=~\"$x\"}, pod)"),
        Some(("m{a=~\"$x\"}", "pod"))
    );
    let mut names = BTreeSet::new();
    metric_names(
        "rate(nearcache_a_total{x=\"nearcache_no\"}[1m]) / process_b and on (instance) c",
        &mut names,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["nearcache_a_total", "process_b"]
    );
}
