//! Runs of upstream-bound commands from one pipeline — forwards and GET fetches — sent as
//! one upstream call: one queue entry, one wake and one reply hand-off per run instead of
//! per command. Evictions still happen before sending and again when each reply arrives.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::replies::Pending;
use super::{ClientStream, Connection};
use crate::upstream::Router;
use crate::command::Invalidation;
use crate::error::{write_upstream_error, UpstreamError};
use crate::profiler::slowlog::{call_args, UNKNOWN_USER};
use crate::protocol::write_command;
use crate::upstream::{OnReply, PendingReply};

/// A group is sent once it holds this many bytes, or when the batch ends.
const MAX_GROUP_BYTES: usize = 64 * 1024;
/// Room a new group starts with (taken from the connection's arena, see `Replies`).
pub(super) const GROUP_BUFFER: usize = 4 * 1024;

/// What one command of a group is, for writing its reply.
pub(super) enum Segment {
    /// A forwarded command: one reply; its invalidation is applied again on arrival.
    Forward(Invalidation),
    /// `GET` + `PTTL` of an L1 fill: two replies, the client gets the first.
    Fetch,
}

impl Segment {
    fn replies(&self) -> usize {
        match self {
            Segment::Forward(_) => 1,
            Segment::Fetch => 2,
        }
    }

    /// Whether the command writes keys (Redis holds it under `CLIENT PAUSE WRITE`).
    fn writes(&self) -> bool {
        matches!(self, Segment::Forward(inv) if *inv != Invalidation::None)
    }
}

/// A group's segments once sent, with the request bytes (a refcount, for the slow log).
pub(super) struct Segments {
    list: Vec<Segment>,
    request: Bytes,
}

/// A run of upstream-bound commands (see [`super::replies::Replies`] for where it stands
/// among the client's owed replies).
#[derive(Default)]
pub(super) struct Group {
    bytes: BytesMut,
    /// One large command, kept as the bytes it arrived in (no copy into `bytes`).
    alone: Option<Bytes>,
    segments: Vec<Segment>,
    replies: usize,
    /// Fill callbacks with the position and count of their reply frames.
    fills: Vec<(usize, usize, OnReply)>,
    /// The first command's index in the counted commands (the call's latency label).
    label: u16,
    /// Some command writes keys (see [`crate::upstream::Pool::send_labelled`]).
    writes: bool,
}

impl Group {
    /// True when nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the group has a buffer with room for a small command.
    pub(super) fn has_room(&self) -> bool {
        self.bytes.capacity() - self.bytes.len() >= 512
    }

    /// Gives an empty group its buffer and segment list.
    pub(super) fn prepare(&mut self, bytes: BytesMut, segments: Vec<Segment>) {
        self.bytes = bytes;
        self.segments = segments;
    }

    /// A group of one large command, sent as the bytes it arrived in.
    fn alone(raw: Bytes, segment: Segment, label: u16) -> Group {
        Group {
            label,
            replies: segment.replies(),
            writes: segment.writes(),
            alone: Some(raw),
            segments: vec![segment],
            ..Group::default()
        }
    }

    /// Adds a command; true once the group is big enough to send.
    fn add(&mut self, bytes: &[u8], segment: Segment, fill: Option<OnReply>, label: u16) -> bool {
        self.add_with(|out| out.extend_from_slice(bytes), segment, fill, label)
    }

    /// Adds a command that `write` encodes into the group's buffer; true once the group is
    /// big enough to send.
    fn add_with(
        &mut self,
        write: impl FnOnce(&mut BytesMut),
        segment: Segment,
        fill: Option<OnReply>,
        label: u16,
    ) -> bool {
        let replies = segment.replies();
        if self.segments.is_empty() {
            self.label = label;
        }
        if let Some(fill) = fill {
            self.fills.push((self.replies, replies, fill));
        }
        write(&mut self.bytes);
        self.writes |= segment.writes();
        self.segments.push(segment);
        self.replies += replies;
        self.bytes.len() >= MAX_GROUP_BYTES
    }

    /// The upstream call (bytes, reply count, fill callback, label, whether it writes)
    /// and the segments to write its replies by.
    pub(super) fn into_call(self) -> (Bytes, usize, Option<OnReply>, Segments, u16, bool) {
        let Group {
            bytes,
            alone,
            segments,
            replies,
            fills,
            label,
            writes,
        } = self;
        let on_reply: Option<OnReply> = (!fills.is_empty()).then(|| {
            Box::new(move |frames: &[Bytes], may_fill: bool| {
                for (at, n, fill) in fills {
                    fill(&frames[at..at + n], may_fill);
                }
            }) as OnReply
        });
        let bytes = alone.unwrap_or_else(|| bytes.freeze());
        let segments = Segments {
            list: segments,
            request: bytes.clone(),
        };
        (bytes, replies, on_reply, segments, label, writes)
    }
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Evicts what the command may write, then adds it to the group.
    /// `metric`: the command's index in the counted commands.
    pub(super) async fn forward(&mut self, raw: Bytes, mut inv: Invalidation, metric: u16) {
        self.invalidate(&mut inv);
        if inv != Invalidation::None {
            self.unacked_writes += 1;
        }
        self.replies.budget.expect(1);
        if raw.len() >= MAX_GROUP_BYTES {
            // A large command goes alone, as the bytes it arrived in: no copy.
            let group = Group::alone(raw, Segment::Forward(inv), metric);
            self.replies.wait_for(Pending::Unsent(group));
            return self.send_unsent().await;
        }
        self.add(&raw, Segment::Forward(inv), None, metric).await;
    }

    /// Adds an L1 fetch of `key` (`GET` + `PTTL`, one write and one round trip) whose
    /// replies go to `fill` first.
    pub(super) async fn fetch(&mut self, key: &[u8], fill: OnReply) {
        let get = crate::metrics::commands::GET as u16;
        let write = |out: &mut BytesMut| {
            write_command(out, &[b"GET", key]);
            write_command(out, &[b"PTTL", key]);
        };
        let group = self.replies.open_group();
        if group.add_with(write, Segment::Fetch, Some(fill), get) {
            self.send_unsent().await;
        }
    }

    async fn add(&mut self, bytes: &[u8], segment: Segment, fill: Option<OnReply>, label: u16) {
        if self.replies.open_group().add(bytes, segment, fill, label) {
            self.send_unsent().await;
        }
    }

    /// Writes a group's replies in order (or the upstream error once per command): the
    /// oldest owed replies. A wait of at least `--slow-threshold` goes to the slow log.
    pub(super) async fn write_group(
        &mut self,
        sent: Result<PendingReply, UpstreamError>,
        segments: Segments,
    ) {
        let started = Instant::now();
        let result = self.await_reply(sent).await;
        let waited = started.elapsed();
        if self.shared.profiler.slowlog.is_slow(waited) {
            self.log_slow(waited, &segments.request, segments.list.len());
        }
        let mut at = 0;
        let mut list = segments.list;
        for mut segment in list.drain(..) {
            if let Segment::Forward(inv) = &mut segment {
                self.invalidate_after(inv);
                if *inv != Invalidation::None {
                    self.unacked_writes -= 1;
                }
            }
            match &result {
                Ok(frames) => {
                    self.replies.budget.learn(frames[at].len());
                    self.write_frame(&frames[at]).await;
                }
                Err(e) => write_upstream_error(self.replies.oldest_out(), e),
            }
            at += segment.replies();
        }
        self.replies.recycle_segments(list);
        if let Ok(frames) = result {
            self.replies.recycle_frames(frames);
        }
    }

    /// Logs a slow call as its first command (see [`call_args`]) with this client's
    /// address, name and ACL user.
    #[cold]
    fn log_slow(&self, waited: Duration, request: &[u8], commands: usize) {
        let args = call_args(request, commands);
        let name = self.session.name.clone().unwrap_or_default();
        let user = self
            .user_name()
            .unwrap_or_else(|| Bytes::from_static(UNKNOWN_USER));
        let log = &self.shared.profiler.slowlog;
        let client = self.client_addr();
        log.log(waited, args, client, name, user, commands as u64);
    }
}
