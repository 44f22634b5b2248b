//! What the client is owed, in request order. [`Replies`] owns the output buffer, the
//! replies still waited for and the run of upstream-bound commands being grouped: a reply
//! known now is queued behind every reply owed before it (the open group included), and
//! every request this client sends upstream goes after the groups before it. Order is kept
//! by construction, not by the order in which callers happen to call.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::budget::Budget;
use super::group::{Group, Segment, Segments, GROUP_BUFFER};
use super::handlers::read as reads;
use crate::cache::Fetched;
use crate::error::{write_upstream_error, UpstreamError};
use crate::upstream::{Lane, Lanes, OnReply, Outgoing, PendingReply, Route, Router};

/// Where a client's requests go: its route's pool and lane, and the router that picks a
/// node by slot where requests are routed by slot.
pub(super) struct Via<'a, R: Router> {
    pub(super) router: &'a R,
    pub(super) route: Route,
    pub(super) pool: &'a R::Pool,
    pub(super) lane: &'a Lane,
}

impl<R: Router> Via<'_, R> {
    /// Sends `call` to the node of `slot` (the route's pool where there is no slot or
    /// requests are not routed by slot).
    pub(super) async fn send(
        &self,
        slot: Option<u16>,
        call: Outgoing,
    ) -> Result<PendingReply, UpstreamError> {
        match slot {
            Some(slot) if self.router.slotted() => {
                let pool = self.router.pool_for(self.route, slot);
                pool.send_on(self.lane, call).await
            }
            _ => self.pool.send_on(self.lane, call).await,
        }
    }
}

/// How a request sent outside any group ([`Replies::call`]) is handled upstream.
#[derive(Default)]
pub(super) struct How {
    /// Hears the replies first (an L1 fill).
    pub(super) on_reply: Option<OnReply>,
    /// The request may write keys.
    pub(super) writes: bool,
    /// Sent again once if its connection is lost before the replies arrive.
    pub(super) retryable: bool,
}

/// A reply that is not written yet because it, or one before it, waits on something.
pub(super) enum Pending {
    /// Known already, queued behind earlier replies.
    Ready(Bytes),
    /// A run of forwards and fetches not sent upstream yet (nothing more joins it).
    Unsent(Group),
    /// A run of forwards and fetches sent as one upstream call (see `group`).
    Group(Result<PendingReply, UpstreamError>, Segments),
    /// A GET answered by another client's fetch of the same key.
    Follow(oneshot::Receiver<Fetched>, Bytes),
    /// An MGET assembled from hits, its own fetch and other clients' fetches.
    Mget(reads::MgetReply),
    /// A command split by slot in a Redis Cluster, its parts' counts summed.
    Split(super::handlers::split::SplitReply),
    /// `CLIENT REPLY`: the replies after this one are dropped (`true`) or written again.
    Mute(bool),
}

/// The client's owed replies, oldest first, and the bytes ready for its socket.
pub(super) struct Replies {
    /// Replies written in order, not flushed yet.
    out: BytesMut,
    /// Replies owed before any new one, oldest first.
    queue: VecDeque<Pending>,
    /// The youngest owed replies: commands being grouped, not sent yet.
    open: Group,
    /// How many `Pending::Unsent` the queue holds (all after every sent group).
    unsent: usize,
    /// Where groups' request bytes are carved from: once every group made from its buffer
    /// is gone (written upstream, replies read) the buffer is reused, so a steady stream
    /// of groups allocates nothing.
    arena: BytesMut,
    /// A written group's segment list, emptied, for the next group.
    spare_segments: Vec<Segment>,
    /// A written group's reply frame list, emptied, for the next group's call.
    pub(super) spare_frames: Vec<Bytes>,
    /// Replies owed from now on are dropped (`CLIENT REPLY OFF|SKIP`).
    muting: bool,
    /// Where in `out` the dropped replies start: what follows is never sent.
    muted_from: Option<usize>,
    /// What the owed replies are estimated to hold, against the per-client bound.
    pub(super) budget: Budget,
}

impl Replies {
    /// Nothing owed, with an output buffer of `capacity`.
    pub(super) fn new(capacity: usize) -> Replies {
        Replies {
            out: BytesMut::with_capacity(capacity),
            queue: VecDeque::new(),
            open: Group::default(),
            unsent: 0,
            arena: BytesMut::new(),
            spare_segments: Vec::new(),
            spare_frames: Vec::new(),
            muting: false,
            muted_from: None,
            budget: Budget::default(),
        }
    }

    /// Drops the replies owed from now on (`on`), or writes them again: at once when
    /// nothing is owed, else once every reply owed before is written.
    pub(super) fn mute(&mut self, on: bool) {
        if self.muting == on {
            return;
        }
        self.muting = on;
        if self.is_idle() {
            self.apply_mute(on);
        } else {
            self.wait_for(Pending::Mute(on));
        }
    }

    /// Whether replies owed from now on are dropped.
    pub(super) fn muting(&self) -> bool {
        self.muting
    }

    /// Whether the reply being written now is dropped.
    pub(super) fn muted_now(&self) -> bool {
        self.muted_from.is_some()
    }

    pub(super) fn apply_mute(&mut self, on: bool) {
        match (on, self.muted_from) {
            (true, None) => self.muted_from = Some(self.out.len()),
            (false, Some(from)) => {
                self.out.truncate(from);
                self.muted_from = None;
            }
            _ => {}
        }
    }

    /// Writes a frame that is not dropped whatever the mute state (a pinned connection's
    /// reply known to be wanted, a pushed message): after what is written, before what
    /// is dropped.
    pub(super) fn write_through(&mut self, frame: &[u8]) {
        if let Some(from) = self.muted_from {
            self.out.truncate(from);
            self.out.extend_from_slice(frame);
            self.muted_from = Some(self.out.len());
        } else {
            self.out.extend_from_slice(frame);
        }
    }

    /// The bytes to send to the socket: the dropped replies at the end are discarded.
    pub(super) fn sendable(&mut self) -> &mut BytesMut {
        if let Some(from) = self.muted_from {
            self.out.truncate(from);
        }
        &mut self.out
    }

    /// Empties the output buffer once it is sent.
    pub(super) fn sent(&mut self) {
        self.out.clear();
        if self.muted_from.is_some() {
            self.muted_from = Some(0);
        }
    }

    /// Nothing is owed: a reply known now goes out at once.
    #[inline]
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.open.is_empty()
    }

    /// The output buffer, only while nothing is owed (the hot path writes a hit into it).
    #[inline]
    pub(super) fn idle_out(&mut self) -> Option<&mut BytesMut> {
        self.is_idle().then_some(&mut self.out)
    }

    /// A reply known now, written by `write`: at once when nothing is owed, else queued
    /// behind everything that is.
    pub(super) fn ready_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        if let Some(out) = self.idle_out() {
            return write(out);
        }
        let mut bytes = BytesMut::new();
        write(&mut bytes);
        self.budget.hold(bytes.len());
        self.wait_for(Pending::Ready(bytes.freeze()));
    }

    /// A reply known now (see [`Replies::ready_with`]).
    pub(super) fn ready(&mut self, bytes: &[u8]) {
        self.ready_with(|out| out.extend_from_slice(bytes));
    }

    /// A reply known now, kept as the given bytes when it must be queued.
    pub(super) fn ready_bytes(&mut self, bytes: Bytes) {
        match self.idle_out() {
            Some(out) => out.extend_from_slice(&bytes),
            None => {
                self.budget.hold(bytes.len());
                self.wait_for(Pending::Ready(bytes));
            }
        }
    }

    /// An upstream failure as this command's reply (see [`Replies::ready_with`]).
    pub(super) fn error(&mut self, e: &UpstreamError) {
        self.ready_with(|out| write_upstream_error(out, e));
    }

    /// A reply that waits on something, queued behind every reply owed before it.
    pub(super) fn wait_for(&mut self, pending: Pending) {
        self.seal();
        if matches!(pending, Pending::Unsent(_)) {
            self.unsent += 1;
        }
        self.queue.push_back(pending);
    }

    /// The open group for a command going to `target` (a slot and its node, see
    /// [`Group::joins`]): the open one is closed first when it goes to another node.
    pub(super) fn open_group_for(&mut self, target: Option<(u16, usize)>) -> &mut Group {
        if !self.open.is_empty() && !self.open.joins(target) {
            self.seal();
        }
        let group = self.open_group();
        group.joins(target);
        group
    }

    /// The open group: an upstream-bound command added to it is the youngest owed reply.
    pub(super) fn open_group(&mut self) -> &mut Group {
        if self.open.is_empty() && !self.open.has_room() {
            // Reclaims the arena's buffer when nothing made from it is alive any more.
            self.arena.reserve(GROUP_BUFFER);
            let bytes = self.arena.split_off(0);
            let segments = std::mem::take(&mut self.spare_segments);
            self.open.prepare(bytes, segments);
        }
        &mut self.open
    }

    /// Keeps a written group's reply frames list (emptied) for the next group's call.
    pub(super) fn recycle_frames(&mut self, mut frames: Vec<Bytes>) {
        frames.clear();
        if frames.capacity() > self.spare_frames.capacity() {
            self.spare_frames = frames;
        }
    }

    /// Keeps a written group's segment list (emptied) for the next group.
    pub(super) fn recycle_segments(&mut self, mut list: Vec<Segment>) {
        list.clear();
        if list.capacity() > self.spare_segments.capacity() {
            self.spare_segments = list;
        }
    }

    /// Closes the open group: whatever comes next is queued behind it.
    fn seal(&mut self) {
        if !self.open.is_empty() {
            let group = std::mem::take(&mut self.open);
            self.unsent += 1;
            self.queue.push_back(Pending::Unsent(group));
        }
    }

    /// Sends every group not sent yet, oldest first, on the client's lane.
    pub(super) async fn send_unsent<R: Router>(&mut self, via: &Via<'_, R>) {
        self.seal();
        if self.unsent == 0 {
            return;
        }
        // Unsent groups all come after the sent ones: find the oldest from the back.
        let mut first = self.queue.len();
        let mut left = self.unsent;
        while left > 0 {
            first -= 1;
            if matches!(self.queue[first], Pending::Unsent(_)) {
                left -= 1;
            }
        }
        for i in first..self.queue.len() {
            if let Pending::Unsent(group) = &mut self.queue[i] {
                let group = std::mem::take(group);
                let frames = std::mem::take(&mut self.spare_frames);
                let (sent, segments) = send(via, group, frames).await;
                self.queue[i] = Pending::Group(sent, segments);
            }
        }
        self.unsent = 0;
    }

    /// Sends a request of this client's outside any group, after every group before it.
    /// `slot`: the slot of the request's keys, where requests are routed by slot.
    pub(super) async fn call<R: Router>(
        &mut self,
        via: &Via<'_, R>,
        slot: Option<u16>,
        bytes: Bytes,
        replies: usize,
        how: How,
    ) -> Result<PendingReply, UpstreamError> {
        self.send_unsent(via).await;
        let label =
            crate::metrics::commands::index(crate::metrics::commands::first_command(&bytes));
        let call = Outgoing {
            bytes,
            replies,
            on_reply: how.on_reply,
            label: label as u16,
            frames: Vec::new(),
            writes: how.writes,
            retryable: how.retryable,
        };
        via.send(slot, call).await
    }

    /// The oldest owed reply, to be written next (with [`Replies::oldest_out`]).
    pub(super) fn take_oldest(&mut self) -> Option<Pending> {
        self.seal();
        let oldest = self.queue.pop_front()?;
        if matches!(oldest, Pending::Unsent(_)) {
            self.unsent -= 1;
        }
        Some(oldest)
    }

    /// Where the oldest owed reply, just taken, is written: it goes out before all others.
    pub(super) fn oldest_out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// The bytes ready for the socket (flushing and resizing only).
    pub(super) fn written(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Replaces an output buffer grown by a large reply, once it is empty.
    pub(super) fn shrink(&mut self, max_idle: usize, capacity: usize) {
        if self.out.is_empty() && self.out.capacity() > max_idle {
            self.out = BytesMut::with_capacity(capacity);
        }
    }
}

/// Sends a group as one upstream call (to its slot's node where requests are routed by
/// slot).
pub(super) async fn send<R: Router>(
    via: &Via<'_, R>,
    group: Group,
    frames: Vec<Bytes>,
) -> (Result<PendingReply, UpstreamError>, Segments) {
    let slot = group.target.map(|(slot, _)| slot);
    let (mut call, segments) = group.into_call();
    call.frames = frames;
    (via.send(slot, call).await, segments)
}
