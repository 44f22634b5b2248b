//! The sidecar's metric primitives, built once and updated by every layer: the counters
//! ([`Stats`]), the per-command index ([`commands`]) and the latency histograms
//! ([`histograms`]). Counting costs a relaxed atomic add (per batch on the hit path); the
//! admin plane reads them at scrape time, so no request looks up a label.

pub mod commands;
mod figures;
pub mod histograms;

pub use figures::StatsFigures;
pub use histograms::{Histograms, LagHistogram, LookupHistogram};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::{CommandCounts, KNOWN};

/// Process-wide counters (relaxed atomics: figures, not synchronisation).
pub struct Stats {
    /// When the process started.
    pub started: Instant,
    /// GET/MGET keys answered from L1.
    pub l1_hits: AtomicU64,
    /// GET/MGET keys that went upstream.
    pub l1_misses: AtomicU64,
    /// Requests (calls) answered by the upstream.
    pub upstream_requests: AtomicU64,
    /// Calls that got no reply (unavailable, timeout).
    pub upstream_errors: AtomicU64,
    /// Sum of call latencies, microseconds.
    pub upstream_latency_us: AtomicU64,
    /// Client connections open now.
    pub connected_clients: AtomicU64,
    /// Upstream connections pinned to one client (transactions, subscriptions, blocking
    /// calls) open now, in use or kept for their client.
    pub upstream_pinned: AtomicU64,
    /// Commands that would have pinned a connection, refused at `--max-pinned`.
    pub pinned_refused: AtomicU64,
    /// Redis Cluster redirects followed inside the sidecar, by kind (moved, ask,
    /// tryagain: see `connection::handlers::redirect::Redirect`).
    pub redirects: [AtomicU64; 3],
    /// Client connections accepted since start.
    pub total_connections: AtomicU64,
    /// Client connections refused at the `--max-clients` bound.
    pub rejected_max_clients: AtomicU64,
    /// Client connections closed for a malformed request or a request over a limit.
    pub rejected_protocol: AtomicU64,
    /// Times a client's pipeline was paused because the replies owed to it reached the
    /// per-client bound (its further requests wait until those are written).
    pub output_bound_waits: AtomicU64,
    /// Configuration reloads (SIGHUP) that were applied.
    pub config_reloads: AtomicU64,
    /// Configuration reloads refused because the new configuration was invalid.
    pub config_reload_failures: AtomicU64,
    /// Commands received, by known command (see [`commands`]).
    pub commands: CommandCounts,
    /// Calls that got no reply because the upstream was unavailable (or refused the route).
    pub upstream_unavailable: AtomicU64,
    /// Calls whose reply took longer than `--upstream-timeout`.
    pub upstream_timeouts: AtomicU64,
    /// Upstream round trips, by the call's first command.
    pub upstream_latency: histograms::Histograms,
    /// Upstream commands sent over pooled connections and not answered yet.
    pub upstream_in_flight: AtomicI64,
    /// GETs answered by the hit path (counted apart from the commands dispatched).
    pub hot_path_gets: AtomicU64,
    /// L1 lookup time, sampled.
    pub lookup_latency: histograms::LookupHistogram,
    /// Audited L1 hits compared with an upstream reply (see [`crate::audit`]).
    pub audits_done: AtomicU64,
    /// Audits that got no usable upstream reply (an error, unavailable, a timeout).
    pub audits_failed: AtomicU64,
    /// Hits selected for an audit while too many audits were in flight.
    pub audits_skipped: AtomicU64,
    /// Audited hits whose served value differed from the upstream's with no invalidation
    /// of the key to explain it.
    pub stale_hits_detected: AtomicU64,
}

impl Stats {
    /// All zero, started now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            l1_hits: AtomicU64::new(0),
            l1_misses: AtomicU64::new(0),
            upstream_requests: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            upstream_latency_us: AtomicU64::new(0),
            connected_clients: AtomicU64::new(0),
            upstream_pinned: AtomicU64::new(0),
            pinned_refused: AtomicU64::new(0),
            redirects: Default::default(),
            total_connections: AtomicU64::new(0),
            rejected_max_clients: AtomicU64::new(0),
            rejected_protocol: AtomicU64::new(0),
            output_bound_waits: AtomicU64::new(0),
            config_reloads: AtomicU64::new(0),
            config_reload_failures: AtomicU64::new(0),
            commands: CommandCounts::default(),
            upstream_unavailable: AtomicU64::new(0),
            upstream_timeouts: AtomicU64::new(0),
            upstream_latency: histograms::Histograms::new(KNOWN.len() + 1),
            upstream_in_flight: AtomicI64::new(0),
            hot_path_gets: AtomicU64::new(0),
            lookup_latency: histograms::LookupHistogram::default(),
            audits_done: AtomicU64::new(0),
            audits_failed: AtomicU64::new(0),
            audits_skipped: AtomicU64::new(0),
            stale_hits_detected: AtomicU64::new(0),
        }
    }

    /// Records one answered upstream call whose first command has index `command` (see
    /// [`commands::index`]).
    pub fn record_upstream(&self, latency: Duration, command: usize) {
        self.upstream_latency.observe(command, latency);
        self.upstream_requests.fetch_add(1, Relaxed);
        self.upstream_latency_us
            .fetch_add(latency.as_micros() as u64, Relaxed);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Counts `n` commands in flight upstream for as long as it lives (a call's life: answered,
/// failed or dropped with its connection).
pub struct InFlight {
    stats: Arc<Stats>,
    n: i64,
}

impl InFlight {
    /// Counts `n` commands from now.
    pub fn new(stats: Arc<Stats>, n: usize) -> InFlight {
        let n = n as i64;
        stats.upstream_in_flight.fetch_add(n, Relaxed);
        InFlight { stats, n }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.upstream_in_flight.fetch_sub(self.n, Relaxed);
    }
}
