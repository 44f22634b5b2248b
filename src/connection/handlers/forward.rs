//! The forward family: writes and everything else sent upstream as it is, grouped with
//! the other upstream-bound commands of the pipeline (see `group`). What a write may change
//! is evicted from L1 before it is sent and again when its reply arrives, so a fetch that
//! crossed it cannot leave the old value behind.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::command::Invalidation;
use crate::config::TrackingMode;
use crate::connection::group::{Group, Segment, Segments, CACHING_NO, MAX_GROUP_BYTES};
use crate::connection::handlers::Ctx;
use crate::connection::replies::Pending;
use crate::connection::{ClientStream, Connection};
use crate::error::{write_upstream_error, UpstreamError};
use crate::profiler::slowlog::{call_args, UNKNOWN_USER};
use crate::protocol::write_bulk;
use crate::upstream::{OnReply, PendingReply, Router};

impl<R: Router> Ctx<R> {
    /// Evicts what a write may have changed, for every user, before it is sent; records
    /// what the second eviction needs.
    pub(in crate::connection) fn invalidate(&self, inv: &mut Invalidation) {
        self.evict(inv, false);
    }

    /// Whether a keyed read that fills nothing goes behind `CLIENT CACHING no`: with
    /// per-key tracking, whose connections track in `OPTOUT` mode (see
    /// [`crate::upstream::conn`]), so Redis keeps no state for keys L1 never holds and sends
    /// no invalidations for them; not for an identity refused `CLIENT CACHING` lately.
    #[inline]
    pub(in crate::connection) fn untracks(&self) -> bool {
        self.services.config.tracking == TrackingMode::Default && self.session.marks.may_untrack()
    }

    /// Evicts again when the write's reply arrives (a fetch sent meanwhile may have read
    /// the old value).
    pub(in crate::connection) fn invalidate_after(&self, inv: &mut Invalidation) {
        self.evict(inv, true);
    }

    /// Without tracking, the first eviction also puts the write on the invalidation bus
    /// for the other sidecars (a flush for a whole database: the bus carries no db flush).
    /// A `SWAPDB` is put on the bus as a flush at both evictions whatever the mode: Redis
    /// tracking sends nothing for it, and the second eviction follows the swap itself.
    fn evict(&self, inv: &mut Invalidation, again: bool) {
        let l1 = &self.services.l1;
        let bus = &self.services.control.bus;
        let publish = !again && self.services.control.publishes_keys();
        match inv {
            Invalidation::None => {}
            Invalidation::Keys(keys) if again => keys
                .iter()
                .for_each(|k| l1.invalidate_after(k.db, &k.key, k.seen)),
            Invalidation::Keys(keys) => keys.iter_mut().for_each(|k| {
                k.seen = l1.invalidate(k.db, &k.key);
                if publish {
                    bus.key_written(k.db, &k.key);
                }
            }),
            Invalidation::Db(db) => {
                l1.flush_db(*db);
                if publish {
                    bus.flush();
                }
            }
            Invalidation::All => {
                l1.flush_all();
                if publish {
                    bus.flush();
                }
            }
            Invalidation::Swapped => {
                l1.flush_all();
                bus.flush();
            }
        }
    }

    /// Adds an L1 fetch of `key` (`GET` + `PTTL`, one write and one round trip) whose
    /// replies go to `fill` first.
    pub(in crate::connection) async fn fetch(&mut self, key: &[u8], fill: OnReply) {
        let get = crate::metrics::commands::GET as u16;
        let write = |out: &mut BytesMut| {
            // `GET key` and `PTTL key`: only the key's bulk string is encoded.
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
            write_bulk(out, key);
            out.extend_from_slice(b"*2\r\n$4\r\nPTTL\r\n");
            write_bulk(out, key);
        };
        let target = self.target_of(Some(key));
        let group = self.replies.open_group_for(target);
        if group.add_with(write, Segment::Fetch, Some(fill), get) {
            self.send_full().await;
        }
    }

    /// Sends the groups of a batch that filled one before it ended. Boxed: rare, and its
    /// state (the whole send) would otherwise be part of every fetch's and forward's future,
    /// copied once per request.
    async fn send_full(&mut self) {
        Box::pin(self.send_unsent()).await;
    }

    /// Adds a command to the open group (`target`: its slot and node, see
    /// [`Ctx::target_of`]).
    pub(in crate::connection) async fn add(
        &mut self,
        bytes: &[u8],
        segment: Segment,
        fill: Option<OnReply>,
        label: u16,
        target: Option<(u16, usize)>,
    ) {
        let group = self.replies.open_group_for(target);
        if group.add(bytes, segment, fill, label) {
            self.send_full().await;
        }
    }

    /// Logs a slow call as its first command (see [`call_args`]) with this client's
    /// address, name and ACL user.
    #[cold]
    fn log_slow(&self, waited: Duration, request: &[u8], commands: usize) {
        // Logged as the client's first command, not the prefix the sidecar put before it.
        let request = request.strip_prefix(CACHING_NO).unwrap_or(request);
        let args = call_args(request, commands);
        let name = self.session.name.clone().unwrap_or_default();
        let user = self
            .user_name()
            .unwrap_or_else(|| Bytes::from_static(UNKNOWN_USER));
        let log = &self.services.profiler.slowlog;
        let client = self.client_addr();
        log.log(waited, args, client, name, user, commands as u64);
    }
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Writes a group's replies in order (or the upstream error once per command): the
    /// oldest owed replies. A wait of at least `--slow-threshold` goes to the slow log.
    pub(in crate::connection) async fn write_group(
        &mut self,
        sent: Result<PendingReply, UpstreamError>,
        segments: Segments,
    ) {
        let started = Instant::now();
        let result = self.cx.await_reply(sent).await;
        let waited = started.elapsed();
        if self.cx.services.profiler.slowlog.is_slow(waited) {
            self.cx
                .log_slow(waited, &segments.request, segments.list.len());
        }
        let mut at = 0;
        let mut list = segments.list;
        for mut segment in list.drain(..) {
            if let Segment::Forward(inv) = &mut segment {
                self.cx.invalidate_after(inv);
                if *inv != Invalidation::None {
                    self.cx.unacked_writes -= 1;
                }
            }
            // The client's reply, past a `CLIENT CACHING no`'s (learned from, then dropped).
            let own = at + segment.skipped();
            if let (Ok(frames), true) = (&result, own > at) {
                self.cx.session.marks.caching_reply(&frames[at]);
            }
            match &result {
                Ok(frames) if self.cx.router.slotted() && frames[own].starts_with(b"-") => {
                    let writes = segment.writes() || matches!(segment, Segment::Forward(_));
                    let request = &segments.request;
                    let n = segment.replies() - segment.skipped();
                    let frame = frames[own].clone();
                    let frame = self.cx.follow(request, (own, n), frame, writes).await;
                    self.write_frame(&frame).await;
                }
                Ok(frames) => {
                    self.cx.replies.budget.learn(frames[own].len());
                    self.write_frame(&frames[own]).await;
                }
                Err(e) => write_upstream_error(self.cx.replies.oldest_out(), e),
            }
            at += segment.replies();
        }
        self.cx.replies.recycle_segments(list);
        if let Ok(frames) = result {
            self.cx.replies.recycle_frames(frames);
        }
    }
}

/// Evicts what the command may write, then adds it to the group.
/// `metric`: the command's index in the counted commands; `retryable`: the command table
/// says it is read-only and safe to run again (see [`crate::command::Spec::retryable`]);
/// `key`: the key whose slot routes the command in a Redis Cluster (its first).
pub(in crate::connection) async fn forward<R: Router>(
    cx: &mut Ctx<R>,
    raw: Bytes,
    mut inv: Invalidation,
    (metric, retryable): (u16, bool),
    key: Option<&[u8]>,
) {
    let target = cx.target_of(key);
    cx.invalidate(&mut inv);
    let segment = match inv {
        Invalidation::None if retryable && key.is_some() && cx.untracks() => Segment::Untracked,
        Invalidation::None if retryable => Segment::Read,
        Invalidation::None => Segment::Forward(inv),
        _ => {
            cx.unacked_writes += 1;
            Segment::Forward(inv)
        }
    };
    cx.replies.budget.expect(1);
    if raw.len() >= MAX_GROUP_BYTES {
        // A large command goes alone, as the bytes it arrived in: no copy.
        let mut group = Group::alone(raw, segment, metric);
        group.target = target;
        cx.replies.wait_for(Pending::Unsent(group));
        return cx.send_unsent().await;
    }
    cx.add(&raw, segment, None, metric, target).await;
}
