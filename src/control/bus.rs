//! The invalidation bus: a pub/sub channel (`--invalidation-channel`) every sidecar's
//! control connection subscribes to. It carries pattern invalidations (`NEARCACHE
//! INVALIDATE`, `DELPATTERN`), L1 flushes (`NEARCACHE FLUSH ALL`, a `FLUSHALL` through a
//! sidecar without tracking), and, when tracking is off or refused, the keys each sidecar
//! wrote, batched over [`BATCH_WINDOW`] or [`BATCH_KEYS`].
//!
//! A message is text, fields separated by one space (README, "The invalidation bus"):
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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

mod wire;

pub use wire::{decode, encode, now_ms, Body, Message};

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
    pub lag: crate::metrics::export::LagHistogram,
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
    /// The control connection is subscribed now.
    subscribed: AtomicBool,
    outbox: Mutex<Outbox>,
    /// Wakes the control connection to publish.
    pub(super) queued: Notify,
    /// The last sequence number of each peer since the subscription began.
    peers: Mutex<HashMap<Bytes, u64>>,
    /// Sequence number of the last message published.
    seq: AtomicU64,
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
            subscribed: AtomicBool::new(false),
            outbox: Mutex::default(),
            queued: Notify::new(),
            peers: Mutex::default(),
            seq: AtomicU64::new(0),
            counters: BusCounters::default(),
        }
    }

    /// The channel name.
    pub fn channel(&self) -> &Bytes {
        &self.channel
    }

    /// This process's sender id.
    pub fn sender(&self) -> &Bytes {
        &self.sender
    }

    /// Whether the bus is in use (the upstream did not refuse the subscription).
    pub fn active(&self) -> bool {
        !self.refused.load(Relaxed)
    }

    /// Whether the control connection is subscribed to the channel now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Relaxed)
    }

    pub(super) fn set_refused(&self) {
        self.refused.store(true, Relaxed);
    }

    /// The subscription began (`true`: peers' sequences start afresh) or ended.
    pub(super) fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Relaxed);
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn queue(&self, body: Body) {
        if !self.active() {
            return;
        }
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if let Body::Keys(db, keys) = &body {
            outbox.keys += keys.len();
            // Keys of the same database join the last message while it is small.
            if let Some(Body::Keys(last_db, last)) = outbox.messages.back_mut() {
                if last_db == db && last.len() < BATCH_KEYS {
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

    /// A key this sidecar wrote in database `db`.
    pub fn key_written(&self, db: u32, key: &Bytes) {
        self.queue(Body::Keys(Some(db), vec![key.clone()]));
    }

    /// Patterns every sidecar evicts.
    pub fn patterns(&self, patterns: &[Bytes]) {
        self.queue(Body::Patterns(patterns.to_vec()));
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
        let outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        outbox.keys >= BATCH_KEYS || outbox.messages.len() > 1
    }

    /// Takes what is queued, encoded as messages with the next sequence numbers.
    pub(crate) fn take(&self) -> Vec<Bytes> {
        let messages = {
            let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            outbox.keys = 0;
            std::mem::take(&mut outbox.messages)
        };
        let now = now_ms();
        let c = &self.counters;
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
                encode(&self.sender, seq, now, &body)
            })
            .collect()
    }

    /// A message arrived: `Ok(Some(body))` to apply, `Ok(None)` to skip (own or
    /// malformed), `Err` on a gap in the sender's sequence.
    pub(super) fn receive(&self, payload: &[u8]) -> Result<Option<Body>, String> {
        let c = &self.counters;
        let Some(message) = decode(payload) else {
            c.malformed.fetch_add(1, Relaxed);
            return Ok(None);
        };
        if let Some((sender, seq)) = &message.origin {
            if *sender == self.sender {
                c.own_skipped.fetch_add(1, Relaxed);
                return Ok(None);
            }
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            match peers.insert(sender.clone(), *seq) {
                Some(last) if last.checked_add(1) != Some(*seq) => {
                    c.sequence_gaps.fetch_add(1, Relaxed);
                    let sender = String::from_utf8_lossy(sender);
                    return Err(format!(
                        "gap in the bus sequence of sidecar {sender} ({last} then {seq})"
                    ));
                }
                _ => {}
            }
        }
        if let Some(sent) = message.sent_ms {
            let lag = now_ms().saturating_sub(sent);
            c.lag_last_ms.store(lag, Relaxed);
            c.lag_max_ms.fetch_max(lag, Relaxed);
            c.lag.observe(Duration::from_millis(lag));
        }
        match &message.body {
            Body::Keys(_, keys) => {
                c.received_keys.fetch_add(1, Relaxed);
                c.keys_received.fetch_add(keys.len() as u64, Relaxed);
            }
            Body::Patterns(_) => _ = c.received_patterns.fetch_add(1, Relaxed),
            Body::Flush => {
                c.received_flushes.fetch_add(1, Relaxed);
                c.flushes.fetch_add(1, Relaxed);
            }
            Body::HotAsk { .. } => _ = c.received_hot_asks.fetch_add(1, Relaxed),
            Body::HotKeys { .. } => _ = c.received_hot_answers.fetch_add(1, Relaxed),
        }
        Ok(Some(message.body))
    }
}

#[cfg(test)]
mod tests;
