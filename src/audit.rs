//! The staleness audit: a fraction of L1 hits (`--audit-rate`) is re-read from the upstream in
//! the background and compared with what L1 served. A difference that no invalidation of the
//! key explains is a stale hit: counted (`stale_hits_detected`) and logged with the key, at
//! most one line per second.
//!
//! Selection costs a decrement per hit ([`Countdown`], one per connection). An audit clones
//! the key and the served reply, takes the key's [`Generation`] at once, and sends `GET key`
//! on the session's route from its own [`Lane`] (the client's order is untouched). A
//! difference is explained by a write in flight when the key's generation changes between
//! the hit and the end of a short settle period after the audit's reply: every write through
//! this sidecar, and every invalidation that reaches it, bumps the generation.

mod figures;

pub use figures::AuditFigures;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::cache::{CacheKey, Generation, L1};
use crate::logging::{more, Admit, Limiter};
use crate::metrics::Stats;
use crate::protocol::command;
use crate::protocol::decode::is_error;
use crate::upstream::{Lane, Pool};

/// Most audits waiting for the upstream at once; a hit selected while this many are in
/// flight is not audited (counted in `audits_skipped`), so audits never pile up on a slow
/// upstream.
pub const MAX_AUDITS_IN_FLIGHT: usize = 64;
/// After a difference, how long an invalidation of the key may still arrive and explain it
/// (a write whose reply, or whose invalidation, is still on its way).
pub const SETTLE: Duration = Duration::from_millis(100);
/// Longest key shown in a log line (escaped); longer keys are cut with `...`.
const LOG_KEY_BYTES: usize = 128;

/// Picks which hits a connection audits: a countdown re-armed with a geometric draw from a
/// xorshift generator, so each hit is selected with probability `rate`, independently. The
/// per-hit cost is one decrement and one compare; floating point only when selected.
#[derive(Debug, Clone)]
pub struct Countdown {
    /// Hits left until the next selected one (1: the next hit).
    left: u64,
    /// Xorshift state (never zero).
    state: u64,
    /// `ln(1 - rate)`; `NaN` marks a disabled countdown (rate 0).
    log_keep: f64,
}

impl Countdown {
    /// A countdown selecting hits with probability `rate` (in `0..=1`; 0 never selects),
    /// drawn from `seed` (any value).
    pub fn new(rate: f64, seed: u64) -> Countdown {
        let log_keep = if rate > 0.0 {
            (-rate.min(1.0)).ln_1p()
        } else {
            f64::NAN
        };
        let mut c = Countdown {
            left: u64::MAX,
            state: splitmix(seed) | 1,
            log_keep,
        };
        c.rearm();
        c
    }

    /// Counts one hit; true when this hit is to be audited.
    #[inline]
    pub fn tick(&mut self) -> bool {
        if self.left > 1 {
            self.left -= 1;
            return false;
        }
        self.rearm()
    }

    /// Draws the gap to the next selected hit; true unless disabled.
    #[cold]
    fn rearm(&mut self) -> bool {
        if self.log_keep.is_nan() {
            self.left = u64::MAX;
            return false;
        }
        // Uniform in (0, 1]: the top 53 bits of the next xorshift output.
        let u = ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        // Geometric with mean 1/rate: hits until the next success of a rate-`rate` trial.
        let gap = (u.ln() / self.log_keep).floor();
        // A gap beyond 2^63 hits (a vanishing rate) is never reached.
        self.left = if gap < (u64::MAX >> 1) as f64 {
            gap as u64 + 1
        } else {
            u64::MAX
        };
        true
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

/// Spreads a small seed (a connection id) over all 64 bits.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs the audits of every connection: the in-flight bound, the comparison, the counters
/// and the rate-limited log.
pub struct Auditor {
    l1: Arc<L1>,
    stats: Arc<Stats>,
    in_flight: AtomicUsize,
    /// Spreads the audits' lanes over a pool's slots.
    lanes: AtomicUsize,
    log: Mutex<Limiter>,
    /// `--audit-rate` as `f64` bits: read when a client connects (changed by a reload).
    rate: AtomicU64,
}

/// What an audit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The upstream holds what L1 served.
    Same,
    /// A difference, with an invalidation of the key since the hit.
    Explained,
    /// A difference no invalidation explains.
    Stale,
    /// No usable upstream reply (an error reply, unavailable, timed out).
    Failed,
}

impl Auditor {
    /// An auditor reading `l1`'s generations and counting in `stats`.
    pub fn new(l1: Arc<L1>, stats: Arc<Stats>, rate: f64) -> Arc<Auditor> {
        Arc::new(Auditor {
            rate: AtomicU64::new(rate.to_bits()),
            l1,
            stats,
            in_flight: AtomicUsize::new(0),
            lanes: AtomicUsize::new(0),
            log: Mutex::new(Limiter::default()),
        })
    }

    /// The fraction of L1 hits audited (`--audit-rate`): each client connection takes it
    /// when it connects.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Relaxed))
    }

    /// Sets the rate for connections made from now on (a reload).
    pub fn set_rate(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Relaxed);
    }

    /// Audits a hit just served: `served` is the reply L1 gave for `key`, `pool` the
    /// session's route. Takes the key's generation now and checks the upstream in a task;
    /// does nothing when [`MAX_AUDITS_IN_FLIGHT`] audits are in flight. Call it from within
    /// the runtime.
    pub fn start(self: &Arc<Self>, key: CacheKey, served: Bytes, pool: Arc<Pool>) {
        let taken = self.l1.generation(&key);
        let admitted = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < MAX_AUDITS_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.stats.audits_skipped.fetch_add(1, Relaxed);
            return;
        }
        let auditor = self.clone();
        crate::lifecycle::spawn(async move {
            let verdict = auditor.check(&key, &served, taken, &pool).await;
            auditor.in_flight.fetch_sub(1, Relaxed);
            auditor.record(verdict, &key, &served);
        });
    }

    async fn check(
        &self,
        key: &CacheKey,
        served: &[u8],
        taken: Generation,
        pool: &Pool,
    ) -> Verdict {
        let lane = Lane::new(self.lanes.fetch_add(1, Relaxed));
        let reply = match pool
            .send(&lane, command(&[b"GET", &key.key]), 1, None)
            .await
        {
            Ok(pending) => pending.wait().await,
            Err(e) => Err(e),
        };
        let frames = match reply {
            Ok(frames) => frames,
            Err(_) => return Verdict::Failed,
        };
        match frames.first() {
            None => Verdict::Failed,
            Some(frame) if is_error(frame) => Verdict::Failed,
            Some(frame) if frame[..] == *served => Verdict::Same,
            Some(_) => {
                if self.l1.generation(key) == taken {
                    tokio::time::sleep(SETTLE).await;
                }
                match self.l1.generation(key) == taken {
                    true => Verdict::Stale,
                    false => Verdict::Explained,
                }
            }
        }
    }

    fn record(self: &Arc<Self>, verdict: Verdict, key: &CacheKey, served: &Bytes) {
        let stats = &self.stats;
        match verdict {
            Verdict::Failed => {
                stats.audits_failed.fetch_add(1, Relaxed);
                return;
            }
            Verdict::Same | Verdict::Explained => {}
            Verdict::Stale => {
                stats.stale_hits_detected.fetch_add(1, Relaxed);
            }
        }
        stats.audits_done.fetch_add(1, Relaxed);
        if verdict != Verdict::Stale {
            return;
        }
        match self.limiter().admit(Instant::now()) {
            Admit::Log { suppressed } => tracing::error!(
                "stale L1 hit: db {} key \"{}\": served {} bytes that differ from \
                 the upstream's value, and no invalidation arrived{}",
                key.db,
                shown(&key.key),
                served.len(),
                more(suppressed),
            ),
            Admit::Suppress {
                flush_at: Some(deadline),
            } => {
                // The suppressed lines are reported when the period ends, even if no other
                // stale hit comes to carry their count.
                let auditor = self.clone();
                crate::lifecycle::spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    if let Some(n) = auditor.limiter().flush(Instant::now()) {
                        tracing::error!("{n} more stale L1 hits in the last second");
                    }
                });
            }
            Admit::Suppress { flush_at: None } => {}
        }
    }

    fn limiter(&self) -> parking_lot::MutexGuard<'_, Limiter> {
        self.log.lock()
    }
}

/// The key as a log shows it: printable ASCII as is, other bytes escaped, cut when long.
fn shown(key: &[u8]) -> String {
    let cut = key.len() > LOG_KEY_BYTES;
    let head = &key[..key.len().min(LOG_KEY_BYTES)];
    let mut s = head.escape_ascii().to_string();
    if cut {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests;
