//! The injected pod's own sidecar, run for real: redis-server, then nearcache started with
//! exactly the environment and arguments the patch gives the `nearcache` container (only
//! the two fixed ports, 6380 and 9380, moved to free ones so the test can run beside
//! anything), `nearcache probe` as the startup probe runs it, and the application's
//! rewritten Redis URL used for real; and the probes while Redis is down: by default the
//! startup probe (which holds the app back) passes once the sidecar listens, readiness
//! waits for Redis; and a TLS upstream reached through the files of the mounted Secret.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use nearcache_injector::{inject, Decision, InjectorConfig};
use proto_tests::tempdir::TempDir;
use proto_tests::{bulk, free_port, nearcache_bin, Conn, Redis, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
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
    injected_annotated(redis_url, config, json!({}))
}

fn injected_annotated(redis_url: &str, config: &InjectorConfig, annotations: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api", "namespace": "shop",
                     "labels": {"nearcache.io/inject": "true"},
                     "annotations": annotations},
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

/// A CA, a server certificate for `localhost` and a client certificate it signed, written
/// to `dir` (the server's files) and to `dir/secret` as a `kubernetes.io/tls` Secret with
/// `ca.crt` appears in its volume: `ca.crt`, `tls.crt`, `tls.key`.
fn pki(dir: &TempDir) -> TlsFiles {
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf = |name: &str, purpose| {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let (cert, key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
    TlsFiles {
        ca: write("ca.crt", &ca_pem),
        cert: write("server.crt", &cert),
        key: write("server.key", &key),
        client_cert: write("secret/tls.crt", &client_cert),
        client_key: write("secret/tls.key", &client_key),
    }
}

/// The annotations for a TLS Secret and a server name give the sidecar the files of the
/// mounted Secret under the env names it reads: it verifies a TLS-only redis-server that
/// requires client certificates, by the name given (the URL names an IP address), and
/// serves the application through it.
#[test]
fn the_injected_sidecar_reaches_a_tls_upstream_through_the_mounted_secret() {
    let dir = TempDir::new("injected-tls");
    let files = pki(&dir);
    std::fs::copy(&files.ca, dir.path().join("secret/ca.crt")).unwrap();
    let redis = Redis::start_tls(&files, &[]);
    let pod = injected_annotated(
        &format!("rediss://127.0.0.1:{}", redis.port()),
        &InjectorConfig::default(),
        json!({
            "nearcache.io/upstream-tls-secret": "redis-client-tls",
            "nearcache.io/upstream-tls-server-name": "localhost",
        }),
    );
    let sidecar = &pod["spec"]["initContainers"][0];
    let mount = sidecar["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "nearcache-upstream-tls")
        .expect("the Secret's volume is mounted");
    assert!(mount.get("subPath").is_none(), "{mount}");
    let mount_path = mount["mountPath"].as_str().unwrap();
    // The Secret's volume, as the kubelet would fill it, is the test's directory.
    let secret_dir = dir.path().join("secret");
    let (env, args, listen_port) = runnable(sidecar);
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k, v.replace(mount_path, secret_dir.to_str().unwrap())))
        .collect();
    for name in [
        "NEARCACHE_UPSTREAM_TLS_CA",
        "NEARCACHE_UPSTREAM_TLS_CERT",
        "NEARCACHE_UPSTREAM_TLS_KEY",
    ] {
        let (_, path) = env.iter().find(|(k, _)| k == name).expect(name);
        assert!(std::path::Path::new(path).is_file(), "{name}={path}");
    }
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
    let deadline = Instant::now() + Duration::from_secs(15);
    while !run_probe(sidecar, "readinessProbe", &env) {
        assert!(Instant::now() < deadline, "never ready over TLS");
        std::thread::sleep(Duration::from_millis(100));
    }
    let addr = format!("127.0.0.1:{listen_port}").parse().unwrap();
    let mut c = Conn::connect(addr);
    assert_eq!(c.cmd_str(&["SET", "k", "over TLS"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "k"]), bulk(b"over TLS"));
    assert_eq!(redis.cli(&["GET", "k"]).trim(), "over TLS");
}
