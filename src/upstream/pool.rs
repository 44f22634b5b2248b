//! One route's pool: slots started on first use, each a supervised connection that
//! reconnects with jittered backoff. A client reaches its slot through a [`Lane`] and gets
//! its reply through a [`PendingReply`].
//!
//! Head-of-line blocking: every call pipelined behind one that Redis holds waits with it.
//! A client with nothing in flight therefore moves off a slot whose oldest call has waited
//! longer than [`STALL_AFTER`](health::STALL_AFTER) (a paused write, a slow script) to one
//! that is not stalled, starting one of [`EXTRA_SLOTS`] extra connections when every
//! started slot is stalled. Before that threshold it already avoids a slot with a write in
//! flight (the call `CLIENT PAUSE WRITE` holds) when a started one has none. A client with
//! calls in flight keeps its slot, so its commands reach Redis in order: it moves only
//! once every reply it waited for has arrived (its writes are then applied).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::cache::FilledBy;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Credentials, Link, Outgoing, Route, Target};
use crate::error::UpstreamError;
use crate::metrics::commands;

pub(crate) use health::Health;
/// A pool answers the command table's `COMMAND` (one call on the default lane).
impl crate::command::Source for Pool {
    async fn call(&self, raw: Bytes) -> Result<Bytes, UpstreamError> {
        let pending = self.send(&Lane::default(), raw, 1, None).await?;
        let mut frames = pending.wait().await?;
        Ok(frames.swap_remove(0))
    }
}

#[cfg(test)]
use health::{epoch, STALL_AFTER};
pub use lane::{Lane, PendingReply};

/// Requests queued per connection before senders wait.
const CALL_QUEUE: usize = 4096;
/// Connections a pool may open beyond `--upstream-connections` while every one is stalled.
pub(crate) const EXTRA_SLOTS: usize = 4;

/// Runs on the connection's task when the replies arrive, before the caller sees them:
/// L1 fills happen here so they never wait on a client's reply order. The connection the
/// replies were read on, when they may fill L1 (its tracking covers what it read): what it
/// fills ends when it does.
pub type OnReply = Box<dyn FnOnce(&[Bytes], Option<FilledBy>) + Send + Sync>;

/// A request for one connection: `replies` frames are expected for `bytes`.
pub(crate) struct Call {
    pub bytes: Bytes,
    pub replies: usize,
    pub tx: oneshot::Sender<Result<Vec<Bytes>, UpstreamError>>,
    pub on_reply: Option<OnReply>,
    pub sent_at: Instant,
    /// The sidecar's own liveness PING: not counted as a client request.
    pub health_check: bool,
    /// The index of the call's first command (the latency histogram's label).
    pub command: u16,
    /// Counts the call's commands as in flight while it lives (client calls only).
    pub _counted: Option<crate::metrics::InFlight>,
    /// Where the reply frames are collected (an emptied list the caller recycles, or new).
    pub frames: Vec<Bytes>,
    /// The call holds a command that writes keys (counted in the slot's [`Health`]).
    pub writes: bool,
    /// The call may be sent again on the slot's next connection if this one is lost before
    /// its replies arrive (see [`super::Outgoing::retryable`]); false once it was.
    pub retryable: bool,
}

#[derive(Clone)]
pub(crate) enum SlotState {
    Connecting,
    Up(mpsc::Sender<Call>),
    Down(UpstreamError),
}

/// One connection of a pool, started on first use.
struct Slot {
    state: OnceLock<watch::Receiver<SlotState>>,
    health: Arc<Health>,
}

/// A route's connections.
pub struct Pool {
    slots: Box<[Slot]>,
    /// Slots clients are spread over; the rest are opened only when these stall.
    base: usize,
    /// Why this pool has no slots (see [`Pool::refused`]).
    refusal: Option<UpstreamError>,
    route: Route,
    creds: Option<Credentials>,
    target: Arc<Target>,
    link: Arc<Link>,
}

impl Pool {
    pub(crate) fn new(
        target: Arc<Target>,
        route: Route,
        creds: Option<Credentials>,
        link: Arc<Link>,
    ) -> Pool {
        let base = target.connections.max(1);
        let slots = (0..base + EXTRA_SLOTS)
            .map(|_| Slot {
                state: OnceLock::new(),
                health: Arc::default(),
            })
            .collect();
        Pool {
            slots,
            base,
            refusal: None,
            route,
            creds,
            target,
            link,
        }
    }

    /// A pool that answers every call with `error` (the route could not get a real one).
    pub(crate) fn refused(
        target: Arc<Target>,
        route: Route,
        link: Arc<Link>,
        error: UpstreamError,
    ) -> Pool {
        Pool {
            slots: Box::new([]),
            base: 1,
            refusal: Some(error),
            route,
            creds: None,
            target,
            link,
        }
    }

    /// Connections this pool has started.
    pub fn started(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state.get().is_some())
            .count()
    }

    /// The slot for a lane's next call: its own while it has calls in flight. An idle lane
    /// keeps its own if it is clear; else takes a started slot that is clear, else its own
    /// if usable, else a started slot that is usable, else one not started yet; else its
    /// own. Usable: not stalled, and not down (a slot still waiting to reconnect after an
    /// outage would fail the call at once while another slot is up again). Clear: usable,
    /// with no write in flight (one Redis may be holding, before it looks stalled).
    fn pick(&self, lane: &Lane) -> usize {
        let own = lane.slot.load(Relaxed);
        if !lane.idle() && own < self.slots.len() {
            return own;
        }
        let own = if own < self.slots.len() {
            own
        } else {
            lane.spread % self.base
        };
        // Read once, and only if a slot has a call in flight (an idle client's usual case
        // has none).
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(Instant::now);
        let started = |i: usize| self.slots[i].state.get().is_some();
        let usable = |i: usize| {
            let slot = &self.slots[i];
            !slot.health.stalled(now)
                && slot
                    .state
                    .get()
                    .is_none_or(|s| !matches!(*s.borrow(), SlotState::Down(_)))
        };
        let clear = |i: usize| !self.slots[i].health.writing() && usable(i);
        if clear(own) {
            lane.slot.store(own, Relaxed);
            return own;
        }
        // The others from the one after its own: lanes that move spread over them.
        let n = self.slots.len();
        let others = || (1..n).map(move |d| (own + d) % n);
        let pick = others()
            .find(|&i| started(i) && clear(i))
            .or_else(|| usable(own).then_some(own))
            .or_else(|| others().find(|&i| started(i) && usable(i)))
            .or_else(|| (0..n).find(|&i| !started(i)))
            .unwrap_or(own);
        lane.slot.store(pick, Relaxed);
        pick
    }

    /// The state of slot `i`, starting its connection on first use.
    fn state(&self, i: usize) -> &watch::Receiver<SlotState> {
        let slot = &self.slots[i];
        slot.state.get_or_init(|| {
            let (tx, rx) = watch::channel(SlotState::Connecting);
            crate::lifecycle::spawn(supervise::supervise(
                tx,
                self.target.clone(),
                self.route,
                self.creds.clone(),
                self.link.clone(),
                slot.health.clone(),
            ));
            rx
        })
    }

    /// Queues `bytes` (holding `replies` commands) on the lane's slot and returns the
    /// pending reply. Fails at once when the slot's connection is down.
    pub async fn send(
        &self,
        lane: &Lane,
        bytes: Bytes,
        replies: usize,
        on_reply: Option<OnReply>,
    ) -> Result<PendingReply, UpstreamError> {
        let label = commands::index(commands::first_command(&bytes)) as u16;
        let call = Outgoing {
            bytes,
            replies,
            on_reply,
            label,
            frames: Vec::new(),
            writes: false,
            retryable: false,
        };
        self.send_call(lane, call).await
    }

    /// [`Pool::send`] of an [`Outgoing`]: with the index of the first command already
    /// known (its latency histogram's label, see [`commands::index`]), an empty list to
    /// collect the reply frames in (a caller that recycles the lists it gets back allocates
    /// none), whether the request writes keys (other clients then avoid queuing behind it)
    /// and whether it may be retried once on the slot's next connection.
    pub async fn send_call(
        &self,
        lane: &Lane,
        outgoing: Outgoing,
    ) -> Result<PendingReply, UpstreamError> {
        let Outgoing {
            bytes,
            replies,
            on_reply,
            label: command,
            frames,
            writes,
            retryable,
        } = outgoing;
        if let Some(e) = &self.refusal {
            return Err(e.clone());
        }
        // Picked before this call's pending reply exists: that counts as in flight on the
        // lane, and would keep an idle client on its slot however stalled.
        let slot = self.state(self.pick(lane));
        let (reply_tx, rx) = oneshot::channel();
        let sent_at = Instant::now();
        let call = Call {
            command,
            bytes,
            replies,
            tx: reply_tx,
            on_reply,
            sent_at,
            health_check: false,
            _counted: Some(crate::metrics::InFlight::new(
                self.link.stats.clone(),
                replies,
            )),
            frames,
            writes,
            retryable,
        };
        let pending = PendingReply {
            rx,
            deadline: sent_at + self.target.timeout,
            _lane: lane.in_flight.clone(),
        };
        // Fast path: the connection is up and its queue has room; no clones, no await.
        let mut call = match &*slot.borrow() {
            SlotState::Up(tx) => match tx.try_send(call) {
                Ok(()) => return Ok(pending),
                // Full, or the connection ended this instant (never written: the call
                // waits for the slot's next state like any other).
                Err(mpsc::error::TrySendError::Full(call))
                | Err(mpsc::error::TrySendError::Closed(call)) => call,
            },
            SlotState::Down(e) => return Err(e.clone()),
            SlotState::Connecting => call,
        };
        let mut state = slot.clone();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                SlotState::Up(tx) => match tx.send(call).await {
                    Ok(()) => return Ok(pending),
                    Err(mpsc::error::SendError(back)) => call = back,
                },
                SlotState::Down(e) => return Err(e),
                SlotState::Connecting => {}
            }
            // The attempt under way is bounded by `--connect-timeout` itself, from when it
            // started (just after this wait began, for a slot's first one): waiting a quarter
            // longer lets the call get its cause (a TLS error, a refused AUTH, a server that
            // never answered the handshake) rather than a bare timeout of its own.
            let connect_timeout = self.target.connect_timeout;
            let wait = connect_timeout + connect_timeout / 4;
            match tokio::time::timeout(wait, state.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(UpstreamError::unavailable("connect timed out")),
            }
        }
    }
}

mod health;
mod lane;
mod supervise;
#[cfg(test)]
mod tests;
