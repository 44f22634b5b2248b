//! The list of counter and gauge families `/metrics` shows, each read from a [`Figures`]
//! snapshot: adding a figure to the exposition is one call here. Label `cache_namespace`
//! (not `namespace`: Prometheus attaches that one to every series scraped from a
//! Kubernetes pod, and the two would collide) is bounded by the configured namespaces.

use std::collections::BTreeMap;

use super::Families;
use crate::admin::figures::Figures;
use crate::metrics::commands;
use crate::upstream::tls::TlsVerify;

/// The label naming a key namespace.
const NAMESPACE_LABEL: &str = "cache_namespace";

/// Every counter and gauge family of `f`, one call each.
pub(super) fn families(f: &Figures, out: &mut Families) {
    let (s, l1, up, c, b) = (&f.stats, &f.l1, &f.upstream, &f.control, &f.control.bus);
    out.counters(
        "nearcache_cache_hits_total",
        "GET/MGET keys answered by L1 (l1) or by the upstream with a value (l2).",
        ["layer"],
        [(["l1"], s.l1_hits), (["l2"], l1.l2_hits)],
    );
    out.counters(
        "nearcache_cache_misses_total",
        "GET/MGET keys L1 did not hold (l1), and that the upstream did not hold (l2).",
        ["layer"],
        [(["l1"], s.l1_misses), (["l2"], l1.l2_misses)],
    );
    out.gauge("nearcache_l1_entries", "Entries in L1.", l1.entries);
    out.gauge(
        "nearcache_l1_used_bytes",
        "Bytes L1 accounts for (key, value and overhead).",
        l1.used_bytes,
    );
    out.gauge(
        "nearcache_l1_max_bytes",
        "The L1 bound (--l1-max-bytes).",
        l1.max_bytes,
    );
    out.gauge(
        "nearcache_l1_compressed_entries",
        "L1 entries stored zstd-compressed.",
        l1.compressed_entries,
    );
    out.counter(
        "nearcache_l1_not_admitted_total",
        "Misses forwarded without filling L1: L1 was crowded and the key had not been missed \
         recently.",
        l1.not_admitted,
    );
    let ev = &l1.evictions;
    out.counters(
        "nearcache_l1_evictions_total",
        "L1 entries removed, by reason.",
        ["reason"],
        [
            (["size"], ev.size),
            (["expired"], ev.expired),
            (["written"], ev.written),
            (["invalidated"], ev.invalidated),
            (["flushed"], ev.flushed),
        ],
    );
    let fenced = &l1.fenced;
    out.counters(
        "nearcache_l1_fences_total",
        "Times a fence ended L1 entries at once, by cause: a cluster slot moved (per slot), a \
         node's control connection lost or its heartbeat unanswered (its slots), an upstream \
         connection closed (what it filled).",
        ["cause"],
        [
            (["slot_moved"], fenced.slots_moved),
            (["node_lost"], fenced.nodes_lost),
            (["lease_expired"], fenced.leases_expired),
            (["connection_closed"], fenced.connections_closed),
        ],
    );
    let unavailable = s.upstream_errors.saturating_sub(s.upstream_timeouts);
    out.counters(
        "nearcache_upstream_errors_total",
        "Upstream calls that got no reply, by kind.",
        ["kind"],
        [
            (["unavailable"], unavailable),
            (["timeout"], s.upstream_timeouts),
        ],
    );
    out.gauges(
        "nearcache_upstream_connections",
        "Open upstream connections: pooled (shared) or pinned to one client.",
        ["state"],
        [
            (["pooled"], up.connections),
            (["pinned"], s.upstream_pinned),
        ],
    );
    out.gauge(
        "nearcache_upstream_in_flight",
        "Upstream commands sent over pooled connections and not answered yet.",
        s.upstream_in_flight,
    );
    out.counter(
        "nearcache_upstream_reconnects_total",
        "Pooled upstream connections re-established after a loss.",
        up.reconnects,
    );
    out.counter(
        "nearcache_upstream_retries_total",
        "Read-only calls left unanswered by a lost upstream connection and sent again on the next.",
        up.retries,
    );
    out.counter(
        "nearcache_upstream_pinned_refused_total",
        "Commands that would have pinned an upstream connection, refused at --max-pinned.",
        s.pinned_refused,
    );
    out.gauge(
        "nearcache_upstream_link_up",
        "1 while the upstream is reachable (0 only for an outage: an upstream that \
         answers yet refuses the credentials is reachable).",
        u64::from(up.link_up),
    );
    if let Some(sn) = &f.sentinel {
        sentinel(sn, out);
    }
    if let Some(c) = &f.cluster {
        super::cluster::families(c, &s.redirects, out);
    }
    out.gauges(
        "nearcache_upstream_state",
        "1 for the upstream's state, 0 for the others: up, unreachable, \
         auth_required (no credentials in --upstream; clients authenticate \
         themselves), auth_failed (the --upstream credentials are refused).",
        ["state"],
        up.state
            .names_marked()
            .map(|(name, current)| ([name], u64::from(current))),
    );
    tls_families(f, out);
    out.counters(
        "nearcache_invalidation_messages_total",
        "Invalidation messages received (in) and sent (out).",
        ["source", "kind", "direction"],
        [
            (["tracking", "key", "in"], c.messages),
            (["bus", "key", "in"], b.received_keys),
            (["bus", "pattern", "in"], b.received_patterns),
            (["bus", "flush", "in"], b.received_flushes),
            (["bus", "key", "out"], b.sent_keys),
            (["bus", "pattern", "out"], b.sent_patterns),
            (["bus", "flush", "out"], b.sent_flushes),
        ],
    );
    out.counter(
        "nearcache_invalidation_sequence_gaps_total",
        "Bus messages lost: a peer's sequence skipped.",
        b.sequence_gaps,
    );
    out.counters(
        "nearcache_bus_dropped_messages_total",
        "Bus messages not acted on, by reason: unauthenticated (no valid MAC under \
         --bus-key-file), replayed, oversized, malformed.",
        ["reason"],
        [
            (["unauthenticated"], b.unauthenticated),
            (["replayed"], b.replayed),
            (["oversized"], b.oversized),
            (["malformed"], b.malformed),
        ],
    );
    out.gauge(
        "nearcache_bus_keyed",
        "1 when bus messages are signed and verified (--bus-key-file), 0 when the bus is open.",
        u64::from(b.keyed),
    );
    out.gauge(
        "nearcache_invalidation_link_up",
        "1 while the control connection (tracking and bus) is up or not needed.",
        u64::from(c.serving),
    );
    out.counters(
        "nearcache_l1_flushes_total",
        "Whole-L1 flushes, by cause.",
        ["cause"],
        [
            (["link_lost"], c.loss_flushes),
            (["upstream_flush"], c.upstream_flushes),
            (["bus"], b.flushes),
        ],
    );
    out.counter(
        "nearcache_stale_hits_detected_total",
        "Audited L1 hits that differed from the upstream with no invalidation to explain it.",
        f.audit.stale_hits,
    );
    out.gauge(
        "nearcache_clients_connected",
        "Client connections open.",
        s.connected_clients,
    );
    out.counter(
        "nearcache_clients_accepted_total",
        "Client connections accepted.",
        s.total_connections,
    );
    out.counter(
        "nearcache_clients_output_bound_waits_total",
        "Times a client's pipeline was paused because the replies owed to it reached the per-client bound.",
        s.output_bound_waits,
    );
    out.counters(
        "nearcache_commands_total",
        "Commands received, by command (known commands, else other).",
        ["command"],
        s.commands
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(label, n)| ([*label], *n)),
    );
    out.counters(
        "nearcache_clients_rejected_total",
        "Client connections refused (max_clients) or closed for a malformed request (protocol).",
        ["reason"],
        [
            (["max_clients"], s.rejected_max_clients),
            (["protocol"], s.rejected_protocol),
        ],
    );
    let mut slow = BTreeMap::new();
    for (name, calls) in &f.profiler.slow_by_command {
        *slow
            .entry(commands::label(commands::index(name.as_bytes())))
            .or_insert(0) += calls;
    }
    out.counters(
        "nearcache_slow_commands_total",
        "Upstream calls above --slow-threshold, by their first command.",
        ["command"],
        slow.into_iter().map(|(label, calls)| ([label], calls)),
    );
    out.counter(
        "nearcache_n_plus_one_total",
        "N+1 read patterns found (once per client, key shape and window).",
        f.profiler.n_plus_one_detected,
    );
    out.counters(
        "nearcache_config_reloads_total",
        "Configuration reloads on SIGHUP: applied (ok) or refused as invalid (invalid).",
        ["result"],
        [
            (["ok"], s.config_reloads),
            (["invalid"], s.config_reload_failures),
        ],
    );
    let w = &f.warm;
    out.counter(
        "nearcache_warm_keys_loaded_total",
        "Keys warming loaded.",
        w.keys_loaded,
    );
    out.counter(
        "nearcache_warm_bytes_loaded_total",
        "Key + value bytes warming loaded.",
        w.bytes_loaded,
    );
    out.counter("nearcache_warm_runs_total", "Warmings run.", w.runs);
    out.counter(
        "nearcache_warm_failures_total",
        "Warmings that gave up.",
        w.failures,
    );
    out.gauge(
        "nearcache_warm_running",
        "1 while a warming runs.",
        u64::from(w.state == crate::warm::State::Running),
    );
    let ns = &l1.namespaces;
    let rows = |value: fn(&crate::cache::namespaces::Row) -> u64| {
        ns.iter().map(move |row| ([row.name.as_str()], value(row)))
    };
    out.counters(
        "nearcache_namespace_hits_total",
        "GET/MGET keys of the namespace answered by L1.",
        [NAMESPACE_LABEL],
        rows(|r| r.hits),
    );
    out.counters(
        "nearcache_namespace_misses_total",
        "GET/MGET keys of the namespace L1 did not answer (every read of a namespace \
         with cache = false).",
        [NAMESPACE_LABEL],
        rows(|r| r.misses),
    );
    out.gauges(
        "nearcache_namespace_entries",
        "L1 entries of the namespace.",
        [NAMESPACE_LABEL],
        rows(|r| r.entries),
    );
    out.gauges(
        "nearcache_namespace_bytes",
        "Weight of the namespace's L1 entries, as counted against --l1-max-bytes.",
        [NAMESPACE_LABEL],
        rows(|r| r.bytes),
    );
}

/// The `nearcache_sentinel_*` families of a `redis+sentinel://` upstream.
fn sentinel(s: &crate::upstream::sentinel::SentinelFigures, out: &mut Families) {
    out.gauge(
        "nearcache_sentinel_primary_known",
        "1 while Sentinel discovery has a primary (verified with ROLE), 0 before the first.",
        u64::from(s.primary.is_some()),
    );
    out.counter(
        "nearcache_sentinel_failovers_total",
        "Switches of the primary after the first discovery.",
        s.failovers,
    );
    out.gauge(
        "nearcache_sentinel_seconds_since_switch",
        "Seconds since the primary last changed (the first discovery counts); 0 before it.",
        s.seconds_since_switch.unwrap_or(0),
    );
    out.gauges(
        "nearcache_sentinel_sentinels",
        "Sentinels known (configured and learned) and reachable (their +switch-master \
         subscription is up).",
        ["state"],
        [(["known"], s.known), (["reachable"], s.reachable)],
    );
}

/// The upstream TLS families: `nearcache_upstream_tls` and the counters always (0 for a
/// plain upstream, so that rates over them evaluate), the gauges of the TLS in use for a
/// `rediss://` upstream only.
fn tls_families(f: &Figures, out: &mut Families) {
    let tls = f.upstream.tls.as_ref();
    out.gauge(
        "nearcache_upstream_tls",
        "1 when the upstream is reached over TLS (rediss://), 0 for plain text.",
        u64::from(tls.is_some()),
    );
    out.gauges(
        "nearcache_upstream_tls_verify",
        "1 for how the upstream's certificate is verified, 0 for the others: ca_file \
         (--upstream-tls-ca), system_roots, insecure (--upstream-tls-insecure).",
        ["mode"],
        tls.into_iter()
            .flat_map(|t| TlsVerify::ALL.map(|mode| ([mode.name()], u64::from(mode == t.verify)))),
    );
    out.gauges(
        "nearcache_upstream_tls_client_cert",
        "1 when a client certificate is shown to the upstream (--upstream-tls-cert).",
        [],
        tls.map(|t| ([], u64::from(t.client_cert))),
    );
    out.counters(
        "nearcache_upstream_tls_reloads_total",
        "Changes of the upstream TLS files: loaded (ok), or not loadable, the previous \
         material kept (failed).",
        ["result"],
        [
            (["ok"], tls.map_or(0, |t| t.reloads)),
            (["failed"], tls.map_or(0, |t| t.reload_failures)),
        ],
    );
    out.counter(
        "nearcache_upstream_tls_handshake_failures_total",
        "TLS handshakes with the upstream that failed (refused, unverified, timed out).",
        tls.map_or(0, |t| t.handshake_failures),
    );
    out.signed_gauge(
        "nearcache_upstream_tls_cert_expiry_seconds",
        "Seconds until the client certificate chain in use expires (its earliest notAfter; \
         negative once expired).",
        tls.and_then(|t| t.cert_expiry_secs),
    );
}
