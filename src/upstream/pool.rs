//! One route's pool: slots started on first use, each a supervised connection that
//! reconnects with jittered backoff. A client reaches its slot through a [`Lane`] and gets
//! its reply through a [`PendingReply`].
//!
//! Stalls: a client with nothing in flight moves off a slot whose oldest call has waited
//! longer than [`STALL_AFTER`] (a paused write, a slow script) to one that is not stalled,
//! starting one of [`EXTRA_SLOTS`] extra connections when every started slot is stalled.
//! A client with calls in flight keeps its slot, so its commands reach Redis in order.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::backoff::Backoff;
use super::conn::{self, Ended, Tracked};
use super::{handshake, Credentials, Link, Route, Target};
use crate::control::NO_EPOCH;
use crate::error::UpstreamError;
use crate::metrics::commands;

/// Requests queued per connection before senders wait.
const CALL_QUEUE: usize = 4096;
/// A slot whose oldest in-flight call is older than this is stalled: idle clients pick
/// another one.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(10);
/// Connections a pool may open beyond `--upstream-connections` while every one is stalled.
pub(crate) const EXTRA_SLOTS: usize = 4;

/// Runs on the connection's task when the replies arrive, before the caller sees them:
/// L1 fills happen here so they never wait on a client's reply order. The flag says whether
/// the replies may fill L1 (the connection's tracking covers what it read).
pub type OnReply = Box<dyn FnOnce(&[Bytes], bool) + Send + Sync>;

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
}

#[derive(Clone)]
pub(crate) enum SlotState {
    Connecting,
    Up(mpsc::Sender<Call>),
    Down(UpstreamError),
}

/// When the oldest call in flight on a connection was sent, readable without a lock.
#[derive(Default)]
pub(crate) struct Health {
    /// Microseconds since [`epoch`] plus one; 0 when nothing is in flight.
    oldest: AtomicU64,
}

/// The process-wide origin of [`Health`] times.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Health {
    pub(crate) fn set_oldest(&self, sent_at: Option<Instant>) {
        let micros = sent_at.map_or(0, |t| {
            t.saturating_duration_since(epoch()).as_micros() as u64 + 1
        });
        self.oldest.store(micros, Relaxed);
    }

    /// Whether the oldest call in flight has waited longer than [`STALL_AFTER`].
    fn stalled(&self, now: Instant) -> bool {
        match self.oldest.load(Relaxed) {
            0 => false,
            micros => {
                let sent = Duration::from_micros(micros - 1);
                now.saturating_duration_since(epoch()) > sent + STALL_AFTER
            }
        }
    }
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

/// A client's place in its route's pool: the slot its calls go to, kept while any of its
/// replies is pending.
#[derive(Debug)]
pub struct Lane {
    /// The slot last picked (`usize::MAX` until the first call).
    slot: AtomicUsize,
    /// Where the first call goes: this modulo the pool's base slots.
    spread: usize,
    /// Cloned into each pending reply: more than one strong count means calls in flight.
    in_flight: Arc<()>,
}

impl Lane {
    /// A lane starting on slot `n` modulo the pool's size (clients spread by their id).
    pub fn new(n: usize) -> Lane {
        Lane {
            slot: AtomicUsize::new(usize::MAX),
            spread: n,
            in_flight: Arc::new(()),
        }
    }

    fn idle(&self) -> bool {
        Arc::strong_count(&self.in_flight) == 1
    }
}

impl Default for Lane {
    fn default() -> Lane {
        Lane::new(0)
    }
}

/// A reply on its way.
pub struct PendingReply {
    rx: oneshot::Receiver<Result<Vec<Bytes>, UpstreamError>>,
    deadline: Instant,
    _lane: Arc<()>,
}

impl PendingReply {
    /// Waits for the reply frames, at most the upstream timeout.
    pub async fn wait(self) -> Result<Vec<Bytes>, UpstreamError> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        match tokio::time::timeout_at(deadline, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(UpstreamError::unavailable("connection lost")),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// [`PendingReply::wait`] on a timer the caller keeps from one call to the next:
    /// moving a registered timer to a later deadline is one atomic update, where a new
    /// timer is inserted into the timer wheel and removed again for every call.
    pub async fn wait_on(
        self,
        mut timer: Pin<&mut tokio::time::Sleep>,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(self.deadline));
        tokio::select! {
            biased;
            reply = self.rx => match reply {
                Ok(result) => result,
                Err(_) => Err(UpstreamError::unavailable("connection lost")),
            },
            _ = timer => Err(UpstreamError::Timeout),
        }
    }
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

    /// The slot for a lane's next call: its own while it has calls in flight or its own is
    /// usable; else a started slot that is usable, else one not started yet; else its own.
    /// Usable: not stalled, and not down (a slot still waiting to reconnect after an outage
    /// would fail the call at once while another slot is up again).
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
        let now = Instant::now();
        let usable = |i: usize| {
            let slot = &self.slots[i];
            !slot.health.stalled(now)
                && slot
                    .state
                    .get()
                    .is_none_or(|s| !matches!(*s.borrow(), SlotState::Down(_)))
        };
        if usable(own) {
            lane.slot.store(own, Relaxed);
            return own;
        }
        let pick = (0..self.slots.len())
            .find(|&i| self.slots[i].state.get().is_some() && usable(i))
            .or_else(|| (0..self.slots.len()).find(|&i| self.slots[i].state.get().is_none()))
            .unwrap_or(own);
        lane.slot.store(pick, Relaxed);
        pick
    }

    /// The state of slot `i`, starting its connection on first use.
    fn state(&self, i: usize) -> &watch::Receiver<SlotState> {
        let slot = &self.slots[i];
        slot.state.get_or_init(|| {
            let (tx, rx) = watch::channel(SlotState::Connecting);
            tokio::spawn(supervise(
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
        let command = commands::index(commands::first_command(&bytes)) as u16;
        self.send_labelled(lane, bytes, replies, on_reply, command, Vec::new())
            .await
    }

    /// [`Pool::send`] with the index of the first command already known (its latency
    /// histogram's label, see [`commands::index`]) and an empty list to collect the reply
    /// frames in (a caller that recycles the lists it gets back allocates none).
    pub async fn send_labelled(
        &self,
        lane: &Lane,
        bytes: Bytes,
        replies: usize,
        on_reply: Option<OnReply>,
        command: u16,
        frames: Vec<Bytes>,
    ) -> Result<PendingReply, UpstreamError> {
        if let Some(e) = &self.refusal {
            return Err(e.clone());
        }
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
        };
        let pending = PendingReply {
            rx,
            deadline: sent_at + self.target.timeout,
            _lane: lane.in_flight.clone(),
        };
        let slot = self.state(self.pick(lane));
        // Fast path: the connection is up and its queue has room; no clones, no await.
        let call = match &*slot.borrow() {
            SlotState::Up(tx) => match tx.try_send(call) {
                Ok(()) => return Ok(pending),
                Err(mpsc::error::TrySendError::Full(call)) => call,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(UpstreamError::unavailable("connection lost"))
                }
            },
            SlotState::Down(e) => return Err(e.clone()),
            SlotState::Connecting => call,
        };
        let mut state = slot.clone();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                SlotState::Up(tx) => {
                    tx.send(call)
                        .await
                        .map_err(|_| UpstreamError::unavailable("connection lost"))?;
                    return Ok(pending);
                }
                SlotState::Down(e) => return Err(e),
                SlotState::Connecting => {
                    let connect_timeout = self.target.connect_timeout;
                    match tokio::time::timeout(connect_timeout, state.changed()).await {
                        Ok(Ok(())) => continue,
                        _ => return Err(UpstreamError::unavailable("connect timed out")),
                    }
                }
            }
        }
    }
}

/// Keeps one slot connected for as long as the pool exists; closes it when the pool is
/// dropped.
async fn supervise(
    slot: watch::Sender<SlotState>,
    target: Arc<Target>,
    route: Route,
    creds: Option<Credentials>,
    link: Arc<Link>,
    health: Arc<Health>,
) {
    let seed = Arc::as_ptr(&health) as u64;
    let mut backoff = Backoff::new(seed);
    loop {
        let connected = tokio::select! {
            c = handshake::connect(&target, route, creds.as_ref()) => c,
            _ = slot.closed() => return,
        };
        if creds.is_none() {
            link.anonymous_handshake(&connected);
        }
        match connected {
            Ok(stream) => {
                backoff.reset();
                let (tx, rx) = mpsc::channel(CALL_QUEUE);
                let pings = tx.downgrade();
                // Tracking is turned on by the connection's first call, before any client's.
                let tracking = link.tracking.clone();
                let mut redirect = tracking.subscribe();
                let epoch = Arc::new(AtomicU64::new(NO_EPOCH));
                let now = *redirect.borrow_and_update();
                if let Some(call) = conn::tracking_call(now, &epoch, &tracking) {
                    let _ = tx.try_send(call);
                }
                // Keys this connection read stop being tracked when it closes: what it
                // may have filled goes too.
                let untracked = |epoch: &AtomicU64| {
                    if epoch.load(SeqCst) != NO_EPOCH {
                        link.tracking.untracked(route.db);
                    }
                };
                slot.send_replace(SlotState::Up(tx));
                link.connected();
                let tracked = Tracked {
                    tracking,
                    epoch: epoch.clone(),
                    redirect,
                };
                let stats = &link.stats;
                let ended = tokio::select! {
                    e = conn::run(stream, rx, pings, route.resp, &target, &health, stats, tracked) => e,
                    _ = slot.closed() => {
                        link.closed();
                        untracked(&epoch);
                        return;
                    }
                };
                let reason = match ended {
                    Ended::Lost(reason) => {
                        link.lost(&reason);
                        reason
                    }
                    Ended::Closed(_) => {
                        // Stuck while the server answers: a new connection at once.
                        link.closed();
                        untracked(&epoch);
                        slot.send_replace(SlotState::Connecting);
                        continue;
                    }
                };
                slot.send_replace(SlotState::Down(UpstreamError::Unavailable(reason)));
            }
            Err(e) => {
                link.failed(&e.to_string());
                slot.send_replace(SlotState::Down(e));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = slot.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
