//! HTTPS endpoints: `POST /mutate`, `POST /mutate/namespace`, `GET /healthz`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::tls::ReloadingConfig;
use crate::{inject, Decision, InjectorConfig, LABEL_NS_INJECTION};

/// Largest request body accepted (the API server sends at most a few MiB).
pub const MAX_BODY_BYTES: usize = 4 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// Serves until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ReloadingConfig>,
    config: Arc<InjectorConfig>,
) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(acceptor, tcp, peer, config).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<InjectorConfig>,
) -> Result<(), String> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let service = hyper::service::service_fn(move |req| {
        let config = config.clone();
        async move { Ok::<_, Infallible>(handle(req, &config).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::debug!(%peer, "connection closed after {CONNECTION_TIMEOUT:?}");
            Ok(())
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("static content type"),
    );
    r
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Resp {
    let body = json!({ "error": message.to_string(), "status": status.as_u16() });
    respond(status, "application/json", body.to_string())
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Routes one request; never panics on client input.
pub async fn handle(req: Request<Incoming>, config: &InjectorConfig) -> Resp {
    let namespace_labels = match req.uri().path() {
        "/healthz" => {
            return match *req.method() {
                Method::GET | Method::HEAD => respond(StatusCode::OK, "text/plain", "ok\n"),
                _ => method_not_allowed("GET"),
            }
        }
        "/mutate" => BTreeMap::new(),
        "/mutate/namespace" => {
            BTreeMap::from([(LABEL_NS_INJECTION.to_owned(), "enabled".to_owned())])
        }
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    match review(&body, &namespace_labels, config) {
        Ok(v) => respond(StatusCode::OK, "application/json", v.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Turns an AdmissionReview request body into the AdmissionReview response.
/// Errors are for requests that are not AdmissionReview v1 at all.
pub fn review(
    body: &[u8],
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectorConfig,
) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("not an AdmissionReview: the body is not a JSON object".to_owned());
    };
    if obj.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err("not an AdmissionReview: kind must be \"AdmissionReview\"".to_owned());
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(ADMISSION_API_VERSION) => {}
        other => {
            return Err(format!(
                "unsupported AdmissionReview apiVersion {other:?}; only {ADMISSION_API_VERSION} is served"
            ))
        }
    }
    let Some(request) = obj.get("request") else {
        return Err("AdmissionReview has no request".to_owned());
    };
    let uid = request.get("uid").and_then(Value::as_str).unwrap_or("");
    if uid.is_empty() {
        return Err("AdmissionReview request has no uid".to_owned());
    }
    // Only pod creation is mutated; anything else a misconfigured webhook sends us is
    // admitted unchanged rather than failing the API call.
    let gvk = request.get("kind").cloned().unwrap_or(Value::Null);
    let is_pod = gvk
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && gvk.get("kind").and_then(Value::as_str) == Some("Pod");
    let is_create = request.get("operation").and_then(Value::as_str) == Some("CREATE");
    if !is_pod || !is_create {
        return Ok(allowed_review(json!({ "uid": uid, "allowed": true })));
    }
    let request: AdmissionRequest<Pod> = serde_json::from_value(request.clone())
        .map_err(|e| format!("AdmissionReview request is not a Pod admission request: {e}"))?;

    let mut response = json!({ "uid": request.uid, "allowed": true });
    let decision = match request.object {
        None => None,
        Some(mut pod) => {
            if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
                pod.metadata.namespace = request.namespace.clone();
            }
            Some(inject(&pod, namespace_labels, config))
        }
    };
    let mut warnings: Vec<String> = Vec::new();
    match decision {
        None => {}
        Some(Err(e)) => {
            tracing::warn!(uid = %request.uid, error = %e, "admitted without injection");
            warnings.push(format!("nearcache sidecar not injected: {e}"));
        }
        Some(Ok(Decision::Skip {
            reason,
            warnings: w,
        })) => {
            tracing::debug!(uid = %request.uid, %reason, "skipped");
            warnings = w;
        }
        Some(Ok(Decision::Inject { patch, warnings: w })) => {
            let patch = serde_json::to_vec(&patch).map_err(|e| e.to_string())?;
            tracing::info!(
                uid = %request.uid,
                namespace = request.namespace.as_deref().unwrap_or(""),
                name = %request.name,
                "injected the nearcache sidecar"
            );
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
            warnings = w;
        }
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    Ok(allowed_review(response))
}

fn allowed_review(response: Value) -> Value {
    json!({
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    })
}
