//! The invalidation bus: a pub/sub channel (`--invalidation-channel`) every sidecar's
//! control connection subscribes to. It carries pattern invalidations (`NEARCACHE
//! INVALIDATE`, `DELPATTERN`), L1 flushes (`NEARCACHE FLUSH ALL`, a `FLUSHALL` through a
//! sidecar without tracking), and, when tracking is off or refused, the keys each sidecar
//! wrote, batched over [`BATCH_WINDOW`] or [`BATCH_KEYS`].
//!
//! A message is text, fields separated by one space (docs/bus.md):
//!
//! ```text
//! v1 <sender> <seq> <ms> K <db|*> <len>:<key> [<len>:<key> ...]
//! v1 <sender> <seq> <ms> P <len>:<pattern> [<len>:<pattern> ...]
//! v1 <sender> <seq> <ms> F
//! v1 <sender> <seq> <ms> H? <asker> <wanted>
//! v1 <sender> <seq> <ms> H <asker> <db> <len>:<key> [<len>:<key> ...]
//! ```
//!
//! `H?` is a starting sidecar (`asker`, its sender id) asking for the `wanted` hottest keys
//! of every running one; `H` is an answer to it, the answering sidecar's hottest keys in
//! database `db` (at most [`MAX_HOT_KEYS`] of them; see `crate::warm`). Older sidecars count
//! these kinds as malformed and skip them.
//!
//! `sender` is random per process start, `seq` counts that sender's messages from 1, `ms`
//! is the publish time (Unix milliseconds); a foreign publisher writes `-` for any of them.
//! Keys and patterns are length-prefixed, so binary-safe. A receiver skips its own
//! messages; a gap in a peer's sequence counts as losing the control connection.
//!
//! With `--bus-key-file` every message is signed (see `auth`: an `s1 <key id> <mac> `
//! envelope before the message) and a receiver acts only on messages that verify and name
//! their sender, sequence and time: the rest are counted and dropped. Gaps are judged on
//! authenticated senders only, and a message whose sequence number is not above the last
//! one seen from its sender is a replay, dropped. Without a key the bus is open: anyone who
//! may `PUBLISH` on the channel can make every sidecar evict, flush, or (with a forged
//! gap) bypass its L1; hot-key asks are not answered then.
//!
//! Bounds: a message over [`MAX_MESSAGE_BYTES`] is dropped unread (the control connection
//! skips it as it arrives); a `P` message with more than [`MAX_PATTERNS`] patterns or a
//! pattern over [`MAX_PATTERN_BYTES`] becomes a flush (this sidecar's own never do: they
//! are split); keys and patterns are decoded as views of the message, not copies.

use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

pub mod auth;
mod keys;
mod receive;
mod senders;
mod wire;

use crate::glob::{MAX_PATTERNS, MAX_PATTERN_BYTES};
use auth::{BusKeys, ENVELOPE_LEN};
use keys::seal_hot_keys;
use senders::Senders;
pub use wire::{decode, encode, now_ms, Body, Message};

/// Keys as read from the key file, signing key first.
type RawKeys = Vec<Vec<u8>>;

/// Largest bus message acted on, envelope included; a larger one is dropped unread.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Room kept in a message for its header (version, sender, sequence, time, kind, db).
const HEADER_ROOM: usize = 128;
/// How often `--bus-key-file` is looked at for a new key.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// How long written keys wait for company before they are published.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);
/// Keys that are published at once, without waiting for the window.
pub const BATCH_KEYS: usize = 64;
/// Messages (or keys) the outbox holds; beyond, everything queued becomes one flush.
const OUTBOX_MAX: usize = 4096;
/// Most keys an `H` answer may carry, and an `H?` may ask for (the largest `[warm]
/// peer_keys`); an answer with more is malformed.
pub const MAX_HOT_KEYS: usize = 16_384;

/// Figures INFO shows.
#[derive(Default)]
pub struct BusCounters {
    /// Key messages received from peers and foreign publishers.
    pub received_keys: AtomicU64,
    /// Pattern messages received.
    pub received_patterns: AtomicU64,
    /// Flush messages received.
    pub received_flushes: AtomicU64,
    /// Keys named by received key messages.
    pub keys_received: AtomicU64,
    /// Key messages published.
    pub sent_keys: AtomicU64,
    /// Pattern messages published.
    pub sent_patterns: AtomicU64,
    /// Flush messages published.
    pub sent_flushes: AtomicU64,
    /// Hot-key asks (`H?`) published.
    pub sent_hot_asks: AtomicU64,
    /// Hot-key answers (`H`) published.
    pub sent_hot_answers: AtomicU64,
    /// Hot-key asks received from peers.
    pub received_hot_asks: AtomicU64,
    /// Hot-key answers received (for this sidecar or another).
    pub received_hot_answers: AtomicU64,
    /// Keys named by sent key messages.
    pub keys_sent: AtomicU64,
    /// This sidecar's own messages, skipped.
    pub own_skipped: AtomicU64,
    /// Messages that could not be decoded.
    pub malformed: AtomicU64,
    /// Messages dropped because they did not verify under the bus key (unsigned, an
    /// unknown key, a bad MAC, or no sender, sequence and time).
    pub unauthenticated: AtomicU64,
    /// Authenticated messages dropped as replays (a sequence number already seen from their
    /// sender, or a flush or hot-key message from an unknown sender published too long ago).
    pub replayed: AtomicU64,
    /// Messages over [`MAX_MESSAGE_BYTES`], dropped unread.
    pub oversized: AtomicU64,
    /// Pattern messages over the pattern bounds, applied as a flush.
    pub oversized_patterns: AtomicU64,
    /// Times the key file was re-read with a new key.
    pub key_reloads: AtomicU64,
    /// Gaps in a peer's sequence (each a loss of the control connection).
    pub sequence_gaps: AtomicU64,
    /// L1 flushes asked for on the bus.
    pub flushes: AtomicU64,
    /// Lag (receive time minus publish time) of the last message that carried its
    /// publish time, in ms.
    pub lag_last_ms: AtomicU64,
    /// The largest such lag, in ms.
    pub lag_max_ms: AtomicU64,
    /// Every such lag (`nearcache_invalidation_lag_seconds`).
    pub lag: crate::metrics::LagHistogram,
}

/// Messages waiting for the control connection.
#[derive(Default)]
struct Outbox {
    messages: VecDeque<Body>,
    /// Keys in `messages`.
    keys: usize,
}

/// The bus's shared state: the channel, this process's sender id, the outbox, and the
/// last sequence number seen from each peer.
pub struct Bus {
    channel: Bytes,
    sender: Bytes,
    /// The upstream refused `SUBSCRIBE` (no channel permission): the bus is off.
    refused: AtomicBool,
    /// Not carried by this control connection at all (a Redis Cluster node's: the bus
    /// rides on one connection only, see [`Bus::elsewhere`]).
    elsewhere: bool,
    /// The control connection is subscribed now.
    subscribed: AtomicBool,
    outbox: Mutex<Outbox>,
    /// Wakes the control connection to publish.
    pub(super) queued: Notify,
    /// The last sequence number of each peer (see `senders`).
    peers: Mutex<Senders>,
    /// Sequence number of the last message published.
    seq: AtomicU64,
    /// `--bus-key-file`, once set.
    key_file: OnceLock<PathBuf>,
    /// The keys read from it last (to tell a change), and the keys in use.
    keys: RwLock<Option<(RawKeys, Arc<BusKeys>)>>,
    /// What INFO shows.
    pub counters: BusCounters,
}

/// A random sender id: 16 hex digits from the process's hash seed, the time and the pid.
fn sender_id() -> Bytes {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    Bytes::from(format!("{:016x}", h.finish()))
}

impl Bus {
    /// The bus on `channel`.
    pub fn new(channel: &str) -> Bus {
        Bus {
            channel: Bytes::copy_from_slice(channel.as_bytes()),
            sender: sender_id(),
            refused: AtomicBool::new(false),
            elsewhere: false,
            subscribed: AtomicBool::new(false),
            outbox: Mutex::default(),
            queued: Notify::new(),
            peers: Mutex::default(),
            seq: AtomicU64::new(0),
            key_file: OnceLock::new(),
            keys: RwLock::new(None),
            counters: BusCounters::default(),
        }
    }

    /// A bus this control connection does not carry: never subscribed, nothing published
    /// or received on it. In a Redis Cluster a classic `PUBLISH` reaches the subscribers
    /// of every node, so the bus rides on one control connection only (the services'),
    /// and each node's control connection tracks without subscribing.
    pub fn elsewhere(channel: &str) -> Bus {
        Bus {
            elsewhere: true,
            ..Bus::new(channel)
        }
    }

    /// Authenticated peers heard from within the last minute.
    pub fn live_peers(&self) -> usize {
        let peers = self.peers.lock();
        peers.live(now_ms())
    }

    /// The channel name.
    pub fn channel(&self) -> &Bytes {
        &self.channel
    }

    /// This process's sender id.
    pub fn sender(&self) -> &Bytes {
        &self.sender
    }

    /// Whether the bus is in use on this connection (carried here, and the upstream did
    /// not refuse the subscription).
    pub fn active(&self) -> bool {
        !self.elsewhere && !self.refused.load(Relaxed)
    }

    /// Whether the control connection is subscribed to the channel now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Relaxed)
    }

    pub(super) fn set_refused(&self) {
        self.refused.store(true, Relaxed);
    }

    /// The subscription began (`true`: gaps are judged afresh, since messages published
    /// meanwhile were missed) or ended.
    pub(super) fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Relaxed);
        self.peers.lock().resubscribed();
    }

    fn queue(&self, body: Body) {
        if !self.active() {
            return;
        }
        let mut outbox = self.outbox.lock();
        if let Body::Keys(db, keys) = &body {
            outbox.keys += keys.len();
            // Keys of the same database join the last message while it is small.
            if let Some(Body::Keys(last_db, last)) = outbox.messages.back_mut() {
                let bytes = |keys: &[Bytes]| keys.iter().map(|k| k.len() + 24).sum::<usize>();
                let room = MAX_MESSAGE_BYTES - ENVELOPE_LEN - HEADER_ROOM;
                if last_db == db && last.len() < BATCH_KEYS && bytes(last) + bytes(keys) <= room {
                    last.extend(keys.iter().cloned());
                    drop(outbox);
                    return self.queued.notify_one();
                }
            }
        }
        outbox.messages.push_back(body);
        if outbox.messages.len() > OUTBOX_MAX || outbox.keys > OUTBOX_MAX {
            outbox.messages.clear();
            outbox.messages.push_back(Body::Flush);
            outbox.keys = 0;
        }
        drop(outbox);
        self.queued.notify_one();
    }

    /// A key this sidecar wrote in database `db` (a key too long for one message becomes
    /// a flush: invalidating more, never less).
    pub fn key_written(&self, db: u32, key: &Bytes) {
        if key.len() + 24 > MAX_MESSAGE_BYTES - ENVELOPE_LEN - HEADER_ROOM {
            return self.queue(Body::Flush);
        }
        self.queue(Body::Keys(Some(db), vec![key.clone()]));
    }

    /// Patterns every sidecar evicts, at most [`MAX_PATTERNS`] a message (a pattern over
    /// [`MAX_PATTERN_BYTES`] makes it a flush).
    pub fn patterns(&self, patterns: &[Bytes]) {
        if patterns.iter().any(|p| p.len() > MAX_PATTERN_BYTES) {
            return self.queue(Body::Flush);
        }
        for chunk in patterns.chunks(MAX_PATTERNS) {
            self.queue(Body::Patterns(chunk.to_vec()));
        }
    }

    /// Every sidecar flushes its L1.
    pub fn flush(&self) {
        self.queue(Body::Flush);
    }

    /// Asks every running sidecar for its `wanted` hottest keys.
    pub fn ask_hot(&self, wanted: usize) {
        self.queue(Body::HotAsk {
            asker: self.sender.clone(),
            wanted,
        });
    }

    /// Answers `asker` with this sidecar's hottest keys in database `db`.
    pub fn answer_hot(&self, asker: Bytes, db: u32, keys: Vec<Bytes>) {
        if !keys.is_empty() {
            self.queue(Body::HotKeys { asker, db, keys });
        }
    }

    /// Whether the outbox holds enough keys to publish without waiting for the window.
    pub(super) fn batch_full(&self) -> bool {
        let outbox = self.outbox.lock();
        outbox.keys >= BATCH_KEYS || outbox.messages.len() > 1
    }

    /// Takes what is queued, encoded as messages with the next sequence numbers.
    pub(crate) fn take(&self) -> Vec<Bytes> {
        let messages = {
            let mut outbox = self.outbox.lock();
            outbox.keys = 0;
            std::mem::take(&mut outbox.messages)
        };
        let now = now_ms();
        let c = &self.counters;
        let keys = self.keys();
        messages
            .into_iter()
            .map(|body| {
                match &body {
                    Body::Keys(_, keys) => {
                        c.sent_keys.fetch_add(1, Relaxed);
                        c.keys_sent.fetch_add(keys.len() as u64, Relaxed);
                    }
                    Body::Patterns(_) => _ = c.sent_patterns.fetch_add(1, Relaxed),
                    Body::Flush => _ = c.sent_flushes.fetch_add(1, Relaxed),
                    Body::HotAsk { .. } => _ = c.sent_hot_asks.fetch_add(1, Relaxed),
                    Body::HotKeys { .. } => _ = c.sent_hot_answers.fetch_add(1, Relaxed),
                }
                let seq = self.seq.fetch_add(1, Relaxed) + 1;
                let body = match (&keys, body) {
                    (
                        Some(keys),
                        Body::HotKeys {
                            asker,
                            db,
                            keys: hot,
                        },
                    ) => {
                        let sealed = seal_hot_keys(keys, &asker, db, &hot);
                        Body::HotKeys {
                            asker,
                            db,
                            keys: vec![sealed],
                        }
                    }
                    (_, body) => body,
                };
                let message = encode(&self.sender, seq, now, &body);
                match &keys {
                    Some(keys) => keys.sign(&message),
                    None => message,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
