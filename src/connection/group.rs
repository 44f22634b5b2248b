//! Runs of upstream-bound commands from one pipeline — forwards and GET fetches — sent as
//! one upstream call: one queue entry, one wake and one reply hand-off per run instead of
//! per command. Evictions still happen before sending and again when each reply arrives.

use bytes::{Bytes, BytesMut};

use super::replies::Pending;
use super::Connection;
use crate::command::Invalidation;
use crate::error::{write_upstream_error, UpstreamError};
use crate::upstream::{OnReply, PendingReply};

/// A group is sent once it holds this many bytes, or when anything else comes.
const MAX_GROUP_BYTES: usize = 64 * 1024;

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
}

/// The run being built.
#[derive(Default)]
pub(super) struct Group {
    bytes: BytesMut,
    segments: Vec<Segment>,
    replies: usize,
    /// Fill callbacks with the position and count of their reply frames.
    fills: Vec<(usize, usize, OnReply)>,
}

impl Group {
    /// True when nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl Connection {
    /// Evicts what the command may write, then adds it to the group.
    pub(super) async fn forward(&mut self, raw: Bytes, mut inv: Invalidation) {
        self.invalidate(&mut inv);
        if inv != Invalidation::None {
            self.unacked_writes += 1;
        }
        if raw.len() >= MAX_GROUP_BYTES {
            // A large command goes alone, as the bytes it arrived in: no copy.
            self.send_group().await;
            self.send_call(raw, vec![Segment::Forward(inv)], 1, None)
                .await;
            return;
        }
        self.add(&raw, Segment::Forward(inv), None).await;
    }

    /// Adds an L1 fetch (`GET` + `PTTL` in `bytes`) whose replies go to `fill` first.
    pub(super) async fn fetch(&mut self, bytes: &[u8], fill: OnReply) {
        self.add(bytes, Segment::Fetch, Some(fill)).await;
    }

    async fn add(&mut self, bytes: &[u8], segment: Segment, fill: Option<OnReply>) {
        let group = &mut self.group;
        let replies = segment.replies();
        if let Some(fill) = fill {
            group.fills.push((group.replies, replies, fill));
        }
        group.bytes.extend_from_slice(bytes);
        group.segments.push(segment);
        group.replies += replies;
        if group.bytes.len() >= MAX_GROUP_BYTES {
            self.send_group().await;
        }
    }

    /// Sends the group as one upstream call and queues its replies.
    pub(super) async fn send_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let Group {
            bytes,
            segments,
            replies,
            fills,
        } = std::mem::take(&mut self.group);
        let on_reply: Option<OnReply> = (!fills.is_empty()).then(|| {
            Box::new(move |frames: &[Bytes]| {
                for (at, n, fill) in fills {
                    fill(&frames[at..at + n]);
                }
            }) as OnReply
        });
        self.send_call(bytes.freeze(), segments, replies, on_reply)
            .await;
    }

    async fn send_call(
        &mut self,
        bytes: Bytes,
        segments: Vec<Segment>,
        replies: usize,
        on_reply: Option<OnReply>,
    ) {
        let s = &self.session;
        let sent = s.pool.send(&s.lane, bytes, replies, on_reply).await;
        self.queue.push_back(Pending::Group(sent, segments));
    }

    /// Writes a group's replies in order (or the upstream error once per command).
    pub(super) async fn write_group(
        &mut self,
        sent: Result<PendingReply, UpstreamError>,
        segments: Vec<Segment>,
    ) {
        let result = self.await_reply(sent).await;
        let mut at = 0;
        for mut segment in segments {
            if let Segment::Forward(inv) = &mut segment {
                self.invalidate_after(inv);
                if *inv != Invalidation::None {
                    self.unacked_writes -= 1;
                }
            }
            match &result {
                Ok(frames) => self.write_frame(&frames[at]).await,
                Err(e) => write_upstream_error(&mut self.out, e),
            }
            at += segment.replies();
        }
    }
}
