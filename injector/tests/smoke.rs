//! The injected pod's own sidecar, run for real: redis-server, then nearcache started with
//! exactly the environment and arguments the patch gives the `nearcache` container (only
//! the two fixed ports, 6380 and 9380, moved to free ones so the test can run beside
//! anything), `nearcache probe` as the startup probe runs it, and the application's
//! rewritten Redis URL used for real; and the probes while Redis is down: by default the
//! startup probe (which holds the app back) passes once the sidecar listens, readiness
//! waits for Redis.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use nearcache_injector::{inject, Decision, InjectorConfig};
use proto_tests::{bulk, free_port, nearcache_bin, Conn, Redis};
use serde_json::{json, Value};

/// Kills the sidecar when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn injected(redis_url: &str) -> Value {
    injected_with(redis_url, &InjectorConfig::default())
}

fn injected_with(redis_url: &str, config: &InjectorConfig) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api", "namespace": "shop",
                     "labels": {"nearcache.io/inject": "true"}},
        "spec": {"containers": [{"name": "api", "image": "api:1",
                                  "env": [{"name": "REDIS_URL", "value": redis_url}]}]}
    });
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let decision = inject(&typed, &BTreeMap::new(), config).unwrap();
    let Decision::Inject { patch, .. } = decision else {
        panic!("not injected: {decision:?}");
    };
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"].as_str().expect("a plain value in this pod");
            (e["name"].as_str().unwrap().to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_injected_sidecar_serves_the_rewritten_url() {
    let redis = Redis::start();
    let pod = injected(&redis.url());
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "nearcache");
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let (listen_port, metrics_port) = (free_port(), free_port());
    let env: Vec<(String, String)> = env_of(sidecar)
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace(":6380", &format!(":{listen_port}"))
                .replace(":9380", &format!(":{metrics_port}"));
            (k, v)
        })
        .collect();
    assert!(env
        .iter()
        .any(|(k, v)| k == "NEARCACHE_UPSTREAM" && *v == redis.url()));
    let _running = Running(
        Command::new(nearcache_bin())
            .args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nearcache"),
    );
    // The startup probe, as the pod runs it (the exec command without its binary path).
    let probe: Vec<String> = sidecar["startupProbe"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        probe[0].ends_with("/nearcache") && probe[1] == "probe",
        "{probe:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = Command::new(nearcache_bin())
            .args(&probe[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .unwrap();
        if status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe never passed: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The application connects with its rewritten URL.
    let app = &pod["spec"]["containers"][0];
    let url = env_of(app)
        .into_iter()
        .find(|(k, _)| k == "REDIS_URL")
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(url, "redis://127.0.0.1:6380");
    let addr = format!("127.0.0.1:{listen_port}").parse().unwrap();
    let mut c = Conn::connect(addr);
    assert_eq!(c.cmd_str(&["SET", "k", "through the sidecar"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk(b"through the sidecar"));
    assert_eq!(
        redis.conn().cmd_str(&["GET", "k"]),
        bulk(b"through the sidecar"),
        "the write reached the upstream"
    );
}

/// The sidecar container's environment with its two ports moved to free ones, its
/// arguments, and the `listen` address that gives.
fn runnable(sidecar: &Value) -> (Vec<(String, String)>, Vec<String>, u16) {
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let (listen_port, metrics_port) = (free_port(), free_port());
    let env = env_of(sidecar)
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace(":6380", &format!(":{listen_port}"))
                .replace(":9380", &format!(":{metrics_port}"));
            (k, v)
        })
        .collect();
    (env, args, listen_port)
}

/// Runs `probe` (a probe's exec command) in the sidecar's environment: passed or not.
fn run_probe(sidecar: &Value, probe: &str, env: &[(String, String)]) -> bool {
    let command: Vec<String> = sidecar[probe]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        command[0].ends_with("/nearcache") && command[1] == "probe",
        "{command:?}"
    );
    Command::new(nearcache_bin())
        .args(&command[1..])
        .args(["--timeout", "5s"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .unwrap()
        .success()
}

#[test]
fn while_redis_is_down_the_app_starts_unless_the_config_says_otherwise() {
    // Nothing listens at the upstream's address.
    let down = format!("redis://127.0.0.1:{}", free_port());
    let pod = injected(&down);
    let sidecar = &pod["spec"]["initContainers"][0];
    let (env, args, listen_port) = runnable(sidecar);
    let _running = Running(
        Command::new(nearcache_bin())
            .args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nearcache"),
    );
    // The startup probe passes once the sidecar listens: the app may start and retry.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !run_probe(sidecar, "startupProbe", &env) {
        assert!(Instant::now() < deadline, "the startup probe never passed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Readiness still needs Redis.
    assert!(
        !run_probe(sidecar, "readinessProbe", &env),
        "ready without Redis"
    );
    // The app's commands get the sidecar's error, not a hang.
    let addr = format!("127.0.0.1:{listen_port}").parse().unwrap();
    let reply = Conn::connect(addr).cmd_str(&["GET", "k"]);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("-ERR nearcache: upstream unavailable"),
        "{text}"
    );
    // startupRequiresUpstream: the startup probe is the readiness one: the app waits.
    let config = InjectorConfig {
        startup_requires_upstream: true,
        ..InjectorConfig::default()
    };
    let strict = injected_with(&down, &config);
    let strict_sidecar = &strict["spec"]["initContainers"][0];
    assert_eq!(
        strict_sidecar["startupProbe"]["exec"],
        strict_sidecar["readinessProbe"]["exec"]
    );
    assert!(
        !run_probe(strict_sidecar, "startupProbe", &env),
        "started without Redis"
    );
}
