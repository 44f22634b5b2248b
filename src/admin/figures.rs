//! [`Figures`]: one snapshot of every subsystem's figures, taken when INFO is asked for or
//! `/metrics` is scraped. Each subsystem exposes its own (`figures()`); the views
//! ([`super::info`], [`super::exposition`]) render from this one value, never from the
//! subsystems directly, so a figure added to a subsystem's snapshot is one line per view.

use crate::audit::AuditFigures;
use crate::cache::L1Figures;
use crate::control::ControlFigures;
use crate::metrics::StatsFigures;
use crate::profiler::ProfilerFigures;
use crate::services::Services;
use crate::upstream::cluster::TopologyFigures;
use crate::upstream::sentinel::SentinelFigures;
use crate::upstream::UpstreamFigures;
use crate::warm::WarmFigures;

/// Every subsystem's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The process-wide counters (clients, commands, upstream calls, reloads).
    pub stats: StatsFigures,
    /// L1: size, evictions, namespaces.
    pub l1: L1Figures,
    /// The upstream's state and connections.
    pub upstream: UpstreamFigures,
    /// Sentinel discovery (a `redis+sentinel://` upstream only).
    pub sentinel: Option<SentinelFigures>,
    /// Redis Cluster (a `redis+cluster://` upstream only).
    pub cluster: Option<ClusterFigures>,
    /// The control connection, tracking and the bus.
    pub control: ControlFigures,
    /// Warming.
    pub warm: WarmFigures,
    /// The staleness audit.
    pub audit: AuditFigures,
    /// The slow log, N+1 reads, hot keys.
    pub profiler: ProfilerFigures,
}

/// A Redis Cluster upstream's figures: its topology, and each primary's upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFigures {
    /// The slot map: epoch, refreshes, slots moved.
    pub topology: TopologyFigures,
    /// One per primary the sidecar routes to (its address, link, calls and latency).
    pub nodes: Vec<UpstreamFigures>,
}

impl Figures {
    /// The figures of `services` now. Reading L1's locks each of its shards in turn: call
    /// it off the async threads where it may wait (`/metrics` does).
    pub fn take(services: &Services) -> Figures {
        Figures {
            stats: services.stats.figures(),
            l1: services.l1.figures(),
            upstream: services.upstream.figures(),
            sentinel: services.sentinel.as_ref().map(|s| s.figures()),
            cluster: services.cluster.as_ref().map(|nodes| ClusterFigures {
                topology: nodes.figures(),
                nodes: nodes.nodes().iter().map(|n| n.upstream.figures()).collect(),
            }),
            control: services.control.figures(),
            warm: services.warm.figures(),
            audit: services.audit.figures(),
            profiler: services.profiler.figures(),
        }
    }

    /// Why the sidecar is not ready, if it is not (see [`super::readiness`]).
    pub fn not_ready(&self) -> Option<&'static str> {
        super::readiness::verdict(
            self.sentinel.as_ref().is_none_or(|s| s.primary.is_some()),
            self.upstream.state,
            self.control.serving,
            self.control.awaiting_credentials,
            self.warm.holds_ready,
        )
    }
}
