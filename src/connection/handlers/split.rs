//! Requests whose keys are in more than one slot of a Redis Cluster: `DEL`, `UNLINK`,
//! `EXISTS` and `TOUCH` are split into one command per slot, pipelined per node, and their
//! counts summed; an `MGET`'s misses are fetched with one `MGET` per slot, pipelined per
//! node; anything else gets Redis Cluster's own `-CROSSSLOT` and goes nowhere. Only a
//! request routed by slot (see [`crate::upstream::Router::slotted`]) is planned here.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::command::{Invalidation, Spec};
use crate::connection::drain::via;
use crate::connection::handlers::read::Lead;
use crate::connection::handlers::Ctx;
use crate::connection::replies::{How, Pending};
use crate::connection::{ClientStream, Connection};
use crate::error::{write_upstream_error, UpstreamError};
use crate::protocol::decode::{array_elements, integer, is_error};
use crate::protocol::{is, null, write_array_header, write_command};
use crate::upstream::cluster::slot;
use crate::upstream::{OnReply, PendingReply, Router};

/// What Redis Cluster answers a command whose keys hash to more than one slot.
pub(in crate::connection) const CROSSSLOT: &[u8] =
    b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// Commands split by slot, their integer replies summed.
const SUMMED: &[&[u8]] = &[b"DEL", b"UNLINK", b"EXISTS", b"TOUCH"];

/// Items grouped by their key's slot: slots in the order they first appear, each slot's
/// items in request order.
type BySlot<T> = Vec<(u16, Vec<T>)>;

/// How a request routed by slot goes upstream.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::connection) enum Plan {
    /// To the slot of the key at this position (every key is in that slot); `None` when
    /// the command has no key or its keys cannot be listed (routed as before: by its
    /// legacy first key).
    Key(Option<usize>),
    /// Keys in more than one slot: the positions of each slot's keys.
    Cross(BySlot<usize>),
}

/// Where the keys of `args` are, by slot (every key the command's spec lists, read or
/// written).
pub(in crate::connection) fn plan(spec: &Spec, args: &[Bytes]) -> Plan {
    let mut at = Vec::new();
    if spec.keys.positions(args, &mut at).is_err() || at.is_empty() {
        return Plan::Key(None);
    }
    // Most commands name one key, or keys of one slot: no grouping for them.
    let first = slot(&args[at[0]]);
    if at[1..].iter().all(|&i| slot(&args[i]) == first) {
        return Plan::Key(Some(at[0]));
    }
    Plan::Cross(by_slot(at.iter().map(|&i| (slot(&args[i]), i))))
}

/// Groups `items` by their key's slot (see [`BySlot`]).
fn by_slot<T>(items: impl Iterator<Item = (u16, T)>) -> BySlot<T> {
    let mut parts: BySlot<T> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for (slot, item) in items {
        let at = *index.entry(slot).or_insert_with(|| {
            parts.push((slot, Vec::new()));
            parts.len() - 1
        });
        parts[at].1.push(item);
    }
    parts
}

/// Slot parts grouped by the node that owns them now (nodes in order of first appearance).
fn by_node<R: Router, T>(router: &R, parts: BySlot<T>) -> Vec<BySlot<T>> {
    let mut nodes: Vec<(usize, BySlot<T>)> = Vec::new();
    for (slot, items) in parts {
        let node = router.node_of(slot);
        match nodes.iter_mut().find(|(n, _)| *n == node) {
            Some((_, list)) => list.push((slot, items)),
            None => nodes.push((node, vec![(slot, items)])),
        }
    }
    nodes.into_iter().map(|(_, list)| list).collect()
}

/// One pipelined call to a node: its pending reply and its request (to follow a redirect
/// of one of its commands).
struct NodeCall {
    sent: Result<PendingReply, UpstreamError>,
    request: Bytes,
}

/// A command split by slot, waiting for its parts: one call per node, with the key
/// positions of each of its commands.
pub(in crate::connection) struct SplitReply {
    calls: Vec<(NodeCall, Vec<Vec<usize>>)>,
    /// What the command may write: evicted again when the replies arrive.
    inv: Invalidation,
    /// An `MGET` of this many keys (its parts' elements merged in key order); else the
    /// parts' counts are summed.
    merged: Option<usize>,
}

/// This connection's own fetch of an MGET's misses.
pub(in crate::connection) enum Own {
    /// One `MGET` (keys of one slot, or not routed by slot), its request (to follow a
    /// redirect) and the index of its reply (1 behind `CLIENT CACHING no`).
    One(Result<PendingReply, UpstreamError>, Bytes, usize),
    /// One `MGET` per slot of a Redis Cluster.
    Split(SplitMget),
}

/// Where, among a node call's reply frames, each slot's `MGET` reply is, and which of the
/// misses it holds.
type Layout = Vec<(usize, Vec<usize>)>;

/// An MGET's misses fetched per slot: per node call, its [`Layout`].
pub(in crate::connection) struct SplitMget {
    calls: Vec<(NodeCall, Layout)>,
    misses: usize,
}

/// Whether a command across slots is split and summed (else it gets `-CROSSSLOT`).
pub(in crate::connection) fn summed(name: &[u8]) -> bool {
    SUMMED.iter().any(|c| is(name, c))
}

impl<R: Router> Ctx<R> {
    /// Sends `bytes` (`replies` commands, all for `slot`'s node) after every group before
    /// it, outside any group.
    async fn send_to(
        &mut self,
        slot: u16,
        bytes: Bytes,
        replies: usize,
        how: How,
    ) -> Result<PendingReply, UpstreamError> {
        let via = via(&*self.router, &self.session);
        (self.replies)
            .call(&via, Some(slot), bytes, replies, how)
            .await
    }

    /// A command whose keys are in more than one slot: split and summed (see [`SUMMED`]),
    /// an `MGET` not served by L1 split and merged, or anything else answered
    /// `-CROSSSLOT` with nothing sent and nothing evicted.
    pub(in crate::connection) async fn cross_slot(
        &mut self,
        args: &[Bytes],
        parts: BySlot<usize>,
        mut inv: Invalidation,
        retryable: bool,
    ) {
        let merged = is(&args[0], b"MGET").then(|| args.len() - 1);
        if !summed(&args[0]) && merged.is_none() {
            return self.replies.ready(CROSSSLOT);
        }
        self.invalidate(&mut inv);
        let writes = inv != Invalidation::None;
        if writes {
            self.unacked_writes += 1;
        }
        self.replies.budget.expect(1);
        let mut calls = Vec::new();
        for node in by_node(&*self.router, parts) {
            let mut bytes = BytesMut::new();
            for (_, at) in &node {
                let mut cmd: Vec<&[u8]> = Vec::with_capacity(1 + at.len());
                cmd.push(&args[0]);
                cmd.extend(at.iter().map(|&i| &args[i][..]));
                write_command(&mut bytes, &cmd);
            }
            let request = bytes.freeze();
            let how = How {
                on_reply: None,
                writes,
                retryable: retryable && !writes,
            };
            let sent = self
                .send_to(node[0].0, request.clone(), node.len(), how)
                .await;
            let positions = node.into_iter().map(|(_, at)| at).collect();
            calls.push((NodeCall { sent, request }, positions));
        }
        let split = SplitReply { calls, inv, merged };
        self.replies.wait_for(Pending::Split(split));
    }

    /// Fetches an MGET's misses: one `MGET` (and a `PTTL` per key) per slot, pipelined per
    /// node; one call as before when they are all in one slot.
    pub(in crate::connection) async fn send_mget_split(&mut self, leads: Vec<Lead>) -> Own {
        let misses = leads.len();
        let parts = by_slot(
            (leads.into_iter().enumerate()).map(|(i, lead)| (slot(&lead.key.key), (i, lead))),
        );
        if parts.len() == 1 {
            let leads = parts.into_iter().flat_map(|(_, l)| l).map(|(_, l)| l);
            return self.send_mget(leads.collect()).await;
        }
        let mut calls = Vec::new();
        for node in by_node(&*self.router, parts) {
            let first_slot = node[0].0;
            let mut bytes = BytesMut::new();
            let (mut replies, mut fills, mut layout) = (0, Vec::new(), Vec::new());
            for (_, leads) in node {
                let (positions, leads): (Vec<usize>, Vec<Lead>) = leads.into_iter().unzip();
                // Tracked whatever its keys: a slot's reply is found by its place alone.
                let (n, _, fill) = self.write_mget_fetch(leads, &mut bytes, false);
                fills.push((replies, n, fill));
                layout.push((replies, positions));
                replies += n;
            }
            let on_reply: OnReply = Box::new(
                move |frames: &[Bytes], may_fill: Option<crate::cache::FilledBy>| {
                    for (at, n, fill) in fills {
                        fill(&frames[at..at + n], may_fill);
                    }
                },
            );
            let request = bytes.freeze();
            // Nothing but reads: retried once if its connection is lost.
            let how = How {
                on_reply: Some(on_reply),
                writes: false,
                retryable: true,
            };
            let sent = self
                .send_to(first_slot, request.clone(), replies, how)
                .await;
            calls.push((NodeCall { sent, request }, layout));
        }
        Own::Split(SplitMget { calls, misses })
    }

    /// The elements of a split MGET's misses, in the misses' order (a redirect of a slot's
    /// `MGET` followed); the reply the whole MGET gets when a part fails.
    pub(in crate::connection) async fn split_elements(
        &mut self,
        split: SplitMget,
    ) -> Result<Vec<Bytes>, Bytes> {
        let nil = Bytes::from_static(null(self.session.resp));
        let mut elements = vec![nil; split.misses];
        let mut failed = None;
        for (call, layout) in split.calls {
            let frames = match self.await_reply(call.sent).await {
                Ok(frames) => frames,
                Err(e) => {
                    failed.get_or_insert_with(|| error_reply(&e));
                    continue;
                }
            };
            for (at, positions) in layout {
                let mut reply = frames[at].clone();
                if is_error(&reply) {
                    reply = self.follow(&call.request, (at, 1), reply, false).await;
                }
                if is_error(&reply) {
                    failed.get_or_insert(reply);
                    continue;
                }
                let got = array_elements(&reply).filter(|e| e.len() == positions.len());
                for (element, i) in got.into_iter().flatten().zip(positions) {
                    elements[i] = element;
                }
            }
        }
        match failed {
            Some(reply) => Err(reply),
            None => Ok(elements),
        }
    }
}

/// An upstream failure as the reply bytes it gets.
fn error_reply(e: &UpstreamError) -> Bytes {
    let mut out = BytesMut::new();
    write_upstream_error(&mut out, e);
    out.freeze()
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Writes a split command's reply: the sum of its parts' counts (or an MGET's elements
    /// in key order), or the first error a part got (a redirect followed first).
    pub(in crate::connection) async fn write_split(&mut self, split: SplitReply) {
        let SplitReply {
            calls,
            mut inv,
            merged,
        } = split;
        let writes = inv != Invalidation::None;
        let mut sum: i64 = 0;
        let nil = Bytes::from_static(null(self.cx.session.resp));
        let mut elements = vec![nil; merged.unwrap_or(0)];
        let mut failed: Option<Bytes> = None;
        for (call, positions) in calls {
            let frames = match self.cx.await_reply(call.sent).await {
                Ok(frames) => frames,
                Err(e) => {
                    failed.get_or_insert_with(|| error_reply(&e));
                    continue;
                }
            };
            for (at, frame) in frames.into_iter().enumerate() {
                let frame = match is_error(&frame) {
                    true => self.cx.follow(&call.request, (at, 1), frame, writes).await,
                    false => frame,
                };
                let got = match merged {
                    _ if is_error(&frame) => None,
                    Some(_) => array_elements(&frame).filter(|e| e.len() == positions[at].len()),
                    None => integer(&frame).map(|n| {
                        sum += n;
                        Vec::new()
                    }),
                };
                match got {
                    // (Argument positions: the first key is argument 1.)
                    Some(got) => (got.into_iter().zip(&positions[at]))
                        .for_each(|(element, &i)| elements[i - 1] = element),
                    None => {
                        failed.get_or_insert(frame);
                    }
                }
            }
        }
        self.cx.invalidate_after(&mut inv);
        if writes {
            self.cx.unacked_writes -= 1;
        }
        let out = self.cx.replies.oldest_out();
        match (failed, merged) {
            (Some(reply), _) => self.write_frame(&reply).await,
            (None, Some(n)) => {
                write_array_header(out, n);
                elements.iter().for_each(|e| out.extend_from_slice(e));
            }
            (None, None) => out.extend_from_slice(format!(":{sum}\r\n").as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_slot_in_order_of_first_appearance() {
        let keys: [&[u8]; 5] = [b"{a}1", b"{b}1", b"{a}2", b"{c}1", b"{b}2"];
        let parts = by_slot(keys.iter().enumerate().map(|(i, k)| (slot(k), i)));
        let (a, b, c) = (slot(b"a"), slot(b"b"), slot(b"c"));
        assert_eq!(parts, vec![(a, vec![0, 2]), (b, vec![1, 4]), (c, vec![3])]);
    }

    #[test]
    fn a_request_goes_to_its_keys_slot_or_is_planned_across_slots() {
        let plan_of = |args: &[&str]| {
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
            let spec = crate::command::CommandTable::builtin()
                .lookup(&args)
                .unwrap();
            plan(spec, &args)
        };
        assert_eq!(plan_of(&["SET", "k", "v"]), Plan::Key(Some(1)));
        assert_eq!(plan_of(&["PING"]), Plan::Key(None));
        assert_eq!(plan_of(&["EVAL", "return 1", "0"]), Plan::Key(None));
        // A script's first key routes it (its legacy first key is none: keys move).
        let eval = ["EVAL", "return 1", "2", "{t}a", "{t}b"];
        assert_eq!(plan_of(&eval), Plan::Key(Some(3)));
        assert_eq!(
            plan_of(&["MSET", "{t}a", "1", "{t}b", "2"]),
            Plan::Key(Some(1))
        );
        let (a, b) = (slot(b"a"), slot(b"b"));
        let cross = plan_of(&["MSET", "a", "1", "b", "2", "{a}c", "3"]);
        assert_eq!(cross, Plan::Cross(vec![(a, vec![1, 5]), (b, vec![3])]));
        // Keys that cannot be listed (a syntax error): routed as before.
        assert_eq!(plan_of(&["EVAL", "return 1", "5", "a"]), Plan::Key(None));
    }

    #[test]
    fn only_the_counting_family_is_split() {
        for name in [&b"DEL"[..], b"unlink", b"Exists", b"TOUCH"] {
            assert!(summed(name), "{}", name.escape_ascii());
        }
        for name in [
            &b"MSET"[..],
            b"MSETNX",
            b"SUNION",
            b"RENAME",
            b"EVAL",
            b"MGET",
        ] {
            assert!(!summed(name), "{}", name.escape_ascii());
        }
    }
}
