//! One client connection: read, decode a batch of pipelined requests, dispatch each (L1,
//! upstream or local), then write every reply in request order with one flush.

mod budget;
mod counts;
mod drain;
mod group;
mod handlers;
mod io;
mod observers;
mod replies;
mod router;
mod session;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::acl::{changes_rules, Read};
use crate::audit::Countdown;
use crate::cache::KeyRef;
use crate::command::{classify_spec, Action, Invalidation};
use crate::error::{write_not_supported, write_request_error};
use crate::metrics::commands;
use crate::protocol::{null, peek_get, Limits, Request, Resp};
use crate::services::Services;
use crate::upstream::{Lane, Route, Router};
use handlers::reply_mode::ReplyMode;
use handlers::split::{self, Plan};
use handlers::{acl, forward, local, pinned, read, Ctx};
use io::ClientIo;
use observers::Observers;
use replies::Replies;
use session::Session;

/// Requests dispatched before their replies are written and flushed.
const MAX_BATCH: usize = 1024;
/// Replies buffered for the client before they are flushed mid-batch: a client that
/// pipelines reads of large values and does not read its replies holds about this much of
/// the sidecar's memory, not a whole batch of values.
const MAX_BUFFERED_OUT: usize = 1024 * 1024;
/// Initial size of the read and write buffers (small: thousands of idle clients are normal).
const BUFFER: usize = 4 * 1024;
/// A buffer grown past this by one large request or reply is replaced once it is idle.
const MAX_IDLE_BUFFER: usize = 1024 * 1024;
/// A reply frame at least this big is written from its own bytes, not copied into `out`.
const LARGE_REPLY: usize = 64 * 1024;

/// What the hot path did with the head of the input.
#[derive(PartialEq, Eq)]
enum Head {
    /// A `GET` answered from L1.
    Served,
    /// A `GET` that L1 does not hold (L1 was asked).
    Missed,
    /// Anything else, or L1 may not answer now.
    Other,
}

/// Whether the connection goes on after a request.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// A client's byte stream: a TCP socket, or an in-memory pipe in the handler tests.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for T {}

/// The client's address and the sidecar's, as the socket gave them.
type Addrs = Option<(std::net::SocketAddr, std::net::SocketAddr)>;

/// A client connection being served: by default a TCP client routed by the services'
/// upstream; the handler tests put an in-memory stream and a fake router in their place.
pub struct Connection<R: Router = Services, S = TcpStream> {
    /// This client's close signal (`CLIENT KILL ID`), registered while it is served (first
    /// field: dropped, so forgotten, before the socket closes).
    killed: crate::services::KillGuard,
    /// The client's stream, input and parser, and writing to it.
    io: ClientIo<S>,
    /// The shutdown signal, for waits outside the main loop (a pinned relay).
    stopping: CancellationToken,
    /// What the command handlers work on: the session, the replies owed, the hit-path
    /// observers and the services.
    cx: Ctx<R>,
}

impl Connection {
    /// Wraps an accepted socket; `id` spreads clients over the upstream pool slots.
    pub fn new(shared: Arc<Services>, stream: TcpStream, id: u64) -> Connection {
        let addrs = stream.peer_addr().ok().zip(stream.local_addr().ok());
        let router = shared.clone();
        Connection::over(shared, router, stream, addrs, id)
    }
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Serves a client over `stream`, its requests routed by `router`; `id` spreads
    /// clients over the upstream pool slots.
    pub fn over(shared: Arc<Services>, router: Arc<R>, stream: S, addrs: Addrs, id: u64) -> Self {
        let db = shared.config.upstream.db;
        let route = Route {
            db,
            resp: Resp::V2,
            user: 0,
        };
        let pool = router.pool(route);
        let audit = Countdown::new(shared.audit.rate(), id);
        let killed = shared.kills.register(id + 1);
        Connection {
            killed,
            io: ClientIo::new(stream),
            stopping: CancellationToken::new(),
            cx: Ctx {
                session: Session {
                    id: id + 1,
                    db,
                    resp: Resp::V2,
                    user: 0,
                    marks: shared.acl.marks(0),
                    name: None,
                    lane: Lane::new(id as usize),
                    pool,
                    parked: None,
                    reply: ReplyMode::On,
                },
                services: shared,
                router,
                addrs,
                replies: Replies::new(BUFFER),
                unacked_writes: 0,
                observers: Observers::new(audit),
                reply_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            },
        }
    }

    /// Serves the client until it closes, sends QUIT, breaks the protocol, or shutdown is
    /// signalled: then every request already read is answered and flushed, the write side
    /// is shut down and the input drained (see `Connection::close_gracefully`).
    pub async fn run(mut self, stopping: CancellationToken) {
        let configured = self.cx.services.config.limits;
        // One shutdown future for the connection's life, not one per request.
        self.stopping = stopping.clone();
        let mut stop = crate::lifecycle::Rare::new(stopping.clone().cancelled_owned());
        // Checked at the first bytes: by then an upstream socket of this very sidecar has
        // been registered (it registers before it writes its handshake).
        // Not kept from one read to the next: a kill is one `notify_one`, which a waiter
        // registered here would take from the pinned relay a blocked client waits in.
        let killed = self.killed.signal.clone();
        let mut peer = self.cx.addrs;
        loop {
            // A client that keeps its pipeline full always has input ready: look at the
            // flag between batches, not only while idle.
            if stopping.is_cancelled() {
                return self.close_gracefully().await;
            }
            let parked = self.cx.session.parked.as_ref().map(|p| p.idle_until());
            let read = tokio::select! {
                biased;
                r = self.io.read() => r,
                _ = &mut stop => return self.close_gracefully().await,
                _ = killed.notified() => return,
                _ = pinned::sleep_until(parked), if parked.is_some() => {
                    // The kept connection was not needed again: close it.
                    self.cx.session.parked = None;
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => self.cx.observers.new_batch(),
            }
            if peer
                .take()
                .is_some_and(|(p, l)| self.cx.services.upstream.outbound().is_own(p, l))
            {
                let e = crate::error::UpstreamError::Itself;
                self.cx
                    .replies
                    .ready_with(|out| crate::error::write_upstream_error(out, &e));
                let _ = self.flush().await;
                return;
            }
            let upstream_max_bulk = self.cx.services.upstream_max_bulk.load(Relaxed);
            let limits = configured.with_upstream_max_bulk(upstream_max_bulk);
            let mut flow = Flow::Continue;
            let mut batch = 0;
            loop {
                if batch == MAX_BATCH
                    || self.cx.replies.written().len() >= MAX_BUFFERED_OUT
                    || self.cx.replies.budget.is_spent()
                {
                    if self.cx.replies.budget.is_spent() {
                        self.cx
                            .services
                            .stats
                            .output_bound_waits
                            .fetch_add(1, Relaxed);
                    }
                    self.drain().await;
                    if self.flush().await.is_err() {
                        return;
                    }
                    batch = 0;
                }
                batch += 1;
                let head = self.serve_hit(&limits);
                if head == Head::Served {
                    self.cx.served_one();
                    continue;
                }
                match self.io.next_request(&limits) {
                    Ok(Some(req)) if head == Head::Missed => {
                        // The GET L1 just missed: straight to the fetch, no second lookup.
                        self.cx.observers.fast_get();
                        read::fetch_missing(&mut self.cx, req.args[1].clone()).await;
                        self.cx.served_one();
                    }
                    Ok(Some(req)) => {
                        flow = self.dispatch(req).await;
                        if flow == Flow::Close {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.cx
                            .services
                            .stats
                            .rejected_protocol
                            .fetch_add(1, Relaxed);
                        self.drain().await;
                        self.cx
                            .replies
                            .ready_with(|out| write_request_error(out, &e));
                        flow = Flow::Close;
                        break;
                    }
                }
            }
            self.drain().await;
            self.cx.publish_counts();
            if self.flush().await.is_err() || flow == Flow::Close {
                return;
            }
            self.io.size_buffers(&mut self.cx.replies);
        }
    }

    /// Shutdown: every request read so far has been answered and flushed; what the client
    /// sent after it is not read. Shut down the write side (the client sees its replies,
    /// then end of stream), then read and discard the input until the client closes or
    /// the grace period ends: closing a socket with unread input makes the kernel send a
    /// reset, which can destroy replies the client has not read yet.
    async fn close_gracefully(mut self) {
        let grace = self.cx.services.config.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace.mul_f32(0.9);
        self.io.close_gracefully(deadline).await;
    }

    /// The hot path: a complete `GET key` at the head of the input that L1 answers is served
    /// straight from the input buffer into the output buffer, building no request and
    /// cloning nothing.
    #[inline]
    fn serve_hit(&mut self, limits: &Limits) -> Head {
        if !self.cx.replies.is_idle() || !self.cx.may_read_l1() {
            return Head::Other;
        }
        let Some((len, key)) = peek_get(&self.io.input, limits) else {
            return Head::Other;
        };
        if !self.cx.permitted(Read::Get) {
            return Head::Missed;
        }
        let cx = &mut self.cx;
        let s = &cx.session;
        let key_bytes = &self.io.input[key.clone()];
        let key_ref = KeyRef {
            user: s.user,
            db: s.db,
            key: key_bytes,
        };
        let Some(out) = cx.replies.idle_out() else {
            return Head::Other;
        };
        let served_from = out.len();
        let nil = null(s.resp);
        let timed = cx.observers.lookup_started();
        let hit = cx.services.l1.read(&key_ref, |value, namespace| {
            out.extend_from_slice(value.unwrap_or(nil));
            namespace
        });
        Observers::lookup_done(&cx.services, timed);
        let Some(namespace) = hit else {
            return Head::Missed;
        };
        cx.observers.fast_get();
        if cx.observers.on_hit(&cx.services, namespace, key_bytes) {
            let key = Bytes::copy_from_slice(key_bytes);
            let served = Bytes::copy_from_slice(&cx.replies.written()[served_from..]);
            cx.audit_hit(key, served);
        }
        self.io.input.advance(len);
        self.io.parser.reset();
        Head::Served
    }

    /// Serves one request (a pinned one counts itself in the relay, see `served_one`).
    async fn dispatch(&mut self, req: Request) -> Flow {
        if self.cx.router.slotted() && self.keyless(&req).await {
            self.cx.served_one();
            return Flow::Continue;
        }
        let pins = self.dispatch_one(req).await;
        if pins.1 {
            return pins.0;
        }
        self.cx.served_one();
        pins.0
    }

    /// Serves one request; true with the flow when it was relayed on a pinned connection.
    async fn dispatch_one(&mut self, req: Request) -> (Flow, bool) {
        let table = self.cx.services.table.get();
        let spec = table.lookup(&req.args);
        let metric = spec.map_or_else(|| commands::index(req.name()), |s| s.metric.into());
        let retryable = spec.is_some_and(|s| s.retryable);
        self.cx
            .services
            .stats
            .commands
            .add(self.cx.session.id, metric, 1);
        if changes_rules(&req.args) {
            self.drain().await;
            acl::change_rules(&mut self.cx, req).await;
            return (Flow::Continue, false);
        }
        let mut action = classify_spec(&req, self.cx.session.db, table, spec);
        let l1 = &self.cx.services.l1;
        if matches!(action, Action::Get | Action::Mget) && !l1.enabled() {
            // No L1 (--l1-ttl 0): reads are plain forwards, grouped like any other.
            action = Action::Forward(Invalidation::None);
        } else if matches!(action, Action::Get | Action::Mget)
            && !req.args[1..].iter().any(|k| l1.caches(k))
        {
            // Every key in a namespace with `cache = false`: a plain forward, a miss each.
            for key in &req.args[1..] {
                self.cx.observers.on_bypass(&self.cx.services, key);
            }
            action = Action::Forward(Invalidation::None);
        }
        match action {
            Action::Get => read::get(&mut self.cx, req.args[1].clone()).await,
            Action::Mget => read::mget(&mut self.cx, &req.args[1..]).await,
            Action::Forward(inv) => {
                let mut key = spec.and_then(|s| req.args.get(usize::from(s.first_key?)));
                if let Some(spec) = spec.filter(|_| self.cx.router.slotted()) {
                    // Routed by slot: every key listed (only here, never on the hit path).
                    match split::plan(spec, &req.args) {
                        Plan::Key(Some(at)) => key = req.args.get(at),
                        Plan::Key(None) => {}
                        Plan::Cross(parts) => {
                            self.cx.cross_slot(&req.args, parts, inv, retryable).await;
                            return (Flow::Continue, false);
                        }
                    }
                }
                let key = key.map(|k| &k[..]);
                forward::forward(
                    &mut self.cx,
                    req.raw.clone(),
                    inv,
                    (metric as u16, retryable),
                    key,
                )
                .await
            }
            Action::Local(local) => {
                self.drain().await;
                return (local::run(&mut self.cx, local, req).await, false);
            }
            Action::Pin => {
                self.drain().await;
                return (self.pinned(req).await, true);
            }
            Action::Refuse(name) => self
                .cx
                .replies
                .ready_with(|out| write_not_supported(out, &name)),
        }
        (Flow::Continue, false)
    }
}

#[cfg(test)]
mod tests;
