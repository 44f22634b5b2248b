//! What a pool reads, without a lock, to decide whether a client should queue its next call
//! behind a connection's calls in flight: how old the oldest one is, and whether any writes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A slot whose oldest in-flight call is older than this is stalled: idle clients pick
/// another one.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(10);

/// The state of one connection's calls in flight, kept by the connection (under the lock of
/// its in-flight queue) and read by the pool when it picks a slot.
#[derive(Default)]
pub(crate) struct Health {
    /// Microseconds since [`epoch`] plus one; 0 when nothing is in flight.
    oldest: AtomicU64,
    /// Calls in flight that write keys: Redis may hold one (`CLIENT PAUSE WRITE`, a big
    /// `SUNIONSTORE`), and then everything pipelined behind it waits, stalled or not yet.
    writes: AtomicUsize,
}

/// The process-wide origin of [`Health`] times.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Health {
    /// Records when the oldest call in flight was sent (`None`: nothing in flight).
    pub(crate) fn set_oldest(&self, sent_at: Option<Instant>) {
        let micros = sent_at.map_or(0, |t| {
            t.saturating_duration_since(epoch()).as_micros() as u64 + 1
        });
        self.oldest.store(micros, Relaxed);
    }

    /// Whether the oldest call in flight has waited longer than [`STALL_AFTER`]; `now` reads
    /// the clock, only when a call is in flight.
    pub(crate) fn stalled(&self, now: impl FnOnce() -> Instant) -> bool {
        match self.oldest.load(Relaxed) {
            0 => false,
            micros => {
                let sent = Duration::from_micros(micros - 1);
                now().saturating_duration_since(epoch()) > sent + STALL_AFTER
            }
        }
    }

    /// A call that writes is in flight from now on.
    pub(crate) fn write_sent(&self) {
        self.writes.fetch_add(1, Relaxed);
    }

    /// A call that writes is no longer in flight (answered or failed).
    pub(crate) fn write_done(&self) {
        self.writes.fetch_sub(1, Relaxed);
    }

    /// Whether a call that writes is in flight.
    pub(crate) fn writing(&self) -> bool {
        self.writes.load(Relaxed) != 0
    }
}
