//! The fill gate: what an upstream connection asks before its replies fill L1, and the
//! redirect its `CLIENT TRACKING` follows. The control plane (a layer above) implements it;
//! the upstream only knows this trait, so a pool never reaches up into the control plane.

use tokio::sync::watch;

/// The epoch an upstream connection has before tracking took effect on it: never current.
pub const NO_EPOCH: u64 = u64::MAX;

/// Where invalidations go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    /// Bumped on every change.
    pub epoch: u64,
    /// The control connection's `CLIENT ID`, while it is up and subscribed.
    pub id: Option<i64>,
}

/// What an upstream connection asks of the control plane.
pub trait FillGate: Send + Sync {
    /// Whether replies fill L1 only under the control connection's epoch (tracking on).
    fn enabled(&self) -> bool;
    /// Whether tracking is broadcast on the control connection alone (`--tracking bcast`):
    /// pooled connections do not turn `CLIENT TRACKING` on, and what one filled stays when
    /// it closes (Redis keeps no per-connection state to lose).
    fn broadcast(&self) -> bool {
        false
    }
    /// Whether a reply read on a connection whose tracking took effect in `conn_epoch` may
    /// fill L1 now.
    fn may_fill(&self, conn_epoch: u64) -> bool;
    /// The redirect, and each change of it.
    fn subscribe(&self) -> watch::Receiver<Redirect>;
    /// The upstream said the redirect `id` is broken (`tracking-redir-broken`).
    fn redirect_broken(&self, id: i64);
    /// The upstream refused `CLIENT TRACKING` with `reply`.
    fn refused(&self, reply: &[u8]);
}

/// A gate for an upstream without tracking: every reply may fill (tests, tools).
pub struct Open(watch::Sender<Redirect>);

impl Default for Open {
    fn default() -> Self {
        Open(watch::Sender::new(Redirect { epoch: 0, id: None }))
    }
}

impl FillGate for Open {
    fn enabled(&self) -> bool {
        false
    }
    fn may_fill(&self, _: u64) -> bool {
        true
    }
    fn subscribe(&self) -> watch::Receiver<Redirect> {
        self.0.subscribe()
    }
    fn redirect_broken(&self, _: i64) {}
    fn refused(&self, _: &[u8]) {}
}
