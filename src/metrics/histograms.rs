//! The latency histograms every layer observes (the `prometheus` crate's own, atomic
//! buckets): one child per label value, resolved once and indexed by command number on the
//! request path. The admin plane registers their collectors for `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec};

use super::commands;

/// Round-trip buckets, seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A histogram with one child per command label, observed by index; a child is resolved
/// at its first observation (so commands never seen add no series).
pub struct Histograms {
    vec: HistogramVec,
    children: Vec<OnceLock<Histogram>>,
}

impl Histograms {
    /// `nearcache_upstream_request_duration_seconds` with `n` command children.
    pub fn new(n: usize) -> Histograms {
        let opts = HistogramOpts::new(
            "nearcache_upstream_request_duration_seconds",
            "Round trip of one upstream call, by its first command.",
        )
        .buckets(LATENCY_BUCKETS.to_vec());
        let vec = HistogramVec::new(opts, &["command"]).expect("valid histogram");
        let children = (0..n).map(|_| OnceLock::new()).collect();
        Histograms { vec, children }
    }

    /// Records one round trip of the call whose first command has index `i`.
    #[inline]
    pub fn observe(&self, i: usize, latency: Duration) {
        if let Some(child) = self.children.get(i) {
            child
                .get_or_init(|| self.vec.with_label_values(&[commands::label(i)]))
                .observe(latency.as_secs_f64());
        }
    }

    /// The collector `/metrics` registers.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.vec.clone())
    }
}

/// A single histogram with a name and buckets of its own, registered by the exporter.
pub struct LagHistogram(Histogram);

impl Default for LagHistogram {
    /// `nearcache_invalidation_lag_seconds`: 100 µs to 10 s.
    fn default() -> Self {
        let opts = HistogramOpts::new(
            "nearcache_invalidation_lag_seconds",
            "Age of a bus invalidation on arrival (sender's clock to ours).",
        )
        .buckets(LATENCY_BUCKETS[1..].to_vec());
        LagHistogram(Histogram::with_opts(opts).expect("valid histogram"))
    }
}

impl LagHistogram {
    /// Records one message's lag.
    pub fn observe(&self, lag: Duration) {
        self.0.observe(lag.as_secs_f64());
    }

    /// The collector `/metrics` registers.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.0.clone())
    }
}

/// L1 lookup time, sampled on the hit path (`nearcache_cache_lookup_duration_seconds`).
pub struct LookupHistogram(Histogram);

impl Default for LookupHistogram {
    /// 100 ns to 1 ms.
    fn default() -> Self {
        let opts = HistogramOpts::new(
            "nearcache_cache_lookup_duration_seconds",
            "L1 lookup time, sampled (one lookup in 64).",
        )
        .buckets(vec![
            1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3,
        ]);
        LookupHistogram(Histogram::with_opts(opts).expect("valid histogram"))
    }
}

impl LookupHistogram {
    /// Records one lookup.
    #[cold]
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }

    /// The collector `/metrics` registers.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.0.clone())
    }
}
