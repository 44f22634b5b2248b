//! The sidecar's INFO sections, `# Nearcache` and `# Nearcache_Invalidation`, rendered from
//! the same figures as the metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::TrackingMode;
use crate::state::Shared;

/// Both sections (`INFO nearcache`, `NEARCACHE STATS`), CRLF line endings, a blank line
/// between them as Redis separates its own, ending with CRLF.
pub fn sections(shared: &Shared) -> String {
    let mut s = section(shared);
    s.push_str("\r\n");
    s.push_str(&invalidation_section(shared));
    s
}

/// Renders `# Nearcache`, CRLF line endings, ending with CRLF.
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
    line(
        "upstream_pinned_connections",
        &stats.upstream_pinned.load(Relaxed),
    );
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

/// Renders `# Nearcache_Invalidation`: the control connection, tracking and the bus.
pub fn invalidation_section(shared: &Shared) -> String {
    let tracking = &shared.tracking;
    let counters = &tracking.counters;
    let bus = &tracking.bus;
    let b = &bus.counters;
    let mut s = String::from("# Nearcache_Invalidation\r\n");
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(s, "{name}:{value}\r\n");
    };
    let link = match (tracking.link_needed(), tracking.link_up()) {
        (false, _) => "off",
        (true, true) => "up",
        (true, false) => "down",
    };
    line("invalidation_link", &link);
    let mode = match tracking.mode() {
        TrackingMode::Default => "default",
        TrackingMode::Off => "off",
    };
    line("tracking", &mode);
    let bus_state = match (bus.active(), bus.subscribed()) {
        (false, _) => "refused",
        (true, true) => "subscribed",
        (true, false) => "down",
    };
    line("bus", &bus_state);
    line("bus_channel", &String::from_utf8_lossy(bus.channel()));
    line("bus_sender_id", &String::from_utf8_lossy(bus.sender()));
    line("bus_publishes_keys", &u8::from(tracking.publishes_keys()));
    line("invalidation_messages", &counters.messages.load(Relaxed));
    line("invalidation_keys_evicted", &counters.keys.load(Relaxed));
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    line("bus_received_key_messages", &n(&b.received_keys));
    line("bus_received_keys", &n(&b.keys_received));
    line("bus_received_patterns", &n(&b.received_patterns));
    line("bus_received_flushes", &n(&b.received_flushes));
    line("bus_sent_key_messages", &n(&b.sent_keys));
    line("bus_sent_keys", &n(&b.keys_sent));
    line("bus_sent_patterns", &n(&b.sent_patterns));
    line("bus_sent_flushes", &n(&b.sent_flushes));
    line("bus_own_messages_skipped", &n(&b.own_skipped));
    line("bus_malformed_messages", &n(&b.malformed));
    line("bus_sequence_gaps", &n(&b.sequence_gaps));
    line(
        "invalidation_upstream_flushes",
        &counters.upstream_flushes.load(Relaxed),
    );
    line("l1_flushes_bus", &n(&b.flushes));
    line("l1_flushes_link_lost", &counters.loss_flushes.load(Relaxed));
    line("bus_lag_last_ms", &n(&b.lag_last_ms));
    line("bus_lag_max_ms", &n(&b.lag_max_ms));
    s
}
