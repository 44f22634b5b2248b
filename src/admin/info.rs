//! The sidecar's INFO sections — `# Nearcache`, `# Nearcache_L1`, `# Nearcache_Upstream`,
//! `# Nearcache_Invalidation`, `# Nearcache_Profiler` — rendered from the same figures as
//! the metrics. `INFO nearcache` returns them all; `INFO nearcache_l1` (etc.) one.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::TrackingMode;
use crate::services::Services;

/// A section renderer.
type Render = fn(&Services) -> String;

/// The sidecar's sections, by the name `INFO` selects each with (lower case).
pub const SECTIONS: &[(&str, Render)] = &[
    ("nearcache_server", section),
    ("nearcache_l1", l1_section),
    ("nearcache_upstream", upstream_section),
    ("nearcache_invalidation", invalidation_section),
    ("nearcache_profiler", profiler_section),
];

/// Every section (`INFO nearcache`, `NEARCACHE STATS`), CRLF line endings, a blank line
/// between them as Redis separates its own, ending with CRLF.
pub fn sections(shared: &Services) -> String {
    let parts: Vec<String> = SECTIONS.iter().map(|(_, render)| render(shared)).collect();
    parts.join("\r\n")
}

/// The section named `name` (any case), e.g. `nearcache_l1`.
pub fn named(shared: &Services, name: &[u8]) -> Option<String> {
    SECTIONS
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(_, render)| render(shared))
}

/// Writes `name:value` lines into a section.
struct Lines(String);

impl Lines {
    fn new(title: &str) -> Lines {
        Lines(format!("# {title}\r\n"))
    }

    fn line(&mut self, name: &str, value: &dyn std::fmt::Display) {
        let _ = write!(self.0, "{name}:{value}\r\n");
    }
}

/// Renders `# Nearcache`: the process, its clients and its link, CRLF line endings.
pub fn section(shared: &Services) -> String {
    let stats = &shared.stats;
    let link = if shared.upstream.link_up() {
        "up"
    } else {
        "down"
    };
    let mut s = Lines::new("Nearcache");
    s.line("nearcache_version", &env!("CARGO_PKG_VERSION"));
    s.line("uptime_in_seconds", &stats.started.elapsed().as_secs());
    s.line("upstream_address", &shared.upstream.address());
    s.line("upstream_link_status", &link);
    s.line("upstream_state", &shared.upstream.state().name());
    s.line("ready", &u8::from(super::readiness::not_ready(shared).is_none()));
    s.line("connected_clients", &stats.connected_clients.load(Relaxed));
    s.line(
        "total_connections_received",
        &stats.total_connections.load(Relaxed),
    );
    s.line(
        "rejected_connections_max_clients",
        &stats.rejected_max_clients.load(Relaxed),
    );
    s.line(
        "rejected_connections_protocol",
        &stats.rejected_protocol.load(Relaxed),
    );
    s.line(
        "client_output_bound_waits",
        &stats.output_bound_waits.load(Relaxed),
    );
    let commands: u64 = (0..=crate::metrics::commands::KNOWN.len())
        .map(|i| stats.commands.total(i))
        .sum::<u64>()
        + stats.hot_path_gets.load(Relaxed);
    s.line("total_commands_processed", &commands);
    s.line("config_reloads", &stats.config_reloads.load(Relaxed));
    s.line(
        "config_reload_failures",
        &stats.config_reload_failures.load(Relaxed),
    );
    s.0
}

/// Renders `# Nearcache_L1`: hits, misses, size, evictions, the staleness audit, warming,
/// namespaces.
pub fn l1_section(shared: &Services) -> String {
    let stats = &shared.stats;
    let l1 = &shared.l1;
    let mut s = Lines::new("Nearcache_L1");
    s.line("l1_hits", &stats.l1_hits.load(Relaxed));
    s.line("l1_misses", &stats.l1_misses.load(Relaxed));
    s.line("l1_hit_rate", &format_args!("{:.4}", stats.hit_rate()));
    let (l2_hits, l2_misses) = l1.l2_counts();
    s.line("l2_hits", &l2_hits);
    s.line("l2_misses", &l2_misses);
    s.line("l1_entries", &l1.entry_count());
    s.line("l1_used_bytes", &l1.used_bytes());
    s.line("l1_max_bytes", &l1.max_bytes());
    s.line("l1_compressed_entries", &l1.compressed_entries());
    let ev = l1.evictions_by_reason();
    s.line("l1_evictions", &ev.size);
    s.line("l1_evicted_expired", &ev.expired);
    s.line("l1_evicted_written", &ev.written);
    s.line("l1_evicted_invalidated", &ev.invalidated);
    s.line("l1_evicted_flushed", &ev.flushed);
    s.line("audit_rate", &shared.audit.rate());
    s.line("audits_done", &stats.audits_done.load(Relaxed));
    s.line("audits_failed", &stats.audits_failed.load(Relaxed));
    s.line("audits_skipped", &stats.audits_skipped.load(Relaxed));
    s.line(
        "stale_hits_detected",
        &stats.stale_hits_detected.load(Relaxed),
    );
    warm_lines(shared, &mut s);
    namespace_lines(shared, &mut s);
    s.0
}

/// One line per namespace when any is configured, as Redis's keyspace lines read:
/// `namespace_flags:entries=12,bytes=7104,hits=900,misses=12,cache=1` (the default
/// namespace last).
fn namespace_lines(shared: &Services, s: &mut Lines) {
    let namespaces = shared.l1.namespaces();
    if namespaces.is_empty() {
        return;
    }
    for row in namespaces.rows() {
        s.line(
            &format!("namespace_{}", row.name),
            &format_args!(
                "entries={},bytes={},hits={},misses={},cache={}",
                row.entries,
                row.bytes,
                row.hits,
                row.misses,
                u8::from(row.policy.cache)
            ),
        );
    }
}

/// Renders `# Nearcache_Upstream`: connections, calls, latency, errors.
pub fn upstream_section(shared: &Services) -> String {
    let stats = &shared.stats;
    let up = &shared.upstream;
    let mut s = Lines::new("Nearcache_Upstream");
    s.line("upstream_connections", &up.connections());
    s.line(
        "upstream_pinned_connections",
        &stats.upstream_pinned.load(Relaxed),
    );
    s.line(
        "upstream_pinned_refused",
        &stats.pinned_refused.load(Relaxed),
    );
    s.line("upstream_routes", &up.routes());
    s.line(
        "upstream_in_flight",
        &stats.upstream_in_flight.load(Relaxed).max(0),
    );
    s.line("upstream_reconnects", &up.reconnects());
    s.line("upstream_requests", &stats.upstream_requests.load(Relaxed));
    s.line("upstream_errors", &stats.upstream_errors.load(Relaxed));
    s.line("upstream_timeouts", &stats.upstream_timeouts.load(Relaxed));
    s.line("upstream_latency_avg_us", &stats.upstream_latency_avg_us());
    s.0
}

/// Renders `# Nearcache_Profiler`: slow commands, N+1 reads, hot keys.
pub fn profiler_section(shared: &Services) -> String {
    let p = &shared.profiler;
    let mut s = Lines::new("Nearcache_Profiler");
    s.line("slow_threshold_us", &p.slowlog.threshold().as_micros());
    s.line("slow_commands", &p.slow_commands());
    s.line("slowlog_len", &p.slowlog.len());
    s.line("slowlog_max_len", &p.slowlog.max_len());
    s.line("n_plus_one_threshold", &p.n_plus_one_threshold());
    s.line("n_plus_one_window_ms", &p.n_plus_one_window().as_millis());
    s.line("n_plus_one_detected", &p.n_plus_one());
    let hottest = p.hot_keys(1).into_iter().next();
    s.line("hottest_key_reads", &hottest.map_or(0, |(_, n)| n));
    s.0
}

/// The warming's lines of `# Nearcache_L1`: its state and progress (totals since start,
/// and the last warming's).
fn warm_lines(shared: &Services, s: &mut Lines) {
    let warm = &shared.warm;
    let p = &warm.progress;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    s.line("warm_state", &warm.state().name());
    s.line("warm_runs", &n(&p.runs));
    s.line("warm_rewarms", &n(&p.rewarms));
    s.line("warm_failures", &n(&p.failures));
    s.line("warm_keys_loaded", &n(&p.keys_loaded));
    s.line("warm_bytes_loaded", &n(&p.bytes_loaded));
    s.line("warm_peer_keys", &n(&p.peer_keys));
    s.line("warm_peer_answers", &n(&p.peer_answers));
    s.line("warm_last_keys", &n(&p.last_keys));
    s.line("warm_last_duration_ms", &n(&p.last_duration_ms));
    s.line("warm_holds_ready", &u8::from(warm.holds_readiness()));
}

/// Renders `# Nearcache_Invalidation`: the control connection, tracking and the bus.
pub fn invalidation_section(shared: &Services) -> String {
    let tracking = &shared.control;
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
        (true, false) if tracking.awaiting_credentials() => "awaiting_credentials",
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
    line("bus_keyed", &u8::from(bus.keyed()));
    line("bus_key_id", &bus.key_id().unwrap_or_default());
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
    line("bus_unauthenticated_messages", &n(&b.unauthenticated));
    line("bus_replayed_messages", &n(&b.replayed));
    line("bus_oversized_messages", &n(&b.oversized));
    line("bus_oversized_pattern_messages", &n(&b.oversized_patterns));
    line("bus_key_reloads", &n(&b.key_reloads));
    line(
        "invalidation_upstream_flushes",
        &counters.upstream_flushes.load(Relaxed),
    );
    line("l1_flushes_bus", &n(&b.flushes));
    line("l1_flushes_link_lost", &counters.loss_flushes.load(Relaxed));
    line("bus_hot_asks_sent", &n(&b.sent_hot_asks));
    line("bus_hot_answers_sent", &n(&b.sent_hot_answers));
    line("bus_hot_asks_received", &n(&b.received_hot_asks));
    line("bus_hot_answers_received", &n(&b.received_hot_answers));
    line("bus_lag_last_ms", &n(&b.lag_last_ms));
    line("bus_lag_max_ms", &n(&b.lag_max_ms));
    s
}
