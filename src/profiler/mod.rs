//! What the sidecar learns about the application from the commands it sees, so app teams
//! know what to fix: slow upstream calls ([`slowlog`], `NEARCACHE SLOWLOG`), reads of many
//! keys one `GET` at a time where one `MGET` would do ([`nplusone`], logged), and the most
//! read keys ([`hotkeys`], `NEARCACHE HOTKEYS`).
//!
//! Costs on the GET hit path: one countdown decrement per hit ([`Sampler`]); one hit in
//! [`SAMPLE_EVERY`] on average (randomised gaps, so periodic access patterns do not alias)
//! is counted in the hot-key sketch. N+1 detection looks at the reads that leave the hit
//! path — misses, and GETs answered from L1 off the hit path (behind other owed replies) —
//! so an N+1 is found when its keys are fetched, not while L1 answers them all.
//!
//! Slow calls are measured where a connection waits for the reply of a run of its
//! commands sent as one upstream call (see `connection::group`): the time it waited, which
//! is the round trip minus any part already spent waiting for earlier calls. A call holding
//! several commands is logged as its first command with a last argument saying how many
//! more were in the pipeline. Calls on a pinned connection (transactions, blocking
//! commands, subscriptions) and the upstream `MGET` of an MGET's misses are not measured.

mod figures;
pub mod hotkeys;
pub mod nplusone;
pub mod redact;
pub mod slowlog;

pub use figures::ProfilerFigures;

use parking_lot::Mutex;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::Config;
use crate::logging::{more, Admit, Limiter};
use hotkeys::HotKeys;
use nplusone::{Finding, Tracker};
use slowlog::SlowLog;

/// Reads sampled for the hot-key sketch: one in this many on average.
pub const SAMPLE_EVERY: u32 = 8;

/// The shared profiler: the slow log, the hot-key sketch and the N+1 counter.
pub struct Profiler {
    /// Slow upstream calls.
    pub slowlog: SlowLog,
    /// Sampled reads by key (shared with warming: peers' asks and re-warming read it).
    pub hot: std::sync::Arc<HotKeys>,
    /// Single-key reads of one shape that make an N+1 (`--n-plus-one-threshold`; changed
    /// by a reload).
    n_plus_one_threshold: AtomicUsize,
    /// The window they must fall in, nanoseconds (`--n-plus-one-window`; changed by a
    /// reload).
    n_plus_one_window: AtomicU64,
    /// N+1 patterns found.
    n_plus_one: AtomicU64,
    /// At most one N+1 line a second for the whole process (shared with the task that
    /// reports a period's suppressed count).
    log: Arc<Mutex<Limiter>>,
}

impl Profiler {
    /// A profiler configured by `--slow-threshold`, `--slowlog-max-len`,
    /// `--n-plus-one-threshold` and `--n-plus-one-window`.
    pub fn new(config: &Config) -> Profiler {
        Profiler {
            slowlog: SlowLog::new(config.slow_threshold, config.slowlog_max_len),
            hot: std::sync::Arc::new(HotKeys::with_capacity(config.warm.peer_keys)),
            n_plus_one_threshold: AtomicUsize::new(config.n_plus_one_threshold),
            n_plus_one_window: AtomicU64::new(nanos(config.n_plus_one_window)),
            n_plus_one: AtomicU64::new(0),
            log: Arc::default(),
        }
    }

    /// Single-key reads of one shape that make an N+1 (`--n-plus-one-threshold`).
    pub fn n_plus_one_threshold(&self) -> usize {
        self.n_plus_one_threshold.load(Relaxed)
    }

    /// The window those reads must fall in (`--n-plus-one-window`).
    pub fn n_plus_one_window(&self) -> Duration {
        Duration::from_nanos(self.n_plus_one_window.load(Relaxed))
    }

    /// Sets the N+1 threshold and window from now on (a reload); a connection's reads
    /// already counted are judged by the new values.
    pub fn set_n_plus_one(&self, threshold: usize, window: Duration) {
        self.n_plus_one_threshold.store(threshold, Relaxed);
        self.n_plus_one_window.store(nanos(window), Relaxed);
    }

    /// Slow commands seen since start (a slow pipelined call counts each of its commands).
    pub fn slow_commands(&self) -> u64 {
        self.slowlog.slow_commands()
    }

    /// Slow calls by the name (upper case) of their first command, most first.
    pub fn slow_by_command(&self) -> Vec<(String, u64)> {
        self.slowlog.by_command()
    }

    /// N+1 patterns found since start (one per connection, shape and window).
    pub fn n_plus_one(&self) -> u64 {
        self.n_plus_one.load(Relaxed)
    }

    /// The most read keys with their approximate read counts (sampled counts scaled back).
    pub fn hot_keys(&self, n: usize) -> Vec<(Bytes, u64)> {
        self.hot
            .top(n)
            .into_iter()
            .map(|(k, c)| (k, u64::from(c) * u64::from(SAMPLE_EVERY)))
            .collect()
    }

    /// Counts an N+1 found on the connection of `client` named `name`, and logs it unless
    /// a line was written less than [`crate::logging::LOG_EVERY`] ago (any client's): then it is counted
    /// in the next line, or in a line of its own at the end of the period.
    #[cold]
    pub fn report_n_plus_one(&self, finding: &Finding, client: &str, name: Option<&[u8]>) {
        self.n_plus_one.fetch_add(1, Relaxed);
        let admit = lock(&self.log).admit(Instant::now());
        match admit {
            Admit::Log { suppressed } => tracing::warn!(
                "{}{}",
                n_plus_one_line(finding, client, name, self.n_plus_one_window()),
                more(suppressed)
            ),
            Admit::Suppress {
                flush_at: Some(deadline),
            } => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let log = self.log.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    if let Some(n) = lock(&log).flush(Instant::now()) {
                        tracing::warn!("N+1: {n} more in the last second (lines suppressed)");
                    }
                });
            }
            Admit::Suppress { flush_at: None } => {}
        }
    }
}

/// `d` in nanoseconds, saturated (585 years).
fn nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

fn lock(log: &Mutex<Limiter>) -> parking_lot::MutexGuard<'_, Limiter> {
    log.lock()
}

/// The one log line for an N+1 (a client without a name shows as `-`).
pub fn n_plus_one_line(
    finding: &Finding,
    client: &str,
    name: Option<&[u8]>,
    window: Duration,
) -> String {
    let name = match name {
        Some(n) if !n.is_empty() => String::from_utf8_lossy(n).into_owned(),
        _ => "-".to_owned(),
    };
    let shape = String::from_utf8_lossy(&finding.shape);
    let mut line = format!(
        "N+1: client {client} name {name} read {} keys like {shape} within {}ms; \
         one MGET would do: MGET",
        finding.reads,
        window.as_millis()
    );
    for key in &finding.examples {
        let _ = write!(line, " {}", String::from_utf8_lossy(key));
    }
    line.push_str(" ...");
    line
}

/// Picks about one read in [`SAMPLE_EVERY`]: a countdown with random gaps of 1 to
/// `2 * SAMPLE_EVERY - 1` (mean [`SAMPLE_EVERY`]).
pub struct Sampler {
    left: u32,
    /// Xorshift state (never zero).
    state: u32,
}

impl Sampler {
    /// A sampler drawing its gaps from `seed` (any value).
    pub fn new(seed: u64) -> Sampler {
        let mixed = (seed ^ (seed >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = Sampler {
            left: 0,
            state: (mixed >> 32) as u32 | 1,
        };
        s.rearm();
        s
    }

    /// Counts one read; true when it is sampled.
    #[inline]
    pub fn tick(&mut self) -> bool {
        if self.left > 1 {
            self.left -= 1;
            return false;
        }
        self.rearm();
        true
    }

    fn rearm(&mut self) {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        self.left = 1 + x % (2 * SAMPLE_EVERY - 1);
    }
}

impl Default for ClientProfile {
    fn default() -> ClientProfile {
        ClientProfile::new()
    }
}

/// One connection's profiler state: its read sampler and its N+1 tracker (created on its
/// first tracked read, so idle connections carry a few bytes).
pub struct ClientProfile {
    /// Picks the reads counted in the hot-key sketch.
    pub sampler: Sampler,
    tracker: Option<Box<Tracker>>,
    /// A GET of the current read batch was counted: the batch's other GETs were pipelined
    /// with it, not each awaited a round trip apart, and are no N+1.
    counted_in_batch: bool,
}

impl ClientProfile {
    /// A connection's state, its sampler seeded from a process-wide count of connections.
    pub fn new() -> ClientProfile {
        static SEEDS: AtomicU64 = AtomicU64::new(0);
        ClientProfile {
            sampler: Sampler::new(SEEDS.fetch_add(1, Relaxed)),
            tracker: None,
            counted_in_batch: false,
        }
    }

    /// A new batch of requests was read from the client's socket.
    #[inline]
    pub fn new_batch(&mut self) {
        self.counted_in_batch = false;
    }

    /// Counts a single-key read of `key` for N+1 detection (only the first of a read
    /// batch: GETs pipelined together are no N+1); a finding is returned the first time a
    /// shape reaches the threshold within the window. `now`: the caller's reading of the
    /// clock for this request, if it took one (else the clock is read here, only when the
    /// read is counted).
    pub fn single_read(
        &mut self,
        profiler: &Profiler,
        key: &[u8],
        now: Option<std::time::Instant>,
    ) -> Option<Finding> {
        if std::mem::replace(&mut self.counted_in_batch, true) {
            return None;
        }
        let tracker = self.tracker.get_or_insert_with(Box::default);
        tracker.read(
            key,
            now.unwrap_or_else(std::time::Instant::now),
            profiler.n_plus_one_threshold(),
            profiler.n_plus_one_window(),
        )
    }
}

#[cfg(test)]
mod tests;
