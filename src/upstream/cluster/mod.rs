//! Redis Cluster topology, the ground the cluster router stands on: key slots
//! ([`slot`]), a node's view of the cluster as a [`SlotMap`] (from `CLUSTER SHARDS`, or
//! `CLUSTER SLOTS` where that is refused), discovery from seeds with a second node's
//! agreement before slots are taken away ([`Discovery`]), and the [`Topology`] holder with
//! its epoch and rate-limited refresh.
//!
//! `crate::nodes` keeps one node per primary of the topology and routes requests by slot
//! through it (a `redis+cluster://` upstream); slot epochs and node leases are L1's fences
//! (`crate::cache::fences`).

mod discover;
mod map;
mod parse;
mod slot;
mod topology;

pub use discover::{ClusterOptions, Discovery, DiscoveryError, Found};
pub use map::{Node, Role, SlotMap};
pub use parse::{from_shards, from_slots};
pub use slot::{slot, SLOTS};
pub use topology::{Reason, Refreshed, Topology, TopologyFigures, MIN_REFRESH_INTERVAL};
