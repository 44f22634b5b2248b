//! One route's pool: a fixed number of slots, each a supervised connection that reconnects
//! with backoff. Callers pick a slot and get their reply through a [`PendingReply`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::{conn, Credentials, Link, Route, Target};
use crate::error::UpstreamError;

/// Requests queued per connection before senders wait.
const CALL_QUEUE: usize = 4096;
/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs on the connection's task when the replies arrive, before the caller sees them:
/// L1 fills happen here so they never wait on a client's reply order.
pub type OnReply = Box<dyn FnOnce(&[Bytes]) + Send + Sync>;

/// A request for one connection: `replies` frames are expected for `bytes`.
pub(crate) struct Call {
    pub bytes: Bytes,
    pub replies: usize,
    pub tx: oneshot::Sender<Result<Vec<Bytes>, UpstreamError>>,
    pub on_reply: Option<OnReply>,
    pub sent_at: Instant,
    /// The sidecar's own liveness PING: not counted as a client request.
    pub health_check: bool,
}

#[derive(Clone)]
pub(crate) enum SlotState {
    Connecting,
    Up(mpsc::Sender<Call>),
    Down(UpstreamError),
}

/// A route's connections.
pub struct Pool {
    slots: Box<[watch::Receiver<SlotState>]>,
    timeout: Duration,
    connect_timeout: Duration,
}

/// A reply on its way.
pub struct PendingReply {
    rx: oneshot::Receiver<Result<Vec<Bytes>, UpstreamError>>,
    deadline: Instant,
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
}

impl Pool {
    pub(crate) fn start(
        target: Arc<Target>,
        route: Route,
        creds: Option<Credentials>,
        link: Arc<Link>,
    ) -> Pool {
        let slots = (0..target.connections.max(1))
            .map(|_| {
                let (tx, rx) = watch::channel(SlotState::Connecting);
                tokio::spawn(supervise(
                    tx,
                    target.clone(),
                    route,
                    creds.clone(),
                    link.clone(),
                ));
                rx
            })
            .collect();
        Pool {
            slots,
            timeout: target.timeout,
            connect_timeout: target.connect_timeout,
        }
    }

    /// Queues `bytes` (holding `replies` commands) on slot `slot` and returns the pending
    /// reply. Fails at once when the slot's connection is down.
    pub async fn send(
        &self,
        slot: usize,
        bytes: Bytes,
        replies: usize,
        on_reply: Option<OnReply>,
    ) -> Result<PendingReply, UpstreamError> {
        let (reply_tx, rx) = oneshot::channel();
        let sent_at = Instant::now();
        let call = Call {
            bytes,
            replies,
            tx: reply_tx,
            on_reply,
            sent_at,
            health_check: false,
        };
        let pending = PendingReply {
            rx,
            deadline: sent_at + self.timeout,
        };
        let slot = &self.slots[slot % self.slots.len()];
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
                    match tokio::time::timeout(self.connect_timeout, state.changed()).await {
                        Ok(Ok(())) => continue,
                        _ => return Err(UpstreamError::unavailable("connect timed out")),
                    }
                }
            }
        }
    }
}

/// Keeps one slot connected for as long as the pool exists.
async fn supervise(
    slot: watch::Sender<SlotState>,
    target: Arc<Target>,
    route: Route,
    creds: Option<Credentials>,
    link: Arc<Link>,
) {
    let mut backoff = MIN_BACKOFF;
    while !slot.is_closed() {
        match conn::connect(&target, route, creds.as_ref()).await {
            Ok(stream) => {
                backoff = MIN_BACKOFF;
                let (tx, rx) = mpsc::channel(CALL_QUEUE);
                let pings = tx.downgrade();
                slot.send_replace(SlotState::Up(tx));
                link.connected();
                let timeout = target.timeout;
                let reason = conn::run(stream, rx, pings, route.resp, timeout, &link.stats).await;
                link.lost(&reason);
                slot.send_replace(SlotState::Down(UpstreamError::Unavailable(reason)));
            }
            Err(e) => {
                link.failed(&e.to_string());
                slot.send_replace(SlotState::Down(e));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
