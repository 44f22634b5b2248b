//! [`StatsFigures`]: one snapshot of the process-wide counters, what INFO and `/metrics`
//! render (the audit's counters are the audit's figures, [`crate::audit::AuditFigures`]).

use std::sync::atomic::Ordering::Relaxed;

use super::commands::{self, KNOWN};
use super::Stats;

/// The counters of [`Stats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsFigures {
    /// Seconds since the process started.
    pub uptime_secs: u64,
    /// GET/MGET keys answered from L1.
    pub l1_hits: u64,
    /// GET/MGET keys that went upstream.
    pub l1_misses: u64,
    /// Upstream calls answered.
    pub upstream_requests: u64,
    /// Upstream calls that got no reply (unavailable, timeout).
    pub upstream_errors: u64,
    /// ... of them, those whose reply took longer than `--upstream-timeout`.
    pub upstream_timeouts: u64,
    /// Sum of call latencies, microseconds.
    pub upstream_latency_us: u64,
    /// Upstream commands sent over pooled connections and not answered yet.
    pub upstream_in_flight: u64,
    /// Upstream connections pinned to one client now.
    pub upstream_pinned: u64,
    /// Commands that would have pinned a connection, refused at `--max-pinned`.
    pub pinned_refused: u64,
    /// Redis Cluster redirects followed, by kind: moved, ask, tryagain.
    pub redirects: [u64; 3],
    /// Client connections open now.
    pub connected_clients: u64,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Client connections refused at `--max-clients`.
    pub rejected_max_clients: u64,
    /// Client connections closed for a malformed request or one over a limit.
    pub rejected_protocol: u64,
    /// Times a client's pipeline was paused at the per-client output bound.
    pub output_bound_waits: u64,
    /// Configuration reloads applied.
    pub config_reloads: u64,
    /// Configuration reloads refused as invalid.
    pub config_reload_failures: u64,
    /// Commands received by `command` label (see [`commands::label`]), every label in index
    /// order; `get` counts the hit path's GETs too.
    pub commands: Vec<(&'static str, u64)>,
}

impl Stats {
    /// The counters now.
    pub fn figures(&self) -> StatsFigures {
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let commands = (0..=KNOWN.len())
            .map(|i| {
                let label = commands::label(i);
                let mut total = self.commands.total(i);
                if label == "get" {
                    total += n(&self.hot_path_gets);
                }
                (label, total)
            })
            .collect();
        StatsFigures {
            uptime_secs: self.started.elapsed().as_secs(),
            l1_hits: n(&self.l1_hits),
            l1_misses: n(&self.l1_misses),
            upstream_requests: n(&self.upstream_requests),
            upstream_errors: n(&self.upstream_errors),
            upstream_timeouts: n(&self.upstream_timeouts),
            upstream_latency_us: n(&self.upstream_latency_us),
            upstream_in_flight: self.upstream_in_flight.load(Relaxed).max(0) as u64,
            upstream_pinned: n(&self.upstream_pinned),
            pinned_refused: n(&self.pinned_refused),
            redirects: self.redirects.each_ref().map(n),
            connected_clients: n(&self.connected_clients),
            total_connections: n(&self.total_connections),
            rejected_max_clients: n(&self.rejected_max_clients),
            rejected_protocol: n(&self.rejected_protocol),
            output_bound_waits: n(&self.output_bound_waits),
            config_reloads: n(&self.config_reloads),
            config_reload_failures: n(&self.config_reload_failures),
            commands,
        }
    }
}

impl StatsFigures {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let hits = self.l1_hits as f64;
        let total = hits + self.l1_misses as f64;
        if total == 0.0 {
            0.0
        } else {
            hits / total
        }
    }

    /// Average upstream call latency in microseconds.
    pub fn upstream_latency_avg_us(&self) -> u64 {
        self.upstream_latency_us
            .checked_div(self.upstream_requests)
            .unwrap_or(0)
    }

    /// Commands received, all labels together.
    pub fn commands_total(&self) -> u64 {
        self.commands.iter().map(|(_, n)| n).sum()
    }
}
