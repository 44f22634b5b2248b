//! [`ControlFigures`]: one snapshot of the control plane's figures (the control connection,
//! tracking, the bus), what INFO and `/metrics` render.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::bus::Bus;
use super::Control;
use crate::config::TrackingMode;

/// The control plane's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlFigures {
    /// The configured tracking mode.
    pub mode: TrackingMode,
    /// `--tracking bcast`: how many prefixes it tracks (0: every key, or another mode).
    pub prefixes: usize,
    /// Whether the control connection is needed (tracking, or the bus).
    pub link_needed: bool,
    /// Whether it is up and subscribed.
    pub link_up: bool,
    /// Whether it waits for a client's credentials.
    pub awaiting_credentials: bool,
    /// Whether L1 may answer now.
    pub serving: bool,
    /// Whether the keys this sidecar writes go on the bus.
    pub publishes_keys: bool,
    /// Invalidation messages received on the control connection.
    pub messages: u64,
    /// Keys named by them.
    pub keys: u64,
    /// L1 flushes because the upstream was flushed.
    pub upstream_flushes: u64,
    /// L1 flushes because the control connection was lost.
    pub loss_flushes: u64,
    /// The bus.
    pub bus: BusFigures,
}

impl Default for ControlFigures {
    fn default() -> Self {
        ControlFigures {
            mode: TrackingMode::Default,
            prefixes: 0,
            link_needed: false,
            link_up: false,
            awaiting_credentials: false,
            serving: false,
            publishes_keys: false,
            messages: 0,
            keys: 0,
            upstream_flushes: 0,
            loss_flushes: 0,
            bus: BusFigures::default(),
        }
    }
}

/// The bus's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusFigures {
    /// Whether the bus is in use (the upstream did not refuse the subscription).
    pub active: bool,
    /// Whether the control connection is subscribed now.
    pub subscribed: bool,
    /// The channel name.
    pub channel: String,
    /// This process's sender id.
    pub sender: String,
    /// Whether messages are signed and verified.
    pub keyed: bool,
    /// The id of the signing key, empty when not keyed.
    pub key_id: String,
    /// Key messages received from peers and foreign publishers.
    pub received_keys: u64,
    /// Pattern messages received.
    pub received_patterns: u64,
    /// Flush messages received.
    pub received_flushes: u64,
    /// Keys named by received key messages.
    pub keys_received: u64,
    /// Key messages published.
    pub sent_keys: u64,
    /// Pattern messages published.
    pub sent_patterns: u64,
    /// Flush messages published.
    pub sent_flushes: u64,
    /// Hot-key asks (`H?`) published.
    pub sent_hot_asks: u64,
    /// Hot-key answers (`H`) published.
    pub sent_hot_answers: u64,
    /// Hot-key asks received from peers.
    pub received_hot_asks: u64,
    /// Hot-key answers received (for this sidecar or another).
    pub received_hot_answers: u64,
    /// Keys named by sent key messages.
    pub keys_sent: u64,
    /// This sidecar's own messages, skipped.
    pub own_skipped: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Messages dropped because they did not verify under the bus key (unsigned, an
    /// unknown key, a bad MAC, or no sender, sequence and time).
    pub unauthenticated: u64,
    /// Authenticated messages dropped as replays (a sequence number already seen from their
    /// sender, or a flush or hot-key message from an unknown sender published too long ago).
    pub replayed: u64,
    /// Messages over the bus's size bound, dropped unread.
    pub oversized: u64,
    /// Pattern messages over the pattern bounds, applied as a flush.
    pub oversized_patterns: u64,
    /// Times the key file was re-read with a new key.
    pub key_reloads: u64,
    /// Gaps in a peer's sequence (each a loss of the control connection).
    pub sequence_gaps: u64,
    /// L1 flushes asked for on the bus.
    pub flushes: u64,
    /// Lag (receive time minus publish time) of the last message that carried its
    /// publish time, in ms.
    pub lag_last_ms: u64,
    /// The largest such lag, in ms.
    pub lag_max_ms: u64,
}

impl Control {
    /// The figures now.
    pub fn figures(&self) -> ControlFigures {
        let c = &self.counters;
        ControlFigures {
            mode: self.mode(),
            prefixes: self.prefix_count(),
            link_needed: self.link_needed(),
            link_up: self.link_up(),
            awaiting_credentials: self.awaiting_credentials(),
            serving: self.serving(),
            publishes_keys: self.publishes_keys(),
            messages: c.messages.load(Relaxed),
            keys: c.keys.load(Relaxed),
            upstream_flushes: c.upstream_flushes.load(Relaxed),
            loss_flushes: c.loss_flushes.load(Relaxed),
            bus: self.bus.figures(),
        }
    }
}

impl Bus {
    /// The figures now.
    pub fn figures(&self) -> BusFigures {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Relaxed);
        BusFigures {
            active: self.active(),
            subscribed: self.subscribed(),
            channel: String::from_utf8_lossy(self.channel()).into_owned(),
            sender: String::from_utf8_lossy(self.sender()).into_owned(),
            keyed: self.keyed(),
            key_id: self.key_id().unwrap_or_default(),
            received_keys: n(&c.received_keys),
            received_patterns: n(&c.received_patterns),
            received_flushes: n(&c.received_flushes),
            keys_received: n(&c.keys_received),
            sent_keys: n(&c.sent_keys),
            sent_patterns: n(&c.sent_patterns),
            sent_flushes: n(&c.sent_flushes),
            sent_hot_asks: n(&c.sent_hot_asks),
            sent_hot_answers: n(&c.sent_hot_answers),
            received_hot_asks: n(&c.received_hot_asks),
            received_hot_answers: n(&c.received_hot_answers),
            keys_sent: n(&c.keys_sent),
            own_skipped: n(&c.own_skipped),
            malformed: n(&c.malformed),
            unauthenticated: n(&c.unauthenticated),
            replayed: n(&c.replayed),
            oversized: n(&c.oversized),
            oversized_patterns: n(&c.oversized_patterns),
            key_reloads: n(&c.key_reloads),
            sequence_gaps: n(&c.sequence_gaps),
            flushes: n(&c.flushes),
            lag_last_ms: n(&c.lag_last_ms),
            lag_max_ms: n(&c.lag_max_ms),
        }
    }
}
