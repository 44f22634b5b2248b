//! Runs of upstream-bound commands from one pipeline — forwards and GET fetches — sent as
//! one upstream call: one queue entry, one wake and one reply hand-off per run instead of
//! per command. Evictions still happen before sending and again when each reply arrives.

use bytes::{Bytes, BytesMut};

use crate::command::Invalidation;
use crate::upstream::{OnReply, Outgoing};

/// A group is sent once it holds this many bytes, or when the batch ends.
pub(super) const MAX_GROUP_BYTES: usize = 64 * 1024;
/// Room a new group starts with (taken from the connection's arena, see `Replies`).
pub(super) const GROUP_BUFFER: usize = 4 * 1024;

/// What one command of a group is, for writing its reply.
pub(super) enum Segment {
    /// A forwarded command: one reply; its invalidation is applied again on arrival.
    Forward(Invalidation),
    /// `GET` + `PTTL` of an L1 fill: two replies, the client gets the first.
    Fetch,
    /// A forwarded command that is read-only by the command table's flags
    /// ([`crate::command::Spec::retryable`]): one reply, nothing to evict.
    Read,
    /// A keyed read that fills nothing, sent behind `CLIENT CACHING no` ([`CACHING_NO`]) so
    /// that Redis does not track its keys (the connections track in `OPTOUT` mode): two
    /// replies, the client gets the second.
    Untracked,
}

/// `CLIENT CACHING no`: the next command's keys are not tracked. Its reply (`+OK`, or an
/// error where the connection does not track) is dropped.
pub(super) const CACHING_NO: &[u8] = b"*3\r\n$6\r\nCLIENT\r\n$7\r\nCACHING\r\n$2\r\nno\r\n";

impl Segment {
    pub(super) fn replies(&self) -> usize {
        match self {
            Segment::Forward(_) | Segment::Read => 1,
            Segment::Fetch | Segment::Untracked => 2,
        }
    }

    /// Replies before the one the client gets (the dropped `CLIENT CACHING no`'s).
    pub(super) fn skipped(&self) -> usize {
        matches!(self, Segment::Untracked) as usize
    }

    /// Whether the command writes keys (Redis holds it under `CLIENT PAUSE WRITE`).
    pub(super) fn writes(&self) -> bool {
        matches!(self, Segment::Forward(inv) if *inv != Invalidation::None)
    }

    /// Whether running the command again cannot change anything (see
    /// [`crate::upstream::Outgoing::retryable`]).
    fn retryable(&self) -> bool {
        matches!(self, Segment::Fetch | Segment::Read | Segment::Untracked)
    }
}

/// A group's segments once sent, with the request bytes (a refcount, for the slow log).
pub(super) struct Segments {
    pub(super) list: Vec<Segment>,
    pub(super) request: Bytes,
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
    /// Some command is not provably read-only: the call is not retried.
    effects: bool,
    /// Where the group goes in a Redis Cluster: the slot of its first keyed command and
    /// the node that owns it (see [`Group::joins`]); `None` for any node.
    pub(super) target: Option<(u16, usize)>,
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

    /// Whether a command for `target` may join the group: a keyless one (`None`) joins any
    /// group, a keyed one a group that goes to the same node or to any node (which then
    /// goes to its node).
    pub(super) fn joins(&mut self, target: Option<(u16, usize)>) -> bool {
        match (self.target, target) {
            (_, None) => true,
            (None, Some(t)) => {
                self.target = Some(t);
                true
            }
            (Some((_, node)), Some((_, other))) => node == other,
        }
    }

    /// Gives an empty group its buffer and segment list.
    pub(super) fn prepare(&mut self, bytes: BytesMut, segments: Vec<Segment>) {
        self.bytes = bytes;
        self.segments = segments;
    }

    /// A group of one large command, sent as the bytes it arrived in.
    pub(super) fn alone(raw: Bytes, segment: Segment, label: u16) -> Group {
        // No room for a prefix: a large read is tracked as it would be without OPTOUT.
        let segment = match segment {
            Segment::Untracked => Segment::Read,
            other => other,
        };
        Group {
            label,
            replies: segment.replies(),
            writes: segment.writes(),
            effects: !segment.retryable(),
            alone: Some(raw),
            segments: vec![segment],
            ..Group::default()
        }
    }

    /// Adds a command; true once the group is big enough to send.
    pub(super) fn add(
        &mut self,
        bytes: &[u8],
        segment: Segment,
        fill: Option<OnReply>,
        label: u16,
    ) -> bool {
        self.add_with(|out| out.extend_from_slice(bytes), segment, fill, label)
    }

    /// Adds a command that `write` encodes into the group's buffer; true once the group is
    /// big enough to send.
    pub(super) fn add_with(
        &mut self,
        write: impl FnOnce(&mut BytesMut),
        segment: Segment,
        fill: Option<OnReply>,
        label: u16,
    ) -> bool {
        let (replies, skipped) = (segment.replies(), segment.skipped());
        if self.segments.is_empty() {
            self.label = label;
        }
        if let Some(fill) = fill {
            // A fill sees its own command's replies only.
            self.fills
                .push((self.replies + skipped, replies - skipped, fill));
        }
        if skipped > 0 {
            self.bytes.extend_from_slice(CACHING_NO);
        }
        write(&mut self.bytes);
        self.writes |= segment.writes();
        self.effects |= !segment.retryable();
        self.segments.push(segment);
        self.replies += replies;
        self.bytes.len() >= MAX_GROUP_BYTES
    }

    /// The upstream call and the segments to write its replies by.
    pub(super) fn into_call(self) -> (Outgoing, Segments) {
        let Group {
            bytes,
            alone,
            segments,
            replies,
            mut fills,
            label,
            writes,
            effects,
            target: _,
        } = self;
        let on_reply: Option<OnReply> = match fills.len() {
            0 => None,
            // One fill taking every reply (a group of one fetch): the call's own, as it is.
            1 if fills[0].0 == 0 && fills[0].1 == replies => fills.pop().map(|(.., fill)| fill),
            _ => Some(Box::new(
                move |frames: &[Bytes], may_fill: Option<crate::cache::FilledBy>| {
                    for (at, n, fill) in fills {
                        fill(&frames[at..at + n], may_fill);
                    }
                },
            )),
        };
        let bytes = alone.unwrap_or_else(|| bytes.freeze());
        let segments = Segments {
            list: segments,
            request: bytes.clone(),
        };
        let call = Outgoing {
            bytes,
            replies,
            on_reply,
            label,
            frames: Vec::new(),
            writes,
            retryable: !effects,
        };
        (call, segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_goes_to_one_node_and_keyless_commands_join_any() {
        let mut g = Group::default();
        assert!(g.joins(None));
        assert_eq!(g.target, None);
        // The first keyed command decides the node; the slot is its own.
        assert!(g.joins(Some((7, 1))));
        assert_eq!(g.target, Some((7, 1)));
        // Another slot of the same node joins; the group keeps its first slot.
        assert!(g.joins(Some((9, 1))));
        assert!(g.joins(None));
        assert_eq!(g.target, Some((7, 1)));
        // Another node's command does not.
        assert!(!g.joins(Some((12000, 2))));
        assert_eq!(g.target, Some((7, 1)));
    }
}
