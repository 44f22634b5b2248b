//! A client's way into its route's pool ([`Lane`]) and the reply it waits for
//! ([`PendingReply`]).

use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::UpstreamError;

/// A client's place in its route's pool: the slot its calls go to, kept while any of its
/// replies is pending.
#[derive(Debug)]
pub struct Lane {
    /// The slot last picked (`usize::MAX` until the first call).
    pub(super) slot: AtomicUsize,
    /// Where the first call goes: this modulo the pool's base slots.
    pub(super) spread: usize,
    /// Cloned into each pending reply: more than one strong count means calls in flight.
    pub(in crate::upstream) in_flight: Arc<()>,
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

    pub(super) fn idle(&self) -> bool {
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
    pub(in crate::upstream) rx: oneshot::Receiver<Result<Vec<Bytes>, UpstreamError>>,
    pub(in crate::upstream) deadline: Instant,
    pub(in crate::upstream) _lane: Arc<()>,
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
