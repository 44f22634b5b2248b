//! The Prometheus exposition (`/metrics`): a [`Collector`] that builds every counter and
//! gauge family from one [`Figures`] snapshot taken at scrape time (nothing is kept between
//! scrapes, so nothing is reset or locked), beside the latency histograms' own collectors.
//! The families are listed once, in `families.rs`: their descriptors are what it declares
//! for an empty snapshot.

use std::collections::HashMap;
use std::sync::Arc;

mod cluster;
mod families;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use super::figures::Figures;
use crate::services::Services;
use families::families;

/// Everything `/metrics` shows; [`Exporter::render`] gathers and encodes it.
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// Registers the figures' collector over `shared`, its histograms and the process
    /// collector.
    pub fn new(shared: Arc<Services>) -> Exporter {
        let r = Registry::new();
        let histograms = [
            shared.stats.upstream_latency.collector(),
            shared.control.bus.counters.lag.collector(),
            shared.stats.lookup_latency.collector(),
        ];
        for c in histograms {
            r.register(c).expect("registered once");
        }
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
        let figures = FiguresCollector::new(move || Figures::take(&shared));
        r.register(Box::new(figures)).expect("registered once");
        Exporter { registry: r }
    }

    /// The Prometheus text format of every metric, now.
    pub fn render(&self) -> String {
        encode(&self.registry)
    }
}

/// The text format of what `registry` gathers now (empty if it cannot be encoded).
pub fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    if TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The counter and gauge families of a snapshot taken by `source` at each collection.
pub struct FiguresCollector {
    descs: Vec<Desc>,
    source: Box<dyn Fn() -> Figures + Send + Sync>,
}

impl FiguresCollector {
    /// A collector of the snapshots `source` takes.
    pub fn new(source: impl Fn() -> Figures + Send + Sync + 'static) -> FiguresCollector {
        let mut declared = Families::default();
        families(&Figures::default(), &mut declared);
        let descs = declared
            .0
            .iter()
            .map(|(family, labels)| {
                let (name, help) = (family.name().to_owned(), family.help().to_owned());
                Desc::new(name, help, labels.clone(), HashMap::new()).expect("valid family")
            })
            .collect();
        FiguresCollector {
            descs,
            source: Box::new(source),
        }
    }
}

impl Collector for FiguresCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Families::default();
        families(&(self.source)(), &mut out);
        out.0.into_iter().map(|(family, _)| family).collect()
    }
}

/// The families being built, each with its label names.
#[derive(Default)]
pub(super) struct Families(Vec<(MetricFamily, Vec<String>)>);

impl Families {
    /// A family of `kind` with one sample per row (label values, value); a family with no
    /// row is left out of the scrape.
    fn family<'a, const N: usize>(
        &mut self,
        kind: MetricType,
        name: &str,
        help: &str,
        labels: [&str; N],
        rows: impl IntoIterator<Item = ([&'a str; N], f64)>,
    ) {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        for (values, value) in rows {
            let mut pairs: Vec<LabelPair> = labels
                .iter()
                .zip(values)
                .map(|(label, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*label).to_owned());
                    pair.set_value(value.to_owned());
                    pair
                })
                .collect();
            pairs.sort_by(|a, b| a.name().cmp(b.name()));
            let mut metric = Metric::from_label(pairs);
            if kind == MetricType::COUNTER {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            } else {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
            family.mut_metric().push(metric);
        }
        let labels = labels.iter().map(|l| (*l).to_owned()).collect();
        self.0.push((family, labels));
    }

    /// A counter without labels.
    pub(super) fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counters(name, help, [], [([], value)]);
    }

    /// A counter with labels, one sample per row.
    pub(super) fn counters<'a, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        labels: [&str; N],
        rows: impl IntoIterator<Item = ([&'a str; N], u64)>,
    ) {
        let rows = rows.into_iter().map(|(l, v)| (l, v as f64));
        self.family(MetricType::COUNTER, name, help, labels, rows);
    }

    /// A gauge without labels.
    pub(super) fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.gauges(name, help, [], [([], value)]);
    }

    /// A gauge without labels whose value may be negative; no sample for `None`.
    pub(super) fn signed_gauge(&mut self, name: &str, help: &str, value: Option<i64>) {
        let rows = value.map(|v| ([], v as f64));
        self.family(MetricType::GAUGE, name, help, [], rows);
    }

    /// A gauge with labels, one sample per row.
    pub(super) fn gauges<'a, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        labels: [&str; N],
        rows: impl IntoIterator<Item = ([&'a str; N], u64)>,
    ) {
        let rows = rows.into_iter().map(|(l, v)| (l, v as f64));
        self.family(MetricType::GAUGE, name, help, labels, rows);
    }
}
