//! The per-namespace metrics: reads, entries and bytes by `cache_namespace` label (not
//! `namespace`: Prometheus attaches that one to every series scraped from a Kubernetes pod,
//! and the two would collide). The label is
//! bounded: at most `MAX_NAMESPACES` configured names plus `default`.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::cache::Namespaces;

/// The label naming a key namespace.
const LABEL: &str = "cache_namespace";

/// The families, refreshed from the namespaces' figures at scrape time.
pub struct NamespaceFigures {
    hits: IntCounterVec,
    misses: IntCounterVec,
    entries: IntGaugeVec,
    bytes: IntGaugeVec,
}

impl NamespaceFigures {
    /// Registers the families in `r`.
    pub fn new(r: &Registry) -> NamespaceFigures {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[LABEL]).expect("valid");
            r.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &[LABEL]).expect("valid");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        NamespaceFigures {
            hits: counter(
                "nearcache_namespace_hits_total",
                "GET/MGET keys of the namespace answered by L1.",
            ),
            misses: counter(
                "nearcache_namespace_misses_total",
                "GET/MGET keys of the namespace L1 did not answer (every read of a namespace \
                 with cache = false).",
            ),
            entries: gauge(
                "nearcache_namespace_entries",
                "L1 entries of the namespace.",
            ),
            bytes: gauge(
                "nearcache_namespace_bytes",
                "Weight of the namespace's L1 entries, as counted against --l1-max-bytes.",
            ),
        }
    }

    /// Sets every family from `namespaces` (nothing when none is configured).
    pub fn refresh(&self, namespaces: &Namespaces) {
        if namespaces.is_empty() {
            return;
        }
        for row in namespaces.rows() {
            let label = [row.name.as_str()];
            let hits = self.hits.with_label_values(&label);
            hits.reset();
            hits.inc_by(row.hits);
            let misses = self.misses.with_label_values(&label);
            misses.reset();
            misses.inc_by(row.misses);
            self.entries
                .with_label_values(&label)
                .set(row.entries as i64);
            self.bytes.with_label_values(&label).set(row.bytes as i64);
        }
    }
}
