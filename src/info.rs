//! The `# Nearcache` INFO section, rendered from the same figures as the metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::TrackingMode;
use crate::state::Shared;

/// Renders the section, CRLF line endings, ending with CRLF.
pub fn section(shared: &Shared) -> String {
    let stats = &shared.stats;
    let l1 = &shared.l1;
    let link = if shared.upstream.link_up() {
        "up"
    } else {
        "down"
    };
    let mut s = String::from("# Nearcache\r\n");
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(s, "{name}:{value}\r\n");
    };
    line("nearcache_version", &env!("CARGO_PKG_VERSION"));
    line("uptime_in_seconds", &stats.started.elapsed().as_secs());
    line("upstream_address", &shared.upstream.address());
    line("upstream_link_status", &link);
    line("upstream_connections", &shared.upstream.connections());
    line("upstream_routes", &shared.upstream.routes());
    line("connected_clients", &stats.connected_clients.load(Relaxed));
    line(
        "total_connections_received",
        &stats.total_connections.load(Relaxed),
    );
    line("l1_hits", &stats.l1_hits.load(Relaxed));
    line("l1_misses", &stats.l1_misses.load(Relaxed));
    line("l1_hit_rate", &format_args!("{:.4}", stats.hit_rate()));
    line("l1_entries", &l1.entry_count());
    line("l1_used_bytes", &l1.used_bytes());
    line("l1_max_bytes", &l1.max_bytes());
    line("l1_compressed_entries", &l1.compressed_entries());
    line("l1_evictions", &l1.evictions());
    line("upstream_requests", &stats.upstream_requests.load(Relaxed));
    line("upstream_errors", &stats.upstream_errors.load(Relaxed));
    line("upstream_latency_avg_us", &stats.upstream_latency_avg_us());
    let tracking = &shared.tracking;
    let counters = &tracking.counters;
    let mode = match tracking.mode() {
        TrackingMode::Default => "default",
        TrackingMode::Off => "off",
    };
    line("tracking", &mode);
    let link = match (tracking.enabled(), tracking.link_up()) {
        (false, _) => "off",
        (true, true) => "up",
        (true, false) => "down",
    };
    line("invalidation_link", &link);
    line("invalidation_messages", &counters.messages.load(Relaxed));
    line("invalidation_keys_evicted", &counters.keys.load(Relaxed));
    line(
        "invalidation_upstream_flushes",
        &counters.upstream_flushes.load(Relaxed),
    );
    line("l1_flushes_link_lost", &counters.loss_flushes.load(Relaxed));
    line("audit_rate", &shared.config.audit_rate);
    line("audits_done", &stats.audits_done.load(Relaxed));
    line("audits_failed", &stats.audits_failed.load(Relaxed));
    line("audits_skipped", &stats.audits_skipped.load(Relaxed));
    line(
        "stale_hits_detected",
        &stats.stale_hits_detected.load(Relaxed),
    );
    s
}
