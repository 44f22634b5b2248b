//! The nodes of a Redis Cluster upstream: one [`Upstream`] (pools to the node) and one
//! [`Control`] (its control connection, the redirect target of the tracking of the node's
//! own data connections) per primary of the current [`Topology`], and which of them owns
//! each slot. Nodes are added and dropped as the topology changes: a periodic refresh
//! ([`Nodes::run`]) and the refreshes asked for by redirects ([`Nodes::refresh`]). A slot
//! whose owner changes has its L1 epoch bumped (see [`crate::cache::fences`]): what L1
//! holds of it is not served again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::cache::{SlotCause, L1};
use crate::control::Control;
use crate::upstream::cluster::{Reason, Refreshed, Role, Topology, TopologyFigures, SLOTS};
use crate::upstream::{Pool, Route, Upstream};

/// How often the topology is asked again when nothing else asks.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Owner index of a slot no node serves.
const NONE: u16 = u16::MAX;

/// One primary: its pools and its control connection; the control task ends when the
/// node is dropped from the set (the handle's last reference goes).
pub struct Node {
    /// `host:port` as the topology names it.
    pub address: String,
    /// The node's pools.
    pub upstream: Arc<Upstream>,
    /// The node's control connection state (tracking, the bus, whether L1 may serve).
    pub control: Arc<Control>,
    /// Cancelled when the node is dropped: stops its control connection.
    pub stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Builds a node for an address (its control task started, stopped by its token).
pub type NodeFactory = Box<dyn Fn(&str) -> Node + Send + Sync>;

/// The nodes at one moment and each slot's owner among them.
struct Set {
    nodes: Vec<Arc<Node>>,
    owners: Box<[u16]>,
}

/// The cluster's primaries as nodes, kept in step with the topology.
pub struct Nodes {
    topology: Arc<Topology>,
    factory: NodeFactory,
    set: RwLock<Arc<Set>>,
    /// The L1 whose slot epochs follow the owners.
    l1: Arc<L1>,
    /// Whether some node's link is up, kept by [`Nodes::links_changed`]: read on every L1
    /// hit, so without the set's lock.
    reachable: AtomicBool,
    /// Held while [`Nodes::links_changed`] looks at the links and stores what it saw, so
    /// a look taken before a link came up never overwrites one taken after.
    looking: Mutex<()>,
}

impl Nodes {
    /// No nodes until the first [`Nodes::refresh`]; `l1`'s slot epochs are bumped as
    /// slots change owner.
    pub fn new(topology: Arc<Topology>, factory: NodeFactory, l1: Arc<L1>) -> Arc<Nodes> {
        Arc::new(Nodes {
            topology,
            factory,
            l1,
            reachable: AtomicBool::new(false),
            looking: Mutex::new(()),
            set: RwLock::new(Arc::new(Set {
                nodes: Vec::new(),
                owners: vec![NONE; SLOTS].into_boxed_slice(),
            })),
        })
    }

    /// The topology the nodes follow.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// Refreshes the topology for `reason` (rate-limited, see [`Topology::refresh`]) and
    /// brings the nodes in step with it.
    pub async fn refresh(&self, reason: Reason) -> Refreshed {
        let refreshed = self.topology.refresh(reason).await;
        if matches!(refreshed, Refreshed::Changed { .. }) || self.set.read().nodes.is_empty() {
            self.sync();
        }
        self.links_changed();
        refreshed
    }

    /// Refreshes every [`REFRESH_EVERY`] until shutdown.
    pub async fn run(self: Arc<Self>) {
        let stopping = crate::lifecycle::stopping();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = stopping.cancelled() => return,
            }
            self.refresh(Reason::Periodic).await;
        }
    }

    /// One node per primary of the current map: the ones kept are reused, new ones built,
    /// the others dropped (their control connections end). Slots that had an owner and
    /// now have another (or none) are bumped.
    fn sync(&self) {
        let map = self.topology.map();
        let old = self.set.read().clone();
        let mut by_address: HashMap<&str, &Arc<Node>> =
            old.nodes.iter().map(|n| (n.address.as_str(), n)).collect();
        let mut nodes = Vec::new();
        let mut index: HashMap<&str, u16> = HashMap::new();
        for node in map.nodes().iter().filter(|n| n.role == Role::Primary) {
            if index.contains_key(node.address.as_str()) {
                continue;
            }
            let kept = by_address.remove(node.address.as_str()).cloned();
            let node_handle = kept.unwrap_or_else(|| {
                tracing::info!(node = %node.address, "cluster node added");
                Arc::new((self.factory)(&node.address))
            });
            index.insert(node.address.as_str(), nodes.len() as u16);
            nodes.push(node_handle);
        }
        for gone in by_address.keys() {
            tracing::info!(node = %gone, "cluster node dropped");
        }
        let owners = (0..SLOTS as u16)
            .map(|slot| {
                map.owner_address(slot)
                    .and_then(|a| index.get(a).copied())
                    .unwrap_or(NONE)
            })
            .collect();
        let set = Set { nodes, owners };
        self.l1.bump_slots(moved(&old, &set), SlotCause::Moved);
        *self.set.write() = Arc::new(set);
        self.links_changed();
    }

    /// The slots `address` owns now (none when it is not a primary of the map).
    pub fn slots_of(&self, address: &str) -> Vec<u16> {
        let set = self.set.read();
        let Some(i) = set.nodes.iter().position(|n| n.address == address) else {
            return Vec::new();
        };
        (0..SLOTS as u16)
            .filter(|&s| usize::from(set.owners[usize::from(s)]) == i)
            .collect()
    }

    /// The node that owns `slot`, if any does.
    pub fn owner(&self, slot: u16) -> Option<Arc<Node>> {
        let set = self.set.read();
        let i = *set.owners.get(usize::from(slot))?;
        set.nodes.get(usize::from(i)).cloned()
    }

    /// The node at `address` (`host:port` as the topology names it), if it is one.
    pub fn at(&self, address: &str) -> Option<Arc<Node>> {
        let set = self.set.read();
        set.nodes.iter().find(|n| n.address == address).cloned()
    }

    /// The index of `slot`'s owner in the current set (`usize::MAX` for none): tells
    /// nodes apart, not stable across changes.
    pub fn node_of(&self, slot: u16) -> usize {
        let set = self.set.read();
        match set.owners.get(usize::from(slot)) {
            Some(&i) if i != NONE => usize::from(i),
            _ => usize::MAX,
        }
    }

    /// `route`'s pool on the node that owns `slot`; `None` when no node does.
    pub fn pool(&self, route: Route, slot: u16) -> Option<Arc<Pool>> {
        Some(self.owner(slot)?.upstream.pool(route))
    }

    /// The nodes now.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.set.read().nodes.clone()
    }

    /// Whether every node's invalidations reach this sidecar (each control serving).
    pub fn serving(&self) -> bool {
        self.set.read().nodes.iter().all(|n| n.control.serving())
    }

    /// Whether the cluster is reachable: some node's link is up (a node that is down
    /// costs its own slots, see [`crate::cache::fences`], not all of L1).
    #[inline]
    pub fn link_up(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    /// Takes the nodes' links again into [`Nodes::link_up`]: after a node's link became
    /// reachable (its first connection included: [`LinkEvent::Reachable`]), came up again
    /// or was lost, and after every sync and refresh. Looks are serialised, so the last
    /// store is of a look taken after the last change that fired one.
    ///
    /// [`LinkEvent::Reachable`]: crate::upstream::LinkEvent::Reachable
    pub fn links_changed(&self) {
        let _looking = self.looking.lock();
        let up = self.set.read().nodes.iter().any(|n| n.upstream.link_up());
        self.reachable.store(up, Relaxed);
    }

    /// The topology's figures.
    pub fn figures(&self) -> TopologyFigures {
        self.topology.figures()
    }
}

/// The slots whose owner in `old` (one there was) is not their owner in `new`.
fn moved(old: &Set, new: &Set) -> Vec<u16> {
    fn address(set: &Set, slot: usize) -> Option<&str> {
        let i = set.owners[slot];
        let node = (i != NONE).then(|| set.nodes.get(usize::from(i)))??;
        Some(node.address.as_str())
    }
    (0..SLOTS)
        .filter(|&slot| {
            let before = address(old, slot);
            before.is_some() && before != address(new, slot)
        })
        .map(|slot| slot as u16)
        .collect()
}
