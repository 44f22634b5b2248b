//! The link state every pool of an upstream shares: connections up, losses and
//! reconnects, whether the upstream is down, what it answered about credentials, and the
//! link events the rest of the sidecar reacts to (logged once per change).

use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::Arc;

use super::endpoint::Endpoint;
use super::gate::FillGate;
use super::status::{AUTH_FAILED, AUTH_OK, AUTH_REQUIRED};
use crate::error::UpstreamError;
use crate::metrics::Stats;

/// Link transitions the rest of the sidecar reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// A connection was established after one had been lost.
    Up,
    /// An established connection was lost.
    Lost,
    /// The upstream answers after none had (its first connection, or the first answer
    /// since it was down): fired once [`super::Upstream::link_up`] says so.
    Reachable,
}

/// Hears each [`LinkEvent`].
pub type LinkHook = Box<dyn Fn(LinkEvent) + Send + Sync>;

/// A fault seen on one of an upstream's connections (a Redis Cluster node's: its topology
/// may have changed, see [`super::Upstream::on_faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A connection was lost, or a connect attempt failed.
    Disconnect,
    /// A call (or a connect attempt) went unanswered past the timeout.
    Timeout,
}

/// Hears each [`Fault`].
pub type FaultHook = Box<dyn Fn(Fault) + Send + Sync>;

/// [`Link::anonymous`]: a connection without credentials was served.
pub(super) const SERVED: u8 = 1;
/// [`Link::anonymous`]: a connection without credentials was answered `-NOAUTH`.
pub(super) const NOAUTH: u8 = 2;

/// Shared link state of all pools.
pub(crate) struct Link {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) up_slots: AtomicUsize,
    /// Connections lost and not re-established yet, and those re-established.
    pub(super) lost_pending: AtomicUsize,
    pub(super) reconnects: AtomicUsize,
    /// Calls sent again on a new connection after theirs was lost.
    pub(super) retries: AtomicUsize,
    /// A connection was lost since the last `Up` event was announced.
    pub(super) lost_since_up: AtomicBool,
    /// The outage was logged; the recovery will be.
    pub(super) down_logged: AtomicBool,
    /// No connection is up and the last attempt or connection failed (until then, zero
    /// connections because idle pools were closed is not "down").
    pub(super) down: AtomicBool,
    /// What the last handshake without credentials was answered: [`SERVED`], [`NOAUTH`],
    /// or 0 (none answered yet).
    pub(super) anonymous: AtomicU8,
    /// What the sidecar's own route (identity 0) was last answered about its credentials:
    /// `AUTH_OK`, `AUTH_REQUIRED` or `AUTH_FAILED` (see [`UpstreamState`]).
    pub(super) auth: AtomicU8,
    pub(super) hook: LinkHook,
    /// Hears faults (set once, see [`super::Upstream::on_faults`]).
    pub(super) faults: std::sync::OnceLock<FaultHook>,
    pub(super) stats: Arc<Stats>,
    /// This upstream's own calls answered and their summed latency (a cluster's figures
    /// per node; `stats` counts every node's).
    pub(super) calls: Arc<Calls>,
    /// Server-assisted tracking: what each connection turns on, and whether its replies
    /// may fill L1.
    pub(super) tracking: Arc<dyn FillGate>,
}

/// Calls answered by one upstream, and the sum of their latencies.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(super) requests: AtomicU64,
    pub(super) latency_us: AtomicU64,
}

impl Calls {
    /// Counts one call answered after `latency`.
    pub(super) fn record(&self, latency: std::time::Duration) {
        self.requests.fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.fetch_add(us, Relaxed);
    }
}

impl Link {
    /// Records what a handshake without credentials was answered (its result).
    pub(super) fn anonymous_handshake<T>(&self, result: &Result<T, UpstreamError>) {
        match result {
            Ok(_) => self.anonymous.store(SERVED, SeqCst),
            Err(UpstreamError::Refused(text)) if text.starts_with("NOAUTH") => {
                self.anonymous.store(NOAUTH, SeqCst)
            }
            Err(_) => {}
        }
    }

    /// Records what a handshake of the sidecar's own route (identity 0) showed about its
    /// credentials, and logs each change: `Ok(())` when it was let in, else the refusal.
    pub(super) fn own_handshake(&self, result: Result<(), &UpstreamError>) {
        let (state, reason) = match result {
            Ok(()) => (AUTH_OK, None),
            Err(UpstreamError::Refused(text)) if text.starts_with("NOAUTH") => {
                (AUTH_REQUIRED, Some(text.to_string()))
            }
            Err(e @ UpstreamError::AuthFailed(_)) => (AUTH_FAILED, Some(e.to_string())),
            Err(_) => return,
        };
        if self.auth.swap(state, SeqCst) == state {
            return;
        }
        let address = self.endpoint.display();
        match (state, reason) {
            (AUTH_REQUIRED, Some(reason)) => tracing::info!(
                upstream = %address,
                "upstream requires authentication ({reason}) and --upstream has no \
                 credentials: each client authenticates itself"
            ),
            (AUTH_FAILED, Some(reason)) => tracing::error!(
                upstream = %address,
                "{reason}: the upstream refuses the sidecar's credentials (--upstream, or \
                 --upstream-password-file); not ready until they are right"
            ),
            _ => tracing::info!(upstream = %address, "upstream accepts the sidecar's credentials"),
        }
    }

    /// A handshake was refused for its credentials: the server answers, so this is no
    /// outage (an outage logged before is over).
    pub(super) fn answered(&self) {
        if self.up_slots.load(SeqCst) == 0 && self.down.swap(false, SeqCst) {
            (self.hook)(LinkEvent::Reachable);
        }
        if self.down_logged.swap(false, SeqCst) {
            tracing::info!(upstream = %self.endpoint.display(), "upstream reachable again");
        }
    }

    pub(super) fn connected(&self) {
        self.up_slots.fetch_add(1, SeqCst);
        let pending = self
            .lost_pending
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        if pending.is_ok() {
            self.reconnects.fetch_add(1, SeqCst);
        }
        if self.down.swap(false, SeqCst) {
            (self.hook)(LinkEvent::Reachable);
        }
        if self.down_logged.swap(false, SeqCst) {
            tracing::info!(upstream = %self.endpoint.display(), "upstream reachable again");
        }
        if self.lost_since_up.swap(false, SeqCst) {
            (self.hook)(LinkEvent::Up);
        }
    }

    pub(super) fn lost(&self, reason: &str) {
        self.lost_pending.fetch_add(1, SeqCst);
        let left = self.up_slots.fetch_sub(1, SeqCst) - 1;
        self.lost_since_up.store(true, SeqCst);
        (self.hook)(LinkEvent::Lost);
        if left == 0 {
            self.down.store(true, SeqCst);
            if !self.down_logged.swap(true, SeqCst) {
                tracing::warn!(upstream = %self.endpoint.display(), "upstream down: {reason}");
            }
        }
    }

    /// A fault seen on a connection: told to the fault hook, if one is set.
    pub(super) fn fault(&self, fault: Fault) {
        if let Some(hook) = self.faults.get() {
            hook(fault);
        }
    }

    /// A call left unanswered by a lost connection was sent again on a new one.
    pub(super) fn retried(&self) {
        self.retries.fetch_add(1, SeqCst);
    }

    /// The sidecar closed a connection while the server answered (idle pool, stuck call):
    /// no update was missed, so this is no link event.
    pub(super) fn closed(&self) {
        self.up_slots.fetch_sub(1, SeqCst);
    }

    /// A connect attempt failed; logged once per outage.
    pub(super) fn failed(&self, reason: &str) {
        if self.up_slots.load(SeqCst) == 0 {
            self.down.store(true, SeqCst);
            if !self.down_logged.swap(true, SeqCst) {
                tracing::warn!(upstream = %self.endpoint.display(), "upstream unreachable: {reason}");
            }
        }
    }
}
