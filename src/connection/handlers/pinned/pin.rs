//! The connection pinned to one client: its socket, its state, and its registration
//! under the client's id while it lives.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::state::{Effect, PinState};
use crate::metrics::Stats;
use crate::protocol::{command, FrameScanner};
use crate::upstream::{Dedicated, PinnedIds, Route};

/// A connection pinned to one client.
pub(in crate::connection) struct Pin<D: Dedicated> {
    pub(in crate::connection) stream: D,
    /// The route the connection is in (the session's, kept in step with it).
    pub(in crate::connection) route: Route,
    /// The name the connection carries (`CLIENT SETNAME`).
    pub(in crate::connection) name: Option<Bytes>,
    pub(in crate::connection) input: BytesMut,
    pub(in crate::connection) scanner: FrameScanner,
    /// Requests not written yet.
    pub(in crate::connection) out: BytesMut,
    pub(in crate::connection) state: PinState,
    /// When a frame last arrived or a request was sent with nothing owed.
    pub(in crate::connection) progress: Instant,
    /// How long the connection is kept for its client once clean and unused.
    pub(in crate::connection) keep: std::time::Duration,
    pub(in crate::connection) stats: Arc<Stats>,
    /// This connection's place among `--max-pinned`.
    _slot: OwnedSemaphorePermit,
    /// Where this connection's upstream id is known by its client's id, while it lives.
    pub(in crate::connection) registered: Option<(Arc<PinnedIds>, u64)>,
    /// The upstream's generation when the connection was opened (see [`Router::generation`]):
    /// it is closed when the upstream's node is replaced.
    ///
    /// [`Router::generation`]: crate::upstream::Router::generation
    pub(in crate::connection) generation: u64,
    /// In a Redis Cluster, the slot whose node the connection was opened on (`None`: any
    /// node, the first seed).
    pub(in crate::connection) slot: Option<u16>,
}

impl<D: Dedicated> Pin<D> {
    pub(in crate::connection) fn new(
        stream: D,
        route: Route,
        keep: std::time::Duration,
        stats: Arc<Stats>,
        slot: OwnedSemaphorePermit,
    ) -> Pin<D> {
        stats.upstream_pinned.fetch_add(1, Relaxed);
        Pin {
            _slot: slot,
            stream,
            route,
            name: None,
            input: BytesMut::with_capacity(4096),
            scanner: FrameScanner::default(),
            out: BytesMut::new(),
            state: PinState::new(route.db, route.resp),
            progress: Instant::now(),
            keep,
            stats,
            registered: None,
            generation: 0,
            slot: None,
        }
    }

    /// Makes this connection's upstream id (`upstream`) known by its client's id.
    pub(in crate::connection) fn register(
        &mut self,
        ids: &Arc<PinnedIds>,
        client: u64,
        upstream: Option<u64>,
    ) {
        if let Some(upstream) = upstream {
            ids.insert(client, upstream);
            self.registered = Some((ids.clone(), client));
        }
    }

    /// When a kept (clean, unused) connection is closed: `--upstream-idle-timeout` after
    /// its last reply.
    pub(in crate::connection) fn idle_until(&self) -> Instant {
        self.progress + self.keep
    }

    /// Queues a request for the upstream.
    pub(in crate::connection) fn send(&mut self, raw: &[u8], effect: Effect, blocking: bool) {
        self.send_muted(raw, effect, blocking, false);
    }

    /// Queues a request for the upstream; its reply is dropped when `muted`.
    pub(in crate::connection) fn send_muted(
        &mut self,
        raw: &[u8],
        effect: Effect,
        blocking: bool,
        muted: bool,
    ) {
        if self.state.idle() {
            self.progress = Instant::now();
        }
        self.out.extend_from_slice(raw);
        self.state.sent_muted(effect, blocking, muted);
    }

    /// Gives the connection the client's name (its replies are the sidecar's own).
    pub(in crate::connection) fn name_as(&mut self, name: Option<Bytes>) {
        let arg = name.clone().unwrap_or_default();
        self.send(
            &command(&[b"CLIENT", b"SETNAME", &arg]),
            Effect::Swallow,
            false,
        );
        self.name = name;
    }

    /// A kept connection the server has not closed meanwhile (nothing may arrive on a
    /// clean, idle connection).
    pub(in crate::connection) fn alive(&self) -> bool {
        self.stream.alive()
    }
}

impl<D: Dedicated> Drop for Pin<D> {
    fn drop(&mut self) {
        self.stats.upstream_pinned.fetch_sub(1, Relaxed);
        if let Some((ids, client)) = &self.registered {
            ids.remove(*client);
        }
    }
}
