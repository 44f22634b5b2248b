//! The HTTP endpoint (`--metrics-listen`): `/metrics` (Prometheus text format), `/healthz`
//! (the process answers) and `/readyz` (the upstream is reachable and, where L1 needs it,
//! the invalidation link is up). HTTP/1.1 by hyper; one small router, so more endpoints can
//! be added beside these.
//!
//! Bounded like the client listener: at most [`MAX_CONNECTIONS`] at once, headers within
//! [`HEADER_TIMEOUT`], a connection closed after [`CONNECTION_LIFETIME`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::metrics::export::Exporter;
use crate::state::Shared;

/// HTTP connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves the endpoint on `listener` until shutdown is signalled.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let exporter = Arc::new(Exporter::new(&shared));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            // E.g. EMFILE: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (shared, exporter) = (shared.clone(), exporter.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (shared, exporter) = (shared.clone(), exporter.clone());
                async move { Ok::<_, Infallible>(respond(req, shared, exporter).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

/// The router.
async fn respond(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    exporter: Arc<Exporter>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Reading L1's figures runs moka's pending maintenance: off the async threads.
            let body = tokio::task::spawn_blocking(move || exporter.render(&shared))
                .await
                .unwrap_or_default();
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match not_ready(&shared) {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

/// Why the sidecar is not ready, if it is not: the upstream is unreachable, L1 needs the
/// invalidation link (tracking or the bus) and it is down, or the start-up warming runs
/// with `warm_before_ready` (at most [`crate::warm::READY_HOLD`]).
pub fn not_ready(shared: &Shared) -> Option<&'static str> {
    if !shared.upstream.link_up() {
        return Some("upstream unreachable");
    }
    if !shared.tracking.serving() {
        return Some("invalidation link down");
    }
    if shared.warm.holds_readiness() {
        return Some("warming");
    }
    None
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
