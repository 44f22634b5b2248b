//! The `nearcache_cluster_*` families of a `redis+cluster://` upstream: the topology (nodes,
//! epoch, refreshes by reason, slots moved), the redirects followed by kind, and each
//! primary's calls and latency under a `node` label (bounded by the cluster's primaries).

use super::Families;
use crate::admin::figures::ClusterFigures;
use crate::admin::info::REDIRECTS;
use crate::upstream::cluster::Reason;

/// The cluster's families, given the redirects followed by kind.
pub(super) fn families(c: &ClusterFigures, redirects: &[u64; 3], out: &mut Families) {
    let t = &c.topology;
    out.gauges(
        "nearcache_cluster_nodes",
        "Nodes in the slot map (known), and primaries the sidecar routes to.",
        ["role"],
        [(["known"], t.nodes), (["primary"], c.nodes.len() as u64)],
    );
    out.gauge(
        "nearcache_cluster_slots_assigned",
        "Slots with an owner in the slot map.",
        t.slots_assigned,
    );
    out.gauge(
        "nearcache_cluster_topology_epoch",
        "The slot map's epoch, bumped by each change the sidecar takes.",
        t.epoch,
    );
    out.counters(
        "nearcache_cluster_refresh_requests_total",
        "Topology refreshes asked for, by reason (rate-limited: several may share one).",
        ["reason"],
        Reason::ALL
            .iter()
            .zip(t.requested)
            .map(|(r, n)| ([r.name()], n)),
    );
    out.counters(
        "nearcache_cluster_refreshes_total",
        "Topology refreshes run, by result: ok, failed (no answer or no agreement), \
         disputed (a view dropping slots refused).",
        ["result"],
        [
            (["ok"], t.refreshes.saturating_sub(t.failed)),
            (["failed"], t.failed),
            (["disputed"], t.disputed),
        ],
    );
    out.counter(
        "nearcache_cluster_slots_moved_total",
        "Slot owner changes taken from refreshes.",
        t.slots_moved,
    );
    out.counters(
        "nearcache_cluster_redirects_total",
        "Redirects followed inside the sidecar, by kind: moved, ask, tryagain (retries).",
        ["kind"],
        REDIRECTS.iter().zip(redirects).map(|(k, &n)| ([*k], n)),
    );
    out.counters(
        "nearcache_cluster_node_requests_total",
        "Upstream calls answered, by primary.",
        ["node"],
        c.nodes.iter().map(|n| ([n.address.as_str()], n.requests)),
    );
    out.counters(
        "nearcache_cluster_node_latency_microseconds_total",
        "Sum of the upstream calls' latencies, by primary (divide by requests for the mean).",
        ["node"],
        c.nodes.iter().map(|n| ([n.address.as_str()], n.latency_us)),
    );
    out.gauges(
        "nearcache_cluster_node_link_up",
        "1 while the primary is reachable, by primary.",
        ["node"],
        c.nodes
            .iter()
            .map(|n| ([n.address.as_str()], u64::from(n.link_up))),
    );
}
