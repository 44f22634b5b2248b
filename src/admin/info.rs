//! The sidecar's INFO sections — `# Nearcache`, `# Nearcache_L1`, `# Nearcache_Upstream`,
//! `# Nearcache_Invalidation`, `# Nearcache_Profiler` — rendered from one [`Figures`]
//! snapshot, the one `/metrics` renders too. `INFO nearcache` returns them all;
//! `INFO nearcache_l1` (etc.) one.

use std::fmt::Write;

use super::figures::Figures;
use crate::config::TrackingMode;
use crate::services::Services;
use crate::upstream::tls::TlsFigures;

/// A section renderer.
type Render = fn(&Figures) -> String;

/// The sidecar's sections, by the name `INFO` selects each with (lower case).
pub const SECTIONS: &[(&str, Render)] = &[
    ("nearcache_server", section),
    ("nearcache_l1", l1_section),
    ("nearcache_upstream", upstream_section),
    ("nearcache_invalidation", invalidation_section),
    ("nearcache_profiler", profiler_section),
];

/// Every section (`INFO nearcache`, `NEARCACHE STATS`) of `shared`'s figures now.
pub fn sections(shared: &Services) -> String {
    render(&Figures::take(shared))
}

/// Whether `name` (any case) names one of the sidecar's sections, e.g. `nearcache_l1`.
pub fn is_section(name: &[u8]) -> bool {
    SECTIONS
        .iter()
        .any(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// The sidecar's sections among `names` (any case), in their order, rendered from one
/// snapshot of `shared`'s figures (none is taken when no name is one of them).
pub fn named<N: AsRef<[u8]>>(shared: &Services, names: &[N]) -> Vec<String> {
    let mut figures = None;
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref();
        let Some((_, render)) = SECTIONS
            .iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        else {
            continue;
        };
        out.push(render(figures.get_or_insert_with(|| Figures::take(shared))));
    }
    out
}

/// Every section of `f`, CRLF line endings, a blank line between them as Redis separates
/// its own, ending with CRLF.
pub fn render(f: &Figures) -> String {
    let parts: Vec<String> = SECTIONS.iter().map(|(_, render)| render(f)).collect();
    parts.join("\r\n")
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
pub fn section(f: &Figures) -> String {
    let (s, up) = (&f.stats, &f.upstream);
    let mut l = Lines::new("Nearcache");
    l.line("nearcache_version", &env!("CARGO_PKG_VERSION"));
    l.line("uptime_in_seconds", &s.uptime_secs);
    l.line("upstream_address", &up.address);
    l.line(
        "upstream_link_status",
        &if up.link_up { "up" } else { "down" },
    );
    l.line("upstream_state", &up.state.name());
    if let Some(sentinel) = &f.sentinel {
        sentinel_lines(&mut l, sentinel);
    }
    if let Some(cluster) = &f.cluster {
        cluster_lines(&mut l, cluster, &f.stats.redirects);
    }
    l.line("ready", &u8::from(f.not_ready().is_none()));
    l.line("connected_clients", &s.connected_clients);
    l.line("total_connections_received", &s.total_connections);
    l.line("rejected_connections_max_clients", &s.rejected_max_clients);
    l.line("rejected_connections_protocol", &s.rejected_protocol);
    l.line("client_output_bound_waits", &s.output_bound_waits);
    l.line("total_commands_processed", &s.commands_total());
    l.line("config_reloads", &s.config_reloads);
    l.line("config_reload_failures", &s.config_reload_failures);
    l.0
}

/// The `cluster_*` lines of a `redis+cluster://` upstream: the topology, the redirects
/// followed, one `cluster_node<i>` line per primary (as Redis's `slave<i>` lines read).
fn cluster_lines(l: &mut Lines, c: &super::figures::ClusterFigures, redirects: &[u64; 3]) {
    use crate::upstream::cluster::Reason;
    let t = &c.topology;
    l.line("cluster_known_nodes", &t.nodes);
    l.line("cluster_primaries", &c.nodes.len());
    l.line("cluster_slots_assigned", &t.slots_assigned);
    l.line("cluster_topology_epoch", &t.epoch);
    l.line("cluster_refreshes", &t.refreshes);
    l.line("cluster_refreshes_failed", &t.failed);
    l.line("cluster_views_disputed", &t.disputed);
    for (reason, n) in Reason::ALL.iter().zip(t.requested) {
        l.line(&format!("cluster_refresh_requests_{}", reason.name()), &n);
    }
    l.line("cluster_slots_moved", &t.slots_moved);
    for (kind, n) in REDIRECTS.iter().zip(redirects) {
        l.line(&format!("cluster_redirects_{kind}"), n);
    }
    for (i, node) in c.nodes.iter().enumerate() {
        let link = if node.link_up { "up" } else { "down" };
        let avg = node.latency_us.checked_div(node.requests).unwrap_or(0);
        l.line(
            &format!("cluster_node{i}"),
            &format_args!(
                "address={},link={link},requests={},latency_avg_us={avg}",
                node.address, node.requests
            ),
        );
    }
}

/// The kinds of redirect followed, in the order of `StatsFigures::redirects`.
pub const REDIRECTS: [&str; 3] = ["moved", "ask", "tryagain"];

/// The `sentinel_*` lines of a `redis+sentinel://` upstream.
fn sentinel_lines(l: &mut Lines, s: &crate::upstream::sentinel::SentinelFigures) {
    l.line("sentinel_master", &s.master);
    l.line(
        "sentinel_primary",
        &s.primary.as_deref().unwrap_or("(none)"),
    );
    l.line("sentinel_failovers", &s.failovers);
    match s.seconds_since_switch {
        Some(secs) => l.line("sentinel_seconds_since_switch", &secs),
        None => l.line("sentinel_seconds_since_switch", &-1),
    }
    l.line("sentinel_known", &s.known);
    l.line("sentinel_reachable", &s.reachable);
}

/// Renders `# Nearcache_L1`: hits, misses, size, evictions, the staleness audit, warming,
/// namespaces.
pub fn l1_section(f: &Figures) -> String {
    let (s, l1, a) = (&f.stats, &f.l1, &f.audit);
    let mut l = Lines::new("Nearcache_L1");
    l.line("l1_hits", &s.l1_hits);
    l.line("l1_misses", &s.l1_misses);
    l.line("l1_hit_rate", &format_args!("{:.4}", s.hit_rate()));
    l.line("l2_hits", &l1.l2_hits);
    l.line("l2_misses", &l1.l2_misses);
    l.line("l1_entries", &l1.entries);
    l.line("l1_used_bytes", &l1.used_bytes);
    l.line("l1_max_bytes", &l1.max_bytes);
    l.line("l1_compressed_entries", &l1.compressed_entries);
    l.line("l1_not_admitted", &l1.not_admitted);
    let ev = &l1.evictions;
    l.line("l1_evictions", &ev.size);
    l.line("l1_evicted_expired", &ev.expired);
    l.line("l1_evicted_written", &ev.written);
    l.line("l1_evicted_invalidated", &ev.invalidated);
    l.line("l1_evicted_flushed", &ev.flushed);
    let fenced = &l1.fenced;
    l.line("l1_slots_moved", &fenced.slots_moved);
    l.line("l1_flushes_node_lost", &fenced.nodes_lost);
    l.line("l1_flushes_lease_expired", &fenced.leases_expired);
    l.line("l1_connections_closed", &fenced.connections_closed);
    l.line("audit_rate", &a.rate);
    l.line("audits_done", &a.done);
    l.line("audits_failed", &a.failed);
    l.line("audits_skipped", &a.skipped);
    l.line("stale_hits_detected", &a.stale_hits);
    let w = &f.warm;
    l.line("warm_state", &w.state.name());
    l.line("warm_runs", &w.runs);
    l.line("warm_rewarms", &w.rewarms);
    l.line("warm_failures", &w.failures);
    l.line("warm_keys_loaded", &w.keys_loaded);
    l.line("warm_bytes_loaded", &w.bytes_loaded);
    l.line("warm_peer_keys", &w.peer_keys);
    l.line("warm_peer_answers", &w.peer_answers);
    l.line("warm_last_keys", &w.last_keys);
    l.line("warm_last_duration_ms", &w.last_duration_ms);
    l.line("warm_holds_ready", &u8::from(w.holds_ready));
    // One line per namespace when any is configured, as Redis's keyspace lines read:
    // `namespace_flags:entries=12,bytes=7104,hits=900,misses=12,cache=1` (default last).
    for row in &l1.namespaces {
        l.line(
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
    l.0
}

/// Renders `# Nearcache_Upstream`: connections, calls, latency, errors.
pub fn upstream_section(f: &Figures) -> String {
    let (s, up) = (&f.stats, &f.upstream);
    let mut l = Lines::new("Nearcache_Upstream");
    l.line("upstream_connections", &up.connections);
    l.line("upstream_pinned_connections", &s.upstream_pinned);
    l.line("upstream_pinned_refused", &s.pinned_refused);
    l.line("upstream_routes", &up.routes);
    l.line("upstream_in_flight", &s.upstream_in_flight);
    l.line("upstream_reconnects", &up.reconnects);
    l.line("upstream_retries", &up.retries);
    l.line("upstream_requests", &s.upstream_requests);
    l.line("upstream_errors", &s.upstream_errors);
    l.line("upstream_timeouts", &s.upstream_timeouts);
    l.line("upstream_latency_avg_us", &s.upstream_latency_avg_us());
    tls_lines(&mut l, up.tls.as_ref());
    l.0
}

/// The upstream TLS lines: `upstream_tls:no` for a plain upstream, else how it is verified,
/// the client certificate and its expiry, the files' reloads and failed handshakes.
fn tls_lines(l: &mut Lines, tls: Option<&TlsFigures>) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    l.line("upstream_tls", &yes_no(tls.is_some()));
    let Some(t) = tls else {
        return;
    };
    l.line("upstream_tls_verify", &t.verify.name());
    l.line("upstream_tls_client_cert", &yes_no(t.client_cert));
    l.line("upstream_tls_reloads", &t.reloads);
    l.line("upstream_tls_reload_failures", &t.reload_failures);
    l.line("upstream_tls_handshake_failures", &t.handshake_failures);
    if let Some(secs) = t.cert_expiry_secs {
        l.line("upstream_tls_cert_expiry_seconds", &secs);
    }
}

/// Renders `# Nearcache_Profiler`: slow commands, N+1 reads, hot keys.
pub fn profiler_section(f: &Figures) -> String {
    let p = &f.profiler;
    let mut l = Lines::new("Nearcache_Profiler");
    l.line("slow_threshold_us", &p.slow_threshold_us);
    l.line("slow_commands", &p.slow_commands);
    l.line("slowlog_len", &p.slowlog_len);
    l.line("slowlog_max_len", &p.slowlog_max_len);
    l.line("n_plus_one_threshold", &p.n_plus_one_threshold);
    l.line("n_plus_one_window_ms", &p.n_plus_one_window_ms);
    l.line("n_plus_one_detected", &p.n_plus_one_detected);
    l.line("hottest_key_reads", &p.hottest_key_reads);
    l.0
}

/// Renders `# Nearcache_Invalidation`: the control connection, tracking and the bus.
pub fn invalidation_section(f: &Figures) -> String {
    let (c, b) = (&f.control, &f.control.bus);
    let mut l = Lines::new("Nearcache_Invalidation");
    let link = match (c.link_needed, c.link_up) {
        (false, _) => "off",
        (true, true) => "up",
        (true, false) if c.awaiting_credentials => "awaiting_credentials",
        (true, false) => "down",
    };
    l.line("invalidation_link", &link);
    let mode = match c.mode {
        TrackingMode::Default => "default",
        TrackingMode::Off => "off",
        TrackingMode::Bcast => "bcast",
    };
    l.line("tracking", &mode);
    l.line("tracking_prefixes", &c.prefixes);
    let bus_state = match (b.active, b.subscribed) {
        (false, _) => "refused",
        (true, true) => "subscribed",
        (true, false) => "down",
    };
    l.line("bus", &bus_state);
    l.line("bus_channel", &b.channel);
    l.line("bus_sender_id", &b.sender);
    l.line("bus_keyed", &u8::from(b.keyed));
    l.line("bus_key_id", &b.key_id);
    l.line("bus_publishes_keys", &u8::from(c.publishes_keys));
    l.line("invalidation_messages", &c.messages);
    l.line("invalidation_keys_evicted", &c.keys);
    l.line("bus_received_key_messages", &b.received_keys);
    l.line("bus_received_keys", &b.keys_received);
    l.line("bus_received_patterns", &b.received_patterns);
    l.line("bus_received_flushes", &b.received_flushes);
    l.line("bus_sent_key_messages", &b.sent_keys);
    l.line("bus_sent_keys", &b.keys_sent);
    l.line("bus_sent_patterns", &b.sent_patterns);
    l.line("bus_sent_flushes", &b.sent_flushes);
    l.line("bus_own_messages_skipped", &b.own_skipped);
    l.line("bus_malformed_messages", &b.malformed);
    l.line("bus_sequence_gaps", &b.sequence_gaps);
    l.line("bus_unauthenticated_messages", &b.unauthenticated);
    l.line("bus_replayed_messages", &b.replayed);
    l.line("bus_oversized_messages", &b.oversized);
    l.line("bus_oversized_pattern_messages", &b.oversized_patterns);
    l.line("bus_key_reloads", &b.key_reloads);
    l.line("invalidation_upstream_flushes", &c.upstream_flushes);
    l.line("l1_flushes_bus", &b.flushes);
    l.line("l1_flushes_link_lost", &c.loss_flushes);
    l.line("bus_hot_asks_sent", &b.sent_hot_asks);
    l.line("bus_hot_answers_sent", &b.sent_hot_answers);
    l.line("bus_hot_asks_received", &b.received_hot_asks);
    l.line("bus_hot_answers_received", &b.received_hot_answers);
    l.line("bus_lag_last_ms", &b.lag_last_ms);
    l.line("bus_lag_max_ms", &b.lag_max_ms);
    l.0
}
