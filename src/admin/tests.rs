//! The views rendered from hand-made snapshots: no server, no upstream.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::Registry;

use super::exposition::{encode, FiguresCollector};
use super::figures::Figures;
use super::info;
use crate::cache::namespaces::Row;
use crate::cache::Policy;
use crate::metrics::{Histograms, LagHistogram, LookupHistogram};
use crate::upstream::tls::{TlsFigures, TlsVerify};
use crate::upstream::UpstreamState;

fn snapshot() -> Figures {
    let mut f = Figures::default();
    f.stats.l1_hits = 30;
    f.stats.l1_misses = 10;
    f.stats.upstream_errors = 5;
    f.stats.upstream_timeouts = 2;
    f.stats.commands = vec![("get", 40), ("set", 0), ("other", 2)];
    f.l1.l2_hits = 7;
    f.l1.entries = 12;
    f.l1.evictions.written = 3;
    f.upstream.address = "10.0.0.9:6379".into();
    f.upstream.state = UpstreamState::AuthFailed;
    f.upstream.tls = Some(TlsFigures {
        verify: TlsVerify::CaFile,
        client_cert: true,
        reloads: 2,
        reload_failures: 1,
        handshake_failures: 3,
        cert_expiry_secs: Some(-5),
    });
    f.control.link_needed = true;
    f.control.link_up = true;
    f.control.serving = true;
    f.control.messages = 9;
    f.control.bus.active = true;
    f.control.bus.subscribed = true;
    f.control.bus.channel = "nearcache:invalidate".into();
    f.warm.state = crate::warm::State::Running;
    f.warm.keys_loaded = 5;
    f.audit.stale_hits = 1;
    f.profiler.slow_by_command = vec![("GET".into(), 2), ("NOSUCH".into(), 1)];
    f
}

fn with_namespaces(mut f: Figures) -> Figures {
    let policy = Policy {
        cache: true,
        ttl: Duration::from_secs(60),
        cache_nil: false,
        compress_min_bytes: 1024,
        max_bytes: None,
    };
    f.l1.namespaces = vec![Row {
        name: "session".into(),
        pattern: "session:*".into(),
        policy,
        entries: 4,
        bytes: 700,
        hits: 11,
        misses: 2,
    }];
    f
}

fn exposition(f: Figures) -> String {
    let r = Registry::new();
    r.register(Box::new(FiguresCollector::new(move || f.clone())))
        .unwrap();
    encode(&r)
}

#[test]
fn info_sections_render_the_snapshot() {
    let text = info::render(&with_namespaces(snapshot()));
    for line in [
        "# Nearcache\r\n",
        "upstream_address:10.0.0.9:6379\r\n",
        "upstream_state:auth_failed\r\n",
        "ready:0\r\n", // the upstream refuses the credentials
        "total_commands_processed:42\r\n",
        "\r\n\r\n# Nearcache_L1\r\n",
        "l1_hits:30\r\n",
        "l1_hit_rate:0.7500\r\n",
        "l2_hits:7\r\n",
        "l1_evicted_written:3\r\n",
        "stale_hits_detected:1\r\n",
        "warm_state:running\r\n",
        "warm_keys_loaded:5\r\n",
        "namespace_session:entries=4,bytes=700,hits=11,misses=2,cache=1\r\n",
        "upstream_errors:5\r\n",
        "invalidation_link:up\r\n",
        "bus:subscribed\r\n",
        "bus_channel:nearcache:invalidate\r\n",
        "invalidation_messages:9\r\n",
        "upstream_tls:yes\r\n",
        "upstream_tls_verify:ca_file\r\n",
        "upstream_tls_client_cert:yes\r\n",
        "upstream_tls_reloads:2\r\n",
        "upstream_tls_reload_failures:1\r\n",
        "upstream_tls_handshake_failures:3\r\n",
        "upstream_tls_cert_expiry_seconds:-5\r\n",
        "# Nearcache_Profiler\r\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(text.ends_with("\r\n") && !text.ends_with("\r\n\r\n"));
    let (_, l1) = info::SECTIONS[1];
    assert!(l1(&snapshot()).starts_with("# Nearcache_L1\r\n"));
    assert!(!l1(&snapshot()).contains("namespace_"), "none configured");
}

#[test]
fn exposition_renders_the_snapshot() {
    let text = exposition(snapshot());
    for sample in [
        "# TYPE nearcache_cache_hits_total counter\n",
        "nearcache_cache_hits_total{layer=\"l1\"} 30\n",
        "nearcache_cache_hits_total{layer=\"l2\"} 7\n",
        "nearcache_l1_entries 12\n",
        "nearcache_l1_evictions_total{reason=\"written\"} 3\n",
        "nearcache_upstream_errors_total{kind=\"unavailable\"} 3\n",
        "nearcache_upstream_errors_total{kind=\"timeout\"} 2\n",
        "nearcache_upstream_state{state=\"auth_failed\"} 1\n",
        "nearcache_upstream_state{state=\"up\"} 0\n",
        // Label pairs in name order, as the crate's own vectors write them.
        "nearcache_invalidation_messages_total{direction=\"in\",kind=\"key\",source=\"tracking\"} 9\n",
        "nearcache_commands_total{command=\"get\"} 40\n",
        "nearcache_commands_total{command=\"other\"} 2\n",
        "nearcache_slow_commands_total{command=\"get\"} 2\n",
        "nearcache_slow_commands_total{command=\"other\"} 1\n",
        "nearcache_stale_hits_detected_total 1\n",
        "# TYPE nearcache_warm_running gauge\n",
        "nearcache_warm_running 1\n",
        "nearcache_upstream_tls 1\n",
        "nearcache_upstream_tls_verify{mode=\"ca_file\"} 1\n",
        "nearcache_upstream_tls_verify{mode=\"insecure\"} 0\n",
        "nearcache_upstream_tls_client_cert 1\n",
        "nearcache_upstream_tls_reloads_total{result=\"ok\"} 2\n",
        "nearcache_upstream_tls_reloads_total{result=\"failed\"} 1\n",
        "nearcache_upstream_tls_handshake_failures_total 3\n",
        "nearcache_upstream_tls_cert_expiry_seconds -5\n",
    ] {
        assert!(text.contains(sample), "{sample:?} not in\n{text}");
    }
    assert!(
        !text.contains("command=\"set\""),
        "a command never seen has no series"
    );
    assert!(
        !text.contains("nearcache_namespace_"),
        "no namespace configured"
    );
    let text = exposition(with_namespaces(snapshot()));
    assert!(text.contains("nearcache_namespace_hits_total{cache_namespace=\"session\"} 11\n"));
    assert!(text.contains("nearcache_namespace_bytes{cache_namespace=\"session\"} 700\n"));
}

#[test]
fn every_nearcache_family_is_a_counter_gauge_or_histogram_with_help() {
    let r = Registry::new();
    let figures = FiguresCollector::new(|| with_namespaces(snapshot()));
    let declared: BTreeSet<String> = figures.desc().iter().map(|d| d.fq_name.clone()).collect();
    r.register(Box::new(figures)).unwrap();
    let upstream = Histograms::new(crate::metrics::commands::KNOWN.len() + 1);
    upstream.observe(0, Duration::from_millis(1));
    let lag = LagHistogram::default();
    lag.observe(Duration::from_millis(1));
    let lookup = LookupHistogram::default();
    lookup.observe(Duration::from_micros(1));
    for c in [upstream.collector(), lag.collector(), lookup.collector()] {
        r.register(c).unwrap();
    }
    let mut gathered = BTreeSet::new();
    for family in r.gather() {
        let name = family.name();
        assert!(name.starts_with("nearcache_"), "{name}");
        assert!(!family.help().is_empty(), "{name} has no HELP");
        match family.get_field_type() {
            MetricType::COUNTER => assert!(name.ends_with("_total"), "{name}"),
            MetricType::GAUGE | MetricType::HISTOGRAM => {}
            other => panic!("{name} is a {other:?}"),
        }
        gathered.insert(name.to_owned());
    }
    // Every declared family shows with a full snapshot, and nothing undeclared does.
    let histograms = [
        "nearcache_cache_lookup_duration_seconds",
        "nearcache_invalidation_lag_seconds",
        "nearcache_upstream_request_duration_seconds",
    ];
    let mut expected = declared;
    expected.extend(histograms.map(String::from));
    assert_eq!(gathered, expected);
    assert!(gathered.len() > 40, "{}", gathered.len());
}

#[test]
fn a_sentinel_upstream_shows_its_figures_and_is_not_ready_without_a_primary() {
    let mut f = snapshot();
    f.upstream.state = UpstreamState::Up;
    f.sentinel = Some(crate::upstream::sentinel::SentinelFigures {
        master: "mymaster".into(),
        primary: None,
        failovers: 0,
        seconds_since_switch: None,
        known: 3,
        reachable: 2,
    });
    assert_eq!(f.not_ready(), Some("no primary known"));
    let text = info::render(&f);
    for line in [
        "sentinel_master:mymaster\r\n",
        "sentinel_primary:(none)\r\n",
        "sentinel_seconds_since_switch:-1\r\n",
        "sentinel_known:3\r\n",
        "sentinel_reachable:2\r\n",
        "ready:0\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let sentinel = f.sentinel.as_mut().unwrap();
    sentinel.primary = Some("10.0.0.2:6379".into());
    sentinel.failovers = 2;
    sentinel.seconds_since_switch = Some(7);
    assert_eq!(f.not_ready(), None);
    let metrics = exposition(f);
    for line in [
        "nearcache_sentinel_primary_known 1\n",
        "nearcache_sentinel_failovers_total 2\n",
        "nearcache_sentinel_seconds_since_switch 7\n",
        "nearcache_sentinel_sentinels{state=\"known\"} 3\n",
        "nearcache_sentinel_sentinels{state=\"reachable\"} 2\n",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
    // A fixed upstream has no sentinel lines.
    assert!(!info::render(&snapshot()).contains("sentinel_"));
}
