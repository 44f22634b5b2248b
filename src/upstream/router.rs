//! The seam between a client connection and the upstream: a [`Router`] maps a request's
//! route (and, once Redis Cluster is fronted, its key's slot) to the pool that carries it,
//! and a pool ([`Lanes`]) takes a request's raw bytes on a client's lane and hands back its
//! reply frames. One node today ([`Upstream`] and [`Pool`]); a cluster router, and the fakes
//! the connection's handler tests run against, sit behind the same two traits.
//!
//! Only the miss path goes through them (a send, a route change, a pinned connection): an
//! L1 hit never does. Both are generic (no dynamic dispatch), so they cost nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Lane, OnReply, PendingReply, Pool, Route, Upstream};
use crate::error::UpstreamError;

/// What a request sent upstream is: its raw bytes and how to account for them.
pub struct Outgoing {
    /// One or more commands, as RESP.
    pub bytes: Bytes,
    /// How many reply frames `bytes` asks for.
    pub replies: usize,
    /// Called with the reply frames (and whether they may fill L1) before they are handed
    /// back.
    pub on_reply: Option<OnReply>,
    /// The first command's index in the counted commands (the call's latency label).
    pub label: u16,
    /// An empty list to collect the frames in (recycled by the caller).
    pub frames: Vec<Bytes>,
    /// Whether the request writes keys.
    pub writes: bool,
    /// Whether sending the request again cannot change anything: every command of it is
    /// read-only by the command table's flags ([`crate::command::Spec::retryable`]) or an
    /// L1 fetch. Such a call is sent once more, on its slot's next connection, when the
    /// connection it was on is lost before its replies arrived.
    pub retryable: bool,
}

/// A route's pool: sends a request on a client's lane and returns its pending reply.
pub trait Lanes: Send + Sync + 'static {
    /// Queues `call` on `lane`; fails at once when the route cannot take it.
    fn send_on(
        &self,
        lane: &Lane,
        call: Outgoing,
    ) -> impl Future<Output = Result<PendingReply, UpstreamError>> + Send;
}

/// A connection of a client's own (see the connection's pinned relay).
pub trait Dedicated: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether the connection is still open (nothing unread, not closed by the server).
    fn alive(&self) -> bool;
}

/// Maps a route (and later a key's slot) to the pool or the connection that serves it.
pub trait Router: Send + Sync + 'static {
    /// A route's pool.
    type Pool: Lanes;
    /// A client's own connection.
    type Dedicated: Dedicated;
    /// The route's pool, created on first use; when it cannot get one, why.
    fn try_pool(&self, route: Route) -> Result<Arc<Self::Pool>, UpstreamError>;
    /// The route's pool, or one that answers every call with why the route has none.
    fn pool(&self, route: Route) -> Arc<Self::Pool>;
    /// Whether the upstream is reachable (L1 may answer; see the connection's reads).
    fn link_up(&self) -> bool;
    /// Whether L1 is coherent with the upstream now: the invalidations of its node reach
    /// this sidecar (the control plane's link is up, or not needed). The control plane
    /// closes this gate when it loses them.
    fn coherent(&self) -> bool;
    /// A connection of the client's own in `route`'s state, and its upstream client id: on
    /// the node that owns `slot` where requests are routed by slot (any node for `None`).
    fn dedicated(
        &self,
        route: Route,
        slot: Option<u16>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Self::Dedicated, Option<u64>), UpstreamError>> + Send;
    /// Whether requests are routed by their key's slot (a Redis Cluster): the handlers
    /// compute a slot only then, and only for a request that goes upstream.
    fn slotted(&self) -> bool {
        false
    }
    /// The pool of `route` on the node that owns `slot` (the route's only pool where
    /// requests are not routed by slot).
    fn pool_for(&self, route: Route, slot: u16) -> Arc<Self::Pool> {
        let _ = slot;
        self.pool(route)
    }
    /// The pool of `route` on every primary, in a stable order (by address), for the
    /// keyless commands a Redis Cluster client fans out (SCAN, KEYS, DBSIZE, FLUSHALL...);
    /// the route's only pool where requests are not routed by slot.
    fn primaries(&self, route: Route) -> Vec<Arc<Self::Pool>> {
        vec![self.pool(route)]
    }
    /// Which node owns `slot` now, as an index that tells nodes apart (0 where there is
    /// one node): commands for one node share an upstream call.
    fn node_of(&self, slot: u16) -> usize {
        let _ = slot;
        0
    }
    /// The pool of `route` on the node at `address`, named by a redirect (`moved`: a
    /// `-MOVED`, after which the topology is refreshed; else an `-ASK`); `None` where
    /// requests are not routed by slot or no such node is known.
    fn redirected(
        &self,
        route: Route,
        address: &str,
        moved: bool,
    ) -> impl Future<Output = Option<Arc<Self::Pool>>> + Send {
        let _ = (route, address, moved);
        std::future::ready(None)
    }
    /// Asks the topology be read again, for `reason` (rate-limited; in the background):
    /// a reply showed the cluster changed. Nothing where requests are not routed by slot.
    fn refresh_topology(&self, reason: crate::upstream::cluster::Reason) {
        let _ = reason;
    }
    /// The generation of the node behind the upstream: bumped each time it is replaced (a
    /// Sentinel switch); always 0 where it never is.
    fn generation(&self) -> u64 {
        0
    }
    /// Resolves once the generation is no longer `opened_in`: a connection opened in it
    /// talks to a node that is no longer the upstream.
    fn switched(&self, opened_in: u64) -> impl Future<Output = ()> + Send {
        let _ = opened_in;
        std::future::pending()
    }
}

impl Lanes for Pool {
    #[inline]
    fn send_on(
        &self,
        lane: &Lane,
        c: Outgoing,
    ) -> impl Future<Output = Result<PendingReply, UpstreamError>> + Send {
        self.send_call(lane, c)
    }
}

impl Dedicated for super::stream::UpstreamStream {
    fn alive(&self) -> bool {
        super::stream::UpstreamStream::alive(self)
    }
}

impl Router for Upstream {
    type Pool = Pool;
    type Dedicated = super::stream::UpstreamStream;

    fn try_pool(&self, route: Route) -> Result<Arc<Pool>, UpstreamError> {
        Upstream::try_pool(self, route)
    }

    fn pool(&self, route: Route) -> Arc<Pool> {
        Upstream::pool(self, route)
    }

    #[inline]
    fn link_up(&self) -> bool {
        Upstream::link_up(self)
    }

    /// The upstream alone cannot tell (the control plane keeps the gate): always open.
    fn coherent(&self) -> bool {
        true
    }

    fn dedicated(
        &self,
        route: Route,
        slot: Option<u16>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Self::Dedicated, Option<u64>), UpstreamError>> + Send {
        let _ = slot;
        self.dedicated_with_id(route, timeout)
    }

    fn generation(&self) -> u64 {
        self.endpoint().generation()
    }

    fn switched(&self, opened_in: u64) -> impl Future<Output = ()> + Send {
        self.endpoint().switched(opened_in)
    }
}

impl PendingReply {
    /// A reply that `tx` will deliver (a fake pool's): waited for at most `timeout`.
    pub fn channel(
        lane: &Lane,
        timeout: Duration,
    ) -> (
        tokio::sync::oneshot::Sender<Result<Vec<Bytes>, UpstreamError>>,
        PendingReply,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pending = PendingReply {
            rx,
            deadline: std::time::Instant::now() + timeout,
            _lane: lane.in_flight.clone(),
        };
        (tx, pending)
    }
}
