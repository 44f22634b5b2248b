//! The HTTP endpoint (`--metrics-listen`): `/metrics` (Prometheus text format), `/healthz`
//! (the process answers) and `/readyz` (the upstream is reachable and, where L1 needs it,
//! the invalidation link is up). HTTP/1.1 by hyper; one small router, so more endpoints can
//! be added beside these.
//!
//! Bounded so that a scrape always gets through: at most [`MAX_CONNECTIONS`] open at once
//! and [`MAX_PER_PEER`] from one address; past either bound, the oldest connection that is
//! not answering a request (a slow or stalled request line or headers, an idle keep-alive)
//! is closed to make room, and only when every one is answering is the new connection
//! refused. Headers must arrive within [`HEADER_TIMEOUT`], a keep-alive connection is
//! closed after [`IDLE_TIMEOUT`] without a request, and any connection after
//! [`CONNECTION_LIFETIME`].

use parking_lot::Mutex;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
use tokio::sync::Notify;
use tokio::time::Instant;

use super::exposition::Exporter;
use super::readiness::not_ready;
use crate::services::Services;

/// HTTP connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// HTTP connections open at once from one IP address.
pub const MAX_PER_PEER: usize = 16;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no request under way is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (keep-alive included) is closed after this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves the endpoint on `listener` until the process stops (see [`crate::lifecycle`]).
pub async fn serve(listener: TcpListener, shared: Arc<Services>) {
    let stopping = crate::lifecycle::stopping();
    let exporter = Arc::new(Exporter::new(shared.clone()));
    let open = Arc::new(OpenConnections::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.cancelled() => return,
        };
        let Ok((stream, peer)) = accepted else {
            // E.g. EMFILE: back off a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some((id, state)) = open.admit(peer.ip()) else {
            continue; // every open connection is answering a request: dropped (closed)
        };
        let (shared, exporter, open) = (shared.clone(), exporter.clone(), open.clone());
        crate::lifecycle::spawn(async move {
            let serving = state.clone();
            let service = service_fn(move |req| {
                let (shared, exporter, serving) =
                    (shared.clone(), exporter.clone(), serving.clone());
                async move {
                    serving.serving.store(true, Relaxed);
                    let response = respond(req, shared, exporter).await;
                    serving.done();
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = state.close.notified() => {}
                _ = state.idle() => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
            }
            open.remove(id);
        });
    }
}

/// One connection's state, shared by its task and the accept loop.
struct ConnectionState {
    /// A request's headers arrived and its response is not written yet.
    serving: AtomicBool,
    /// When the connection opened or last answered a request, in ms since `opened`.
    idle_since_ms: AtomicU64,
    opened: Instant,
    /// Closes the connection (to make room for a newer one).
    close: Notify,
}

impl ConnectionState {
    fn new() -> ConnectionState {
        ConnectionState {
            serving: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            opened: Instant::now(),
            close: Notify::new(),
        }
    }

    /// A response was produced: the connection is idle from now.
    fn done(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.idle_since_ms.store(ms, Relaxed);
        self.serving.store(false, Relaxed);
    }

    /// Ends once the connection has been idle (no request answered, none under way) for
    /// [`IDLE_TIMEOUT`].
    async fn idle(&self) {
        loop {
            let since = self.opened + Duration::from_millis(self.idle_since_ms.load(Relaxed));
            let deadline = since + IDLE_TIMEOUT;
            if Instant::now() >= deadline && !self.serving.load(Relaxed) {
                return;
            }
            let next = deadline.max(Instant::now() + Duration::from_millis(100));
            tokio::time::sleep_until(next).await;
        }
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct OpenConnections {
    list: Mutex<Vec<(u64, IpAddr, Arc<ConnectionState>)>>,
    next_id: AtomicU64,
}

impl OpenConnections {
    /// Registers a connection from `peer`, closing the oldest one not answering a request
    /// (from `peer` first) when a bound is reached; `None` when no room can be made.
    fn admit(&self, peer: IpAddr) -> Option<(u64, Arc<ConnectionState>)> {
        let mut list = self.list.lock();
        let from_peer = list.iter().filter(|(_, ip, _)| *ip == peer).count();
        if from_peer >= MAX_PER_PEER && !close_oldest_idle(&mut list, |ip| ip == peer) {
            return None;
        }
        if list.len() >= MAX_CONNECTIONS && !close_oldest_idle(&mut list, |_| true) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let state = Arc::new(ConnectionState::new());
        list.push((id, peer, state.clone()));
        Some((id, state))
    }

    fn remove(&self, id: u64) {
        let mut list = self.list.lock();
        list.retain(|(open, _, _)| *open != id);
    }
}

/// Closes the oldest connection in `list` whose peer `which` picks and that is not
/// answering a request; false when there is none.
fn close_oldest_idle(
    list: &mut Vec<(u64, IpAddr, Arc<ConnectionState>)>,
    which: impl Fn(IpAddr) -> bool,
) -> bool {
    let oldest = list
        .iter()
        .position(|(_, ip, s)| which(*ip) && !s.serving.load(Relaxed));
    let Some(at) = oldest else {
        return false;
    };
    let (_, _, state) = list.remove(at);
    state.close.notify_one();
    true
}

/// The router.
async fn respond(
    req: Request<Incoming>,
    shared: Arc<Services>,
    exporter: Arc<Exporter>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Reading L1's figures locks each of its shards in turn: off the async threads.
            let body = tokio::task::spawn_blocking(move || exporter.render())
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

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn past_a_bound_the_oldest_connection_not_answering_makes_room() {
        let open = OpenConnections::default();
        let first: Vec<_> = (0..MAX_PER_PEER)
            .map(|_| open.admit(ip("10.0.0.1")).unwrap())
            .collect();
        first[0].1.serving.store(true, Relaxed);
        // One peer past its bound: its oldest idle connection (the second) is closed.
        assert!(open.admit(ip("10.0.0.1")).is_some());
        let listed = |id| open.list.lock().iter().any(|(i, _, _)| *i == id);
        assert!(listed(first[0].0), "answering: kept");
        assert!(!listed(first[1].0), "oldest idle: closed");
        // Past the total bound, any peer's oldest idle connection goes.
        for n in 0..MAX_CONNECTIONS {
            assert!(open.admit(ip(&format!("10.1.0.{}", n % 200))).is_some());
        }
        assert_eq!(open.list.lock().len(), MAX_CONNECTIONS);
        // When every connection is answering a request, a new one is refused.
        for (_, _, state) in open.list.lock().iter() {
            state.serving.store(true, Relaxed);
        }
        assert!(open.admit(ip("10.2.0.1")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_is_idle_after_the_timeout() {
        let state = ConnectionState::new();
        let started = Instant::now();
        state.idle().await;
        assert!(started.elapsed() >= IDLE_TIMEOUT);
        // A request under way is never idle; its end starts the count again.
        state.serving.store(true, Relaxed);
        let busy = tokio::time::timeout(IDLE_TIMEOUT * 2, state.idle()).await;
        assert!(busy.is_err(), "idle while answering");
        state.done();
        let since = Instant::now();
        state.idle().await;
        assert!(since.elapsed() >= IDLE_TIMEOUT);
    }
}
