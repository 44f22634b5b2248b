//! Redis Cluster topology, the ground the cluster router will stand on: key slots
//! ([`slot`]), a node's view of the cluster as a [`SlotMap`] (from `CLUSTER SHARDS`, or
//! `CLUSTER SLOTS` where that is refused), discovery from seeds with a second node's
//! agreement before slots are taken away ([`Discovery`]), and the [`Topology`] holder with
//! its epoch and rate-limited refresh.
//!
//! Nothing routes by it yet: no request path uses this module, and no upstream URL starts
//! a cluster. Routing, per-node control connections and slot epochs come next.

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
