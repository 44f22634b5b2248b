//! Writing what the client is owed: every owed reply in request order, waiting for each
//! as needed (the connection's side of [`super::replies::Replies`]), and the context's
//! way of asking the upstream outside any group.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::handlers::Ctx;
use super::replies::{send, How, Pending, Via};
use super::session::Session;
use super::{ClientStream, Connection, MAX_BUFFERED_OUT};
use crate::cache::Fetched;
use crate::error::{write_upstream_error, UpstreamError};
use crate::protocol::{command, null};
use crate::upstream::{PendingReply, Router};

/// Where `session`'s requests go through `router`.
pub(super) fn via<'a, R: Router>(router: &'a R, session: &'a Session<R>) -> Via<'a, R> {
    Via {
        router,
        route: session.route(),
        pool: &session.pool,
        lane: &session.lane,
    }
}

impl<R: Router> Ctx<R> {
    /// Sends every group not sent yet (a group full enough goes before the batch ends).
    pub(super) async fn send_unsent(&mut self) {
        let via = via(&*self.router, &self.session);
        self.replies.send_unsent(&via).await;
    }

    /// Where a command with `key` goes in a Redis Cluster: its slot and the slot's node;
    /// `None` (any node) where requests are not routed by slot. Computed only for a
    /// request that goes upstream.
    pub(super) fn target_of(&self, key: Option<&[u8]>) -> Option<(u16, usize)> {
        if !self.router.slotted() {
            return None;
        }
        let slot = crate::upstream::cluster::slot(key?);
        Some((slot, self.router.node_of(slot)))
    }

    /// Sends `bytes` (holding `replies` commands) on this client's upstream slot, outside
    /// any group (after every group before it), and waits for the replies.
    pub(super) async fn ask(
        &mut self,
        bytes: Bytes,
        replies: usize,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        self.ask_about(bytes, replies, None).await
    }

    /// [`Ctx::ask`] for a request about `key`, whose slot routes it in a Redis Cluster.
    pub(super) async fn ask_about(
        &mut self,
        bytes: Bytes,
        replies: usize,
        key: Option<&[u8]>,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        let slot = self.target_of(key).map(|(slot, _)| slot);
        let via = via(&*self.router, &self.session);
        let sent = (self.replies)
            .call(&via, slot, bytes.clone(), replies, How::default())
            .await;
        let mut frames = self.await_reply(sent).await?;
        if slot.is_some() && replies == 1 && frames[0].starts_with(b"-") {
            let first = frames[0].clone();
            frames[0] = self.follow(&bytes, (0, 1), first, false).await;
        }
        Ok(frames)
    }

    pub(super) async fn await_reply(
        &mut self,
        sent: Result<PendingReply, UpstreamError>,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        let result = match sent {
            Ok(pending) => pending.wait_on(self.reply_timer.as_mut()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let stats = &self.services.stats;
            stats
                .upstream_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if *e == UpstreamError::Timeout {
                stats
                    .upstream_timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        result
    }

    pub(super) async fn await_follow(&self, rx: oneshot::Receiver<Fetched>) -> Fetched {
        let timeout = self.services.config.upstream_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(fetched)) => fetched,
            _ => Fetched::Unknown,
        }
    }
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Sends what is grouped, then writes every owed reply, in order, waiting for each as
    /// needed.
    pub(super) async fn drain(&mut self) {
        self.cx.send_unsent().await;
        while let Some(pending) = self.cx.replies.take_oldest() {
            match pending {
                Pending::Ready(bytes) => self.write_frame(&bytes).await,
                Pending::Unsent(group) => {
                    let frames = std::mem::take(&mut self.cx.replies.spare_frames);
                    let via = via(&*self.cx.router, &self.cx.session);
                    let (sent, segments) = send(&via, group, frames).await;
                    self.write_group(sent, segments).await;
                }
                Pending::Group(sent, segments) => self.write_group(sent, segments).await,
                Pending::Follow(rx, key) => {
                    let fetched = self.cx.await_follow(rx).await;
                    self.write_fetched(fetched, key).await;
                }
                Pending::Mget(m) => self.write_mget(m).await,
                // Boxed: a cross-slot command of a Redis Cluster, too rare to size the
                // drain's state (moved once per batch) by its own.
                Pending::Split(s) => Box::pin(self.write_split(s)).await,
                Pending::Mute(on) => self.cx.replies.apply_mute(on),
            }
            if self.cx.replies.written().len() >= MAX_BUFFERED_OUT {
                // What is written is no longer held: the output stays small however much
                // the drained window holds.
                self.flush_or_fail().await;
            }
        }
        self.cx.replies.budget.settle();
    }

    /// Writes what another client's fetch learned (the oldest owed reply), or fetches the
    /// key itself when that fetch could not tell.
    async fn write_fetched(&mut self, fetched: Fetched, key: Bytes) {
        let resp = self.cx.session.resp;
        match fetched {
            Fetched::Value(bulk) => {
                self.cx.replies.budget.learn(bulk.len());
                self.write_frame(&bulk).await;
            }
            Fetched::Missing => self.cx.replies.oldest_out().extend_from_slice(null(resp)),
            Fetched::Unknown => match self
                .cx
                .ask_about(command(&[b"GET", &key]), 1, Some(&key))
                .await
            {
                Ok(frames) => {
                    self.cx.replies.budget.learn(frames[0].len());
                    self.write_frame(&frames[0]).await;
                }
                Err(e) => write_upstream_error(self.cx.replies.oldest_out(), &e),
            },
        }
    }

    /// Writes an upstream reply frame as the oldest owed reply (see [`super::io::ClientIo`]).
    pub(super) async fn write_frame(&mut self, frame: &Bytes) {
        self.io.write_frame(&mut self.cx.replies, frame).await;
    }

    /// Flushes the output mid-drain; a failure is reported by the next flush.
    pub(super) async fn flush_or_fail(&mut self) {
        self.io.flush_or_fail(&mut self.cx.replies).await;
    }

    /// Writes the bytes ready for the client.
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush(&mut self.cx.replies).await
    }
}
