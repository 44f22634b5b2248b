//! The Prometheus exposition (`/metrics`) of the sidecar's figures, with the `prometheus`
//! crate.

use parking_lot::Mutex;
use std::sync::atomic::Ordering::Relaxed;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::namespaces::NamespaceFigures;
use crate::metrics::commands::{self, KNOWN};
use crate::services::Services;

/// Everything `/metrics` shows; [`Exporter::render`] refreshes and encodes it.
pub struct Exporter {
    registry: Registry,
    figures: Figures,
    /// One scrape at a time: a refresh resets and re-adds counters.
    render: Mutex<()>,
}

/// The metrics refreshed from the shared atomics at scrape time.
struct Figures {
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    l1_entries: IntGauge,
    l1_used_bytes: IntGauge,
    l1_max_bytes: IntGauge,
    l1_compressed: IntGauge,
    l1_evictions: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_connections: IntGaugeVec,
    upstream_in_flight: IntGauge,
    upstream_reconnects: IntCounter,
    upstream_pinned_refused: IntCounter,
    upstream_link_up: IntGauge,
    upstream_state: IntGaugeVec,
    invalidation_messages: IntCounterVec,
    invalidation_gaps: IntCounter,
    bus_dropped: IntCounterVec,
    bus_keyed: IntGauge,
    invalidation_link_up: IntGauge,
    l1_flushes: IntCounterVec,
    stale_hits: IntCounter,
    clients_connected: IntGauge,
    clients_accepted: IntCounter,
    clients_output_bound_waits: IntCounter,
    commands: IntCounterVec,
    rejected: IntCounterVec,
    slow_commands: IntCounterVec,
    n_plus_one: IntCounter,
    config_reloads: IntCounterVec,
    warm_keys: IntCounter,
    warm_bytes: IntCounter,
    warm_runs: IntCounter,
    warm_failures: IntCounter,
    warm_running: IntGauge,
    namespaces: NamespaceFigures,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid counter");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

/// Sets a counter to an absolute value read from an atomic.
fn set(c: &IntCounter, value: u64) {
    c.reset();
    c.inc_by(value);
}

impl Exporter {
    /// Registers every metric (and the process collector) over `shared`'s figures.
    pub fn new(shared: &Services) -> Exporter {
        let r = Registry::new();
        r.register(shared.stats.upstream_latency.collector())
            .expect("registered once");
        r.register(shared.control.bus.counters.lag.collector())
            .expect("registered once");
        r.register(shared.stats.lookup_latency.collector())
            .expect("registered once");
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
        let figures = Figures {
            cache_hits: counter_vec(
                &r,
                "nearcache_cache_hits_total",
                "GET/MGET keys answered by L1 (l1) or by the upstream with a value (l2).",
                &["layer"],
            ),
            cache_misses: counter_vec(
                &r,
                "nearcache_cache_misses_total",
                "GET/MGET keys L1 did not hold (l1), and that the upstream did not hold (l2).",
                &["layer"],
            ),
            l1_entries: gauge(&r, "nearcache_l1_entries", "Entries in L1."),
            l1_used_bytes: gauge(
                &r,
                "nearcache_l1_used_bytes",
                "Bytes L1 accounts for (key, value and overhead).",
            ),
            l1_max_bytes: gauge(&r, "nearcache_l1_max_bytes", "The L1 bound (--l1-max-bytes)."),
            l1_compressed: gauge(
                &r,
                "nearcache_l1_compressed_entries",
                "L1 entries stored zstd-compressed.",
            ),
            l1_evictions: counter_vec(
                &r,
                "nearcache_l1_evictions_total",
                "L1 entries removed, by reason.",
                &["reason"],
            ),
            upstream_errors: counter_vec(
                &r,
                "nearcache_upstream_errors_total",
                "Upstream calls that got no reply, by kind.",
                &["kind"],
            ),
            upstream_connections: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "nearcache_upstream_connections",
                        "Open upstream connections: pooled (shared) or pinned to one client.",
                    ),
                    &["state"],
                )
                .expect("valid gauge");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            upstream_in_flight: gauge(
                &r,
                "nearcache_upstream_in_flight",
                "Upstream commands sent over pooled connections and not answered yet.",
            ),
            upstream_reconnects: counter(
                &r,
                "nearcache_upstream_reconnects_total",
                "Pooled upstream connections re-established after a loss.",
            ),
            upstream_pinned_refused: counter(
                &r,
                "nearcache_upstream_pinned_refused_total",
                "Commands that would have pinned an upstream connection, refused at --max-pinned.",
            ),
            upstream_link_up: gauge(
                &r,
                "nearcache_upstream_link_up",
                "1 while the upstream is reachable (0 only for an outage: an upstream that \
                 answers yet refuses the credentials is reachable).",
            ),
            upstream_state: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "nearcache_upstream_state",
                        "1 for the upstream's state, 0 for the others: up, unreachable, \
                         auth_required (no credentials in --upstream; clients authenticate \
                         themselves), auth_failed (the --upstream credentials are refused).",
                    ),
                    &["state"],
                )
                .expect("valid gauge");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            invalidation_messages: counter_vec(
                &r,
                "nearcache_invalidation_messages_total",
                "Invalidation messages received (in) and sent (out).",
                &["source", "kind", "direction"],
            ),
            invalidation_gaps: counter(
                &r,
                "nearcache_invalidation_sequence_gaps_total",
                "Bus messages lost: a peer's sequence skipped.",
            ),
            bus_dropped: counter_vec(
                &r,
                "nearcache_bus_dropped_messages_total",
                "Bus messages not acted on, by reason: unauthenticated (no valid MAC under \
                 --bus-key-file), replayed, oversized, malformed.",
                &["reason"],
            ),
            bus_keyed: gauge(
                &r,
                "nearcache_bus_keyed",
                "1 when bus messages are signed and verified (--bus-key-file), 0 when the bus is open.",
            ),
            invalidation_link_up: gauge(
                &r,
                "nearcache_invalidation_link_up",
                "1 while the control connection (tracking and bus) is up or not needed.",
            ),
            l1_flushes: counter_vec(
                &r,
                "nearcache_l1_flushes_total",
                "Whole-L1 flushes, by cause.",
                &["cause"],
            ),
            stale_hits: counter(
                &r,
                "nearcache_stale_hits_detected_total",
                "Audited L1 hits that differed from the upstream with no invalidation to explain it.",
            ),
            clients_connected: gauge(&r, "nearcache_clients_connected", "Client connections open."),
            clients_accepted: counter(
                &r,
                "nearcache_clients_accepted_total",
                "Client connections accepted.",
            ),
            clients_output_bound_waits: counter(
                &r,
                "nearcache_clients_output_bound_waits_total",
                "Times a client's pipeline was paused because the replies owed to it reached the per-client bound.",
            ),
            commands: counter_vec(
                &r,
                "nearcache_commands_total",
                "Commands received, by command (known commands, else other).",
                &["command"],
            ),
            rejected: counter_vec(
                &r,
                "nearcache_clients_rejected_total",
                "Client connections refused (max_clients) or closed for a malformed request (protocol).",
                &["reason"],
            ),
            slow_commands: counter_vec(
                &r,
                "nearcache_slow_commands_total",
                "Upstream calls above --slow-threshold, by their first command.",
                &["command"],
            ),
            n_plus_one: counter(
                &r,
                "nearcache_n_plus_one_total",
                "N+1 read patterns found (once per client, key shape and window).",
            ),
            config_reloads: counter_vec(
                &r,
                "nearcache_config_reloads_total",
                "Configuration reloads on SIGHUP: applied (ok) or refused as invalid (invalid).",
                &["result"],
            ),
            warm_keys: counter(&r, "nearcache_warm_keys_loaded_total", "Keys warming loaded."),
            warm_bytes: counter(
                &r,
                "nearcache_warm_bytes_loaded_total",
                "Key + value bytes warming loaded.",
            ),
            warm_runs: counter(&r, "nearcache_warm_runs_total", "Warmings run."),
            warm_failures: counter(
                &r,
                "nearcache_warm_failures_total",
                "Warmings that gave up.",
            ),
            warm_running: gauge(&r, "nearcache_warm_running", "1 while a warming runs."),
            namespaces: NamespaceFigures::new(&r),
        };
        Exporter {
            registry: r,
            figures,
            render: Mutex::new(()),
        }
    }

    /// The Prometheus text format of every metric, refreshed now.
    pub fn render(&self, shared: &Services) -> String {
        let _one = self.render.lock();
        self.refresh(shared);
        let mut out = Vec::new();
        let encoded = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        if encoded.is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn refresh(&self, shared: &Services) {
        let f = &self.figures;
        let stats = &shared.stats;
        let l1 = &shared.l1;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let (l2_hits, l2_misses) = l1.l2_counts();
        set(&f.cache_hits.with_label_values(&["l1"]), n(&stats.l1_hits));
        set(&f.cache_hits.with_label_values(&["l2"]), l2_hits);
        set(
            &f.cache_misses.with_label_values(&["l1"]),
            n(&stats.l1_misses),
        );
        set(&f.cache_misses.with_label_values(&["l2"]), l2_misses);
        f.l1_entries.set(l1.entry_count() as i64);
        f.l1_used_bytes.set(l1.used_bytes() as i64);
        f.l1_max_bytes.set(l1.max_bytes() as i64);
        f.l1_compressed.set(l1.compressed_entries() as i64);
        let ev = l1.evictions_by_reason();
        for (reason, value) in [
            ("size", ev.size),
            ("expired", ev.expired),
            ("written", ev.written),
            ("invalidated", ev.invalidated),
            ("flushed", ev.flushed),
        ] {
            set(&f.l1_evictions.with_label_values(&[reason]), value);
        }
        let timeouts = n(&stats.upstream_timeouts);
        let unavailable = n(&stats.upstream_errors).saturating_sub(timeouts);
        set(
            &f.upstream_errors.with_label_values(&["unavailable"]),
            unavailable,
        );
        set(&f.upstream_errors.with_label_values(&["timeout"]), timeouts);
        let pinned = n(&stats.upstream_pinned);
        let pooled = shared.upstream.connections() as u64;
        f.upstream_connections
            .with_label_values(&["pooled"])
            .set(pooled as i64);
        f.upstream_connections
            .with_label_values(&["pinned"])
            .set(pinned as i64);
        f.upstream_in_flight
            .set(stats.upstream_in_flight.load(Relaxed).max(0));
        set(&f.upstream_reconnects, shared.upstream.reconnects());
        set(&f.upstream_pinned_refused, n(&stats.pinned_refused));
        f.upstream_link_up.set(i64::from(shared.upstream.link_up()));
        for (name, current) in shared.upstream.state().names_marked() {
            f.upstream_state
                .with_label_values(&[name])
                .set(i64::from(current));
        }
        let tracking = &shared.control;
        let tc = &tracking.counters;
        let bc = &tracking.bus.counters;
        for (labels, value) in [
            (["tracking", "key", "in"], n(&tc.messages)),
            (["bus", "key", "in"], n(&bc.received_keys)),
            (["bus", "pattern", "in"], n(&bc.received_patterns)),
            (["bus", "flush", "in"], n(&bc.received_flushes)),
            (["bus", "key", "out"], n(&bc.sent_keys)),
            (["bus", "pattern", "out"], n(&bc.sent_patterns)),
            (["bus", "flush", "out"], n(&bc.sent_flushes)),
        ] {
            set(&f.invalidation_messages.with_label_values(&labels), value);
        }
        set(&f.invalidation_gaps, n(&bc.sequence_gaps));
        for (reason, value) in [
            ("unauthenticated", n(&bc.unauthenticated)),
            ("replayed", n(&bc.replayed)),
            ("oversized", n(&bc.oversized)),
            ("malformed", n(&bc.malformed)),
        ] {
            set(&f.bus_dropped.with_label_values(&[reason]), value);
        }
        f.bus_keyed.set(i64::from(tracking.bus.keyed()));
        f.invalidation_link_up.set(i64::from(tracking.serving()));
        for (cause, value) in [
            ("link_lost", n(&tc.loss_flushes)),
            ("upstream_flush", n(&tc.upstream_flushes)),
            ("bus", n(&bc.flushes)),
        ] {
            set(&f.l1_flushes.with_label_values(&[cause]), value);
        }
        set(&f.stale_hits, n(&stats.stale_hits_detected));
        f.clients_connected.set(n(&stats.connected_clients) as i64);
        set(&f.clients_accepted, n(&stats.total_connections));
        set(&f.clients_output_bound_waits, n(&stats.output_bound_waits));
        for i in 0..=KNOWN.len() {
            let mut total = stats.commands.total(i);
            if commands::label(i) == "get" {
                total += n(&stats.hot_path_gets);
            }
            if total > 0 {
                set(&f.commands.with_label_values(&[commands::label(i)]), total);
            }
        }
        set(
            &f.rejected.with_label_values(&["max_clients"]),
            n(&stats.rejected_max_clients),
        );
        set(
            &f.rejected.with_label_values(&["protocol"]),
            n(&stats.rejected_protocol),
        );
        let profiler = &shared.profiler;
        let mut slow = std::collections::BTreeMap::new();
        for (name, calls) in profiler.slow_by_command() {
            *slow
                .entry(commands::label(commands::index(name.as_bytes())))
                .or_insert(0) += calls;
        }
        for (label, calls) in slow {
            set(&f.slow_commands.with_label_values(&[label]), calls);
        }
        set(&f.n_plus_one, profiler.n_plus_one());
        for (result, value) in [
            ("ok", n(&stats.config_reloads)),
            ("invalid", n(&stats.config_reload_failures)),
        ] {
            set(&f.config_reloads.with_label_values(&[result]), value);
        }
        let warm = &shared.warm;
        let p = &warm.progress;
        set(&f.warm_keys, n(&p.keys_loaded));
        set(&f.warm_bytes, n(&p.bytes_loaded));
        set(&f.warm_runs, n(&p.runs));
        set(&f.warm_failures, n(&p.failures));
        let running = warm.state() == crate::warm::State::Running;
        f.warm_running.set(i64::from(running));
        f.namespaces.refresh(l1.namespaces());
    }
}
