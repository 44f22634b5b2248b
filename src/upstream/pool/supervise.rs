//! A slot's supervisor: keeps its connection up, reconnecting with jittered backoff, and
//! sends the read-only calls a lost connection left unanswered once more on the next one.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Call, Health, SlotState, CALL_QUEUE};
use crate::cache::ConnFence;
use crate::error::UpstreamError;
use crate::upstream::backoff::Backoff;
use crate::upstream::conn::{self, Ended, Tracked};
use crate::upstream::gate::NO_EPOCH;
use crate::upstream::{handshake, Credentials, Fault, Link, Route, Target};

/// Calls a lost connection left unanswered that may be sent again (see `conn::run`), and
/// why the connection ended.
struct Retries {
    calls: Vec<Call>,
    reason: Arc<str>,
}

impl Retries {
    /// Answers every call with `error` (the slot could not get a connection in time).
    fn fail(&mut self, error: &UpstreamError) {
        for call in self.calls.drain(..) {
            let _ = call.tx.send(Err(error.clone()));
        }
    }

    /// Queues the calls on a new connection before any other client's (so a client's
    /// later calls, which wait for the slot while these are pending, still reach Redis
    /// after them); one whose deadline has passed meanwhile gets the error that ended its
    /// connection.
    fn resend(&mut self, tx: &mpsc::Sender<Call>, target: &Target, link: &Link) {
        for call in self.calls.drain(..) {
            if call.sent_at.elapsed() >= target.timeout {
                let _ = call
                    .tx
                    .send(Err(UpstreamError::Unavailable(self.reason.clone())));
                continue;
            }
            match tx.try_send(call) {
                Ok(()) => link.retried(),
                Err(e) => {
                    let call = e.into_inner();
                    let _ = call
                        .tx
                        .send(Err(UpstreamError::Unavailable(self.reason.clone())));
                }
            }
        }
    }
}

/// Keeps one slot connected for as long as the pool exists; closes it when the pool is
/// dropped.
pub(super) async fn supervise(
    slot: watch::Sender<SlotState>,
    target: Arc<Target>,
    route: Route,
    creds: Option<Credentials>,
    link: Arc<Link>,
    health: Arc<Health>,
) {
    let seed = Arc::as_ptr(&health) as u64;
    let mut backoff = Backoff::new(seed);
    let mut retries = Retries {
        calls: Vec::new(),
        reason: "connection lost".into(),
    };
    // A lost connection's fence when `--serve-stale-when-down` keeps what it filled for
    // hits while the upstream is down: closed once the next connection is up.
    let mut kept: Option<ConnFence> = None;
    loop {
        // The sidecar's own route takes its current credentials (a rotated password file).
        let creds = match route.user {
            0 => target.credentials.current(),
            _ => creds.clone(),
        };
        let connected = tokio::select! {
            c = handshake::connect(&target, route, creds.as_ref()) => c,
            _ = slot.closed() => {
                kept.take().into_iter().for_each(ConnFence::close);
                return;
            }
        };
        if creds.is_none() {
            link.anonymous_handshake(&connected);
        }
        if route.user == 0 {
            link.own_handshake(connected.as_ref().map(|_| ()));
        }
        match connected {
            Ok((stream, generation)) => {
                backoff.reset();
                kept.take().into_iter().for_each(ConnFence::close);
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
                // Then what the last connection left to retry: replies read after the
                // tracking call may fill L1 like any other.
                retries.resend(&tx, &target, &link);
                // Keys this connection read stop being tracked when it closes (redis#11767):
                // what it filled ends with it, however it ends.
                let fence = ConnFence::open();
                slot.send_replace(SlotState::Up(tx));
                link.connected();
                let tracked = Tracked {
                    tracking,
                    epoch: epoch.clone(),
                    redirect,
                    endpoint: target.endpoint.clone(),
                    generation,
                    calls: link.calls.clone(),
                    fence,
                };
                let stats = &link.stats;
                let (ended, left) = tokio::select! {
                    e = conn::run(stream, rx, pings, route.resp, &target, &health, stats, tracked) => e,
                    _ = crate::lifecycle::Rare::new(slot.closed()) => {
                        link.closed();
                        fence.close();
                        return;
                    }
                };
                retries.calls = left;
                let ended_silent = matches!(ended, Ended::Silent(_));
                let reason = match ended {
                    Ended::Lost(reason) | Ended::Silent(reason) => {
                        match target.keep_fills_while_down {
                            true => kept = Some(fence),
                            false => fence.close(),
                        }
                        link.lost(&reason);
                        link.fault(match ended_silent {
                            true => Fault::Timeout,
                            false => Fault::Disconnect,
                        });
                        reason
                    }
                    Ended::Closed(reason) => {
                        fence.close();
                        // Stuck while the server answers, or the primary switched: a new
                        // connection at once.
                        link.closed();
                        retries.reason = reason;
                        slot.send_replace(SlotState::Connecting);
                        continue;
                    }
                };
                retries.reason = reason.clone();
                // Clients wait for the next connection while retries are pending (their
                // later calls must not overtake them); else they fail at once.
                match retries.calls.is_empty() {
                    true => slot.send_replace(SlotState::Down(UpstreamError::Unavailable(reason))),
                    false => slot.send_replace(SlotState::Connecting),
                };
            }
            Err(e) => {
                match &e {
                    UpstreamError::AuthFailed(_) => link.answered(),
                    UpstreamError::Refused(text) if text.starts_with("NOAUTH") => link.answered(),
                    UpstreamError::Timeout => {
                        link.failed(&e.to_string());
                        link.fault(Fault::Timeout);
                    }
                    _ => {
                        link.failed(&e.to_string());
                        link.fault(Fault::Disconnect);
                    }
                }
                retries.fail(&e);
                slot.send_replace(SlotState::Down(e));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = slot.closed() => return,
        }
    }
}
