//! Black-box tests of the real `nearcache-injector` binary over HTTPS: AdmissionReview v1
//! requests, error handling that leaves the server serving, and certificate reload.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use nearcache_injector::{inject, Decision, InjectorConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Cert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn new_cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// Writes via a temporary file and rename, as a mounted Secret update would appear.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    trusted: Vec<CertificateDer<'static>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn start() -> Server {
        Server::start_with(None)
    }

    /// Starts with flags given as `NEARCACHE_INJECTOR_*` environment variables and,
    /// when given, this YAML as the injector config.
    fn start_with(config_yaml: Option<&str>) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "nearcache-injector-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = new_cert();
        write_atomic(&dir.join("tls.crt"), &cert.cert_pem);
        write_atomic(&dir.join("tls.key"), &cert.key_pem);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nearcache-injector"));
        match config_yaml {
            None => {
                cmd.args(["--listen", "127.0.0.1:0", "--tls-cert"])
                    .arg(dir.join("tls.crt"))
                    .arg("--tls-key")
                    .arg(dir.join("tls.key"));
            }
            Some(yaml) => {
                std::fs::write(dir.join("config.yaml"), yaml).unwrap();
                cmd.env("NEARCACHE_INJECTOR_LISTEN", "127.0.0.1:0")
                    .env("NEARCACHE_INJECTOR_TLS_CERT", dir.join("tls.crt"))
                    .env("NEARCACHE_INJECTOR_TLS_KEY", dir.join("tls.key"))
                    .env("NEARCACHE_INJECTOR_CONFIG", dir.join("config.yaml"));
            }
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nearcache-injector");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on https://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            dir,
            trusted: vec![cert.der],
        }
    }

    fn rotate(&mut self, cert: &Cert) {
        self.trusted.push(cert.der.clone());
        write_atomic(&self.dir.join("tls.key"), &cert.key_pem);
        write_atomic(&self.dir.join("tls.crt"), &cert.cert_pem);
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
    peer_cert: CertificateDer<'static>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

async fn request(
    server: &Server,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut roots = RootCertStore::empty();
    for c in &server.trusted {
        roots.add(c.clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "response timed out");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {headers:?}"));
    Reply {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
        peer_cert,
    }
}

fn golden_pod(case: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{case}.yaml"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn review(uid: &str, namespace: &str, pod: &Value) -> Vec<u8> {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
    .to_string()
    .into_bytes()
}

async fn mutate(server: &Server, path: &str, body: &[u8]) -> Value {
    let r = request(server, "POST", path, Some("application/json"), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

fn decoded_patch(response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let b64 = response["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn pure_patch(pod: &Value, ns_enabled: bool) -> Value {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    let labels = if ns_enabled {
        BTreeMap::from([("nearcache.io/injection".to_owned(), "enabled".to_owned())])
    } else {
        BTreeMap::new()
    };
    match inject(&pod, &labels, &InjectorConfig::default()).unwrap() {
        Decision::Inject { patch, .. } => serde_json::to_value(patch).unwrap(),
        d => panic!("expected injection: {d:?}"),
    }
}

#[tokio::test]
async fn admission_reviews_get_the_pure_functions_patch() {
    let server = Server::start();

    let health = request(&server, "GET", "/healthz", None, b"").await;
    assert_eq!(health.status, 200);

    // Pod label opt-in; the existing REDIS_URL becomes the upstream.
    let pod = golden_pod("existing-redis-url");
    let resp = mutate(&server, "/mutate", &review("uid-1", "shop", &pod)).await;
    assert_eq!(resp["uid"], "uid-1");
    assert_eq!(resp["allowed"], true);
    assert_eq!(decoded_patch(&resp), pure_patch(&pod, false));
    assert!(resp.get("warnings").is_none());

    // Namespace opt-in: the pod has no namespace yet (generateName); the request's is used.
    let mut pod = golden_pod("namespace-opt-in");
    let with_ns = pod.clone();
    pod["metadata"].as_object_mut().unwrap().remove("namespace");
    let resp = mutate(
        &server,
        "/mutate/namespace",
        &review("uid-2", "catalog", &pod),
    )
    .await;
    assert_eq!(resp["uid"], "uid-2");
    assert_eq!(decoded_patch(&resp), pure_patch(&with_ns, true));

    // The same pod through the pod-label endpoint is not opted in: admitted unchanged.
    let resp = mutate(&server, "/mutate", &review("uid-3", "catalog", &pod)).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none() && resp.get("patchType").is_none());

    // Invalid annotations: admitted unchanged with warnings.
    let pod = golden_pod("invalid-annotation");
    let resp = mutate(&server, "/mutate", &review("uid-4", "shop", &pod)).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none());
    let warnings = resp["warnings"].as_array().expect("warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("l1-max-bytes")),
        "{warnings:?}"
    );

    // Opted out, system namespace, already injected: allowed, no patch.
    for (case, path, ns) in [
        ("opted-out", "/mutate/namespace", "shop"),
        ("system-namespace", "/mutate", "kube-system"),
        ("already-injected", "/mutate", "shop"),
    ] {
        let resp = mutate(&server, path, &review(case, ns, &golden_pod(case))).await;
        assert_eq!(resp["uid"], case);
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("patch").is_none(), "{case}: {resp}");
    }

    // Not a pod creation: admitted unchanged.
    let mut body: Value =
        serde_json::from_slice(&review("uid-5", "shop", &golden_pod("existing-redis-url")))
            .unwrap();
    body["request"]["operation"] = json!("UPDATE");
    let resp = mutate(&server, "/mutate", body.to_string().as_bytes()).await;
    assert_eq!(resp["uid"], "uid-5");
    assert!(resp.get("patch").is_none());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start();
    let good = review("ok", "shop", &golden_pod("no-init-containers"));

    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        b"{not json",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{}",
        r.body
    );

    let r = request(&server, "POST", "/mutate", Some("text/plain"), &good).await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("application/json"));

    let r = request(&server, "POST", "/mutate", None, &good).await;
    assert_eq!(r.status, 415);

    let mut v1beta1: Value = serde_json::from_slice(&good).unwrap();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        v1beta1.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("apiVersion"),
        "{}",
        r.body
    );

    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        br#"{"kind":"Pod","apiVersion":"v1"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("not an AdmissionReview"));

    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        b"[1,2,3]",
    )
    .await;
    assert_eq!(r.status, 400);

    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        no_request.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("no request"));

    let mut broken_pod: Value = serde_json::from_slice(&good).unwrap();
    broken_pod["request"]["object"]["spec"]["containers"] = json!("not a list");
    let r = request(
        &server,
        "POST",
        "/mutate",
        Some("application/json"),
        broken_pod.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("Pod admission request"),
        "{}",
        r.body
    );

    let r = request(&server, "GET", "/mutate", None, b"").await;
    assert_eq!(r.status, 405);
    assert!(
        r.headers.to_ascii_lowercase().contains("allow: post"),
        "{}",
        r.headers
    );

    let r = request(&server, "POST", "/healthz", Some("application/json"), b"{}").await;
    assert_eq!(r.status, 405);

    let r = request(&server, "POST", "/nope", Some("application/json"), &good).await;
    assert_eq!(r.status, 404);

    let huge = vec![b' '; 5 << 20];
    let r = request(&server, "POST", "/mutate", Some("application/json"), &huge).await;
    assert_eq!(r.status, 413);

    // Still serving, and correctly.
    assert_eq!(
        request(&server, "GET", "/healthz", None, b"").await.status,
        200
    );
    let resp = mutate(&server, "/mutate", &good).await;
    assert_eq!(resp["uid"], "ok");
    assert_eq!(
        decoded_patch(&resp),
        pure_patch(&golden_pod("no-init-containers"), false)
    );
}

#[tokio::test]
async fn certificate_is_reloaded_and_a_bad_pair_keeps_the_old_one() {
    let mut server = Server::start();
    let first = request(&server, "GET", "/healthz", None, b"").await;
    assert_eq!(first.peer_cert, server.trusted[0]);

    let second = new_cert();
    server.rotate(&second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(r.status, 200);
        if r.peer_cert == second.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A certificate that does not match the key: the previous pair stays in service.
    let third = new_cert();
    write_atomic(&server.dir.join("tls.crt"), &third.cert_pem);
    for _ in 0..3 {
        let r = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.peer_cert, second.der);
    }
    // A key file that is not PEM at all: likewise.
    std::fs::write(server.dir.join("tls.key"), "not a key\n").unwrap();
    for _ in 0..3 {
        let r = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.peer_cert, second.der);
    }
    // Fixing the key makes the third certificate current.
    server.rotate(&third);
    let r = request(&server, "GET", "/healthz", None, b"").await;
    assert_eq!(r.peer_cert, third.der);
}

#[tokio::test]
async fn flags_from_the_environment_and_the_config_file_are_used() {
    let server = Server::start_with(Some(
        "image: mirror.example/nearcache:0.1.0\nurlEnv: CACHE_URL\nl1MaxBytes: 16MiB\n",
    ));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"nearcache.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "app:1",
            "env": [{"name": "CACHE_URL", "value": "redis://cache.shop.svc:6379"}]}]}
    });
    let resp = mutate(&server, "/mutate", &review("cfg", "shop", &pod)).await;
    let patch = decoded_patch(&resp).to_string();
    for needle in [
        "mirror.example/nearcache:0.1.0",
        "redis://cache.shop.svc:6379",
        "\"value\":\"16777216\"",
        "\"memory\":\"56Mi\"",
        "/spec/containers/0/env/0/value",
    ] {
        assert!(patch.contains(needle), "{needle} not in {patch}");
    }
}

#[test]
fn a_bad_config_or_certificate_is_a_startup_error() {
    let dir = std::env::temp_dir().join(format!("nearcache-injector-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = new_cert();
    std::fs::write(dir.join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("bad.yaml"), "l1MaxBytes: lots\n").unwrap();
    let run = |cert: &str, config: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nearcache-injector"));
        cmd.args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(dir.join(cert))
            .arg("--tls-key")
            .arg(dir.join("tls.key"));
        if let Some(c) = config {
            cmd.arg("--config").arg(dir.join(c));
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("tls.crt", Some("bad.yaml"));
    assert!(err.contains("l1MaxBytes"), "{err}");
    let err = run("missing.crt", None);
    assert!(err.contains("missing.crt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_stalled_connection_does_not_block_others() {
    let server = Server::start();
    // Connected but never starts the TLS handshake.
    let _idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Handshake done, half a request sent, then nothing.
    let mut partial = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"\x16\x03\x01").await.unwrap();
    let r = request(&server, "GET", "/healthz", None, b"").await;
    assert_eq!(r.status, 200);
    let resp = mutate(
        &server,
        "/mutate",
        &review("after-stall", "shop", &golden_pod("no-init-containers")),
    )
    .await;
    assert_eq!(resp["uid"], "after-stall");
}
