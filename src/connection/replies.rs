//! The reply queue: replies that wait on the upstream or on another client's fetch are
//! written in request order once they arrive.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::Segment;
use super::{reads, Connection};
use crate::cache::Fetched;
use crate::error::{write_upstream_error, UpstreamError};
use crate::protocol::{command, null};
use crate::upstream::PendingReply;

/// A reply that is not written yet because it, or one before it, waits on something.
pub(super) enum Pending {
    /// Known already, queued behind earlier replies.
    Ready(Bytes),
    /// A run of forwards and fetches sent as one upstream call (see `group`).
    Group(Result<PendingReply, UpstreamError>, Vec<Segment>),
    /// A GET answered by another client's fetch of the same key.
    Follow(oneshot::Receiver<Fetched>, Bytes),
    /// An MGET assembled from hits, its own fetch and other clients' fetches.
    Mget(reads::MgetReply),
}

impl Connection {
    /// Sends what is grouped, then writes every queued reply, in order, waiting for each
    /// as needed.
    pub(super) async fn drain(&mut self) {
        self.send_group().await;
        while let Some(pending) = self.queue.pop_front() {
            match pending {
                Pending::Ready(bytes) => self.out.extend_from_slice(&bytes),
                Pending::Group(sent, segments) => self.write_group(sent, segments).await,
                Pending::Follow(rx, key) => {
                    let fetched = self.await_follow(rx).await;
                    self.write_fetched(fetched, key).await;
                }
                Pending::Mget(m) => self.write_mget(m).await,
            }
        }
    }

    /// Sends `bytes` (holding `replies` commands) on this client's upstream slot, outside
    /// any group, and waits for the replies.
    pub(super) async fn ask(
        &self,
        bytes: Bytes,
        replies: usize,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        let sent = self
            .session
            .pool
            .send(&self.session.lane, bytes, replies, None)
            .await;
        self.await_reply(sent).await
    }

    pub(super) async fn await_reply(
        &self,
        sent: Result<PendingReply, UpstreamError>,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        let result = match sent {
            Ok(pending) => pending.wait().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.shared
                .stats
                .upstream_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Writes the first reply frame, or the error.
    fn write_result(&mut self, result: Result<Vec<Bytes>, UpstreamError>) {
        match result {
            Ok(frames) => self.out.extend_from_slice(&frames[0]),
            Err(e) => write_upstream_error(&mut self.out, &e),
        }
    }

    pub(super) async fn await_follow(&self, rx: oneshot::Receiver<Fetched>) -> Fetched {
        let timeout = self.shared.config.upstream_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(fetched)) => fetched,
            _ => Fetched::Unknown,
        }
    }

    /// Writes what another client's fetch learned, or fetches the key itself when that
    /// fetch could not tell.
    async fn write_fetched(&mut self, fetched: Fetched, key: Bytes) {
        match fetched {
            Fetched::Value(bulk) => self.out.extend_from_slice(&bulk),
            Fetched::Missing => self.out.extend_from_slice(null(self.session.resp)),
            Fetched::Unknown => {
                let result = self.ask(command(&[b"GET", &key]), 1).await;
                self.write_result(result);
            }
        }
    }
}
