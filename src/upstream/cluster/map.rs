//! The slot map: every slot's owner (a primary) and the nodes of each shard, as one view of
//! the cluster; and the diff of two maps (the slots that changed owner).

use std::fmt;

use super::slot::SLOTS;

/// A node's role in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns its shard's slots.
    Primary,
    /// Replicates its shard's primary.
    Replica,
}

/// One node of the cluster as a view describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where to connect: `host:port` (an IPv6 host in brackets), the host being the node's
    /// endpoint (an IP or a hostname, as `cluster-preferred-endpoint-type` makes it), or the
    /// host the view was asked at when the endpoint is empty or `?`; the port is the TLS
    /// port when the upstream is TLS and the node reports one.
    pub address: String,
    /// The node id (40 hex characters), empty when the view gave none.
    pub id: String,
    /// Primary or replica.
    pub role: Role,
    /// The plain-text port, if the node reports one.
    pub port: Option<u16>,
    /// The TLS port, if the node reports one (`tls-port` in `CLUSTER SHARDS`).
    pub tls_port: Option<u16>,
    /// The node's announced hostname, if any.
    pub hostname: Option<String>,
    /// Index of the node's shard in the view (nodes of one shard serve the same slots).
    pub shard: usize,
}

/// Owner index of a slot nobody serves.
const NONE: u16 = u16::MAX;

/// One view of the cluster: the nodes, and for each of the 16384 slots the index of the
/// primary that owns it. Two maps are equal when they name the same owner for every slot
/// and the same nodes (address, id, role, primary), whatever order their views listed
/// shards and nodes in.
#[derive(Clone)]
pub struct SlotMap {
    nodes: Vec<Node>,
    owners: Vec<u16>,
}

impl PartialEq for SlotMap {
    fn eq(&self, other: &SlotMap) -> bool {
        self.diff(other).is_empty() && self.canonical_nodes() == other.canonical_nodes()
    }
}

impl Eq for SlotMap {}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap::empty()
    }
}

impl fmt::Debug for SlotMap {
    /// The nodes and the owned ranges (`0-5460 -> 127.0.0.1:7000`), not 16384 entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self
            .ranges()
            .into_iter()
            .map(|(a, b, node)| format!("{a}-{b} -> {}", self.nodes[node].address))
            .collect();
        f.debug_struct("SlotMap")
            .field("nodes", &self.nodes)
            .field("ranges", &ranges)
            .finish()
    }
}

impl SlotMap {
    /// A map with no node and no slot assigned.
    pub fn empty() -> SlotMap {
        SlotMap {
            nodes: Vec::new(),
            owners: vec![NONE; SLOTS],
        }
    }

    /// Adds `node` (or finds it by address) and returns its index.
    pub fn add_node(&mut self, node: Node) -> usize {
        if let Some(at) = self.nodes.iter().position(|n| n.address == node.address) {
            return at;
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Assigns the slots `first..=last` (clamped to the slot range) to node `index`.
    pub fn assign(&mut self, first: u16, last: u16, index: usize) {
        let Ok(index) = u16::try_from(index) else {
            return;
        };
        let last = usize::from(last).min(SLOTS - 1);
        for owner in self
            .owners
            .iter_mut()
            .take(last + 1)
            .skip(usize::from(first))
        {
            *owner = index;
        }
    }

    /// The nodes, primaries and replicas, in the view's order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The primary that owns `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        let index = *self.owners.get(usize::from(slot))?;
        self.nodes.get(usize::from(index))
    }

    /// The address of the primary that owns `slot`, if any.
    pub fn owner_address(&self, slot: u16) -> Option<&str> {
        self.owner(slot).map(|n| n.address.as_str())
    }

    /// Who owns `slot`: the owner's address and node id. A slot changed owner when either
    /// differs (another node at the address, or the node at another address).
    pub fn owner_key(&self, slot: u16) -> Option<(&str, &str)> {
        self.owner(slot)
            .map(|n| (n.address.as_str(), n.id.as_str()))
    }

    /// The replicas in the shard of the primary that owns `slot`.
    pub fn replicas(&self, slot: u16) -> Vec<&Node> {
        let Some(owner) = self.owner(slot) else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Replica && n.shard == owner.shard)
            .collect()
    }

    /// How many slots have an owner.
    pub fn assigned(&self) -> usize {
        self.owners.iter().filter(|&&o| o != NONE).count()
    }

    /// Whether no slot has an owner.
    pub fn is_empty(&self) -> bool {
        self.assigned() == 0
    }

    /// The owned slot ranges in slot order: `(first, last, node index)`.
    pub fn ranges(&self) -> Vec<(u16, u16, usize)> {
        let mut out: Vec<(u16, u16, usize)> = Vec::new();
        for (slot, &owner) in self.owners.iter().enumerate() {
            if owner == NONE {
                continue;
            }
            let slot = slot as u16;
            match out.last_mut() {
                Some((_, last, node)) if *last + 1 == slot && *node == usize::from(owner) => {
                    *last = slot
                }
                _ => out.push((slot, slot, usize::from(owner))),
            }
        }
        out
    }

    /// The nodes as (address, id, role, their shard's primary), sorted: what equality
    /// compares besides the owners.
    fn canonical_nodes(&self) -> Vec<(&str, &str, Role, Option<&str>)> {
        let primary = |shard: usize| {
            self.nodes
                .iter()
                .find(|n| n.shard == shard && n.role == Role::Primary)
                .map(|n| n.address.as_str())
        };
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .map(|n| (n.address.as_str(), n.id.as_str(), n.role, primary(n.shard)))
            .collect();
        out.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// The slots whose owner ([`SlotMap::owner_key`]) differs in `newer`: moved to another
    /// node, dropped (no owner in `newer`) or newly assigned.
    pub fn diff(&self, newer: &SlotMap) -> Vec<u16> {
        (0..SLOTS as u16)
            .filter(|&s| self.owner_key(s) != newer.owner_key(s))
            .collect()
    }

    /// The slots this map assigns that `newer` moves elsewhere or drops (what only an answer
    /// two nodes agree on may change).
    pub fn taken_away(&self, newer: &SlotMap) -> Vec<u16> {
        (0..SLOTS as u16)
            .filter(|&s| {
                let before = self.owner_key(s);
                before.is_some() && before != newer.owner_key(s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, role: Role, shard: usize) -> Node {
        Node {
            address: address.to_owned(),
            id: String::new(),
            role,
            port: None,
            tls_port: None,
            hostname: None,
            shard,
        }
    }

    fn two_shards() -> SlotMap {
        let mut map = SlotMap::empty();
        let a = map.add_node(node("10.0.0.1:7000", Role::Primary, 0));
        map.add_node(node("10.0.0.2:7000", Role::Replica, 0));
        let b = map.add_node(node("10.0.0.3:7000", Role::Primary, 1));
        map.assign(0, 8191, a);
        map.assign(8192, 16383, b);
        map
    }

    #[test]
    fn owners_ranges_and_replicas() {
        let map = two_shards();
        assert_eq!(map.owner_address(0), Some("10.0.0.1:7000"));
        assert_eq!(map.owner_address(16383), Some("10.0.0.3:7000"));
        assert_eq!(map.assigned(), SLOTS);
        assert_eq!(map.ranges(), vec![(0, 8191, 0), (8192, 16383, 2)]);
        let replicas = map.replicas(5);
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].address, "10.0.0.2:7000");
        assert!(map.replicas(9000).is_empty());
        assert!(SlotMap::empty().is_empty());
        assert_eq!(SlotMap::empty().owner(3), None);
    }

    #[test]
    fn the_diff_names_moved_dropped_and_added_slots() {
        let old = two_shards();
        let mut new = two_shards();
        new.assign(100, 100, 2);
        assert_eq!(old.diff(&new), vec![100]);
        assert_eq!(old.taken_away(&new), vec![100]);
        let mut partial = SlotMap::empty();
        let a = partial.add_node(node("10.0.0.1:7000", Role::Primary, 0));
        partial.assign(0, 8191, a);
        assert_eq!(old.diff(&partial).len(), 8192);
        assert_eq!(old.taken_away(&partial).len(), 8192);
        assert_eq!(partial.taken_away(&old), Vec::<u16>::new());
        assert_eq!(partial.diff(&old).len(), 8192);
        assert_eq!(old.diff(&old.clone()), Vec::<u16>::new());
    }

    #[test]
    fn maps_listing_the_same_nodes_in_another_order_are_equal() {
        let map = two_shards();
        let mut other = SlotMap::empty();
        let b = other.add_node(node("10.0.0.3:7000", Role::Primary, 0));
        let a = other.add_node(node("10.0.0.1:7000", Role::Primary, 1));
        other.add_node(node("10.0.0.2:7000", Role::Replica, 1));
        other.assign(8192, 16383, b);
        other.assign(0, 8191, a);
        assert_eq!(map, other);
        other.add_node(node("10.0.0.4:7000", Role::Replica, 0));
        assert_ne!(map, other, "a new replica");
        assert!(map.diff(&other).is_empty());
    }

    #[test]
    fn another_node_id_at_the_same_address_is_a_new_owner() {
        let old = two_shards();
        let mut new = SlotMap::empty();
        let mut restarted = node("10.0.0.1:7000", Role::Primary, 0);
        restarted.id = "new-id".to_owned();
        let a = new.add_node(restarted);
        let b = new.add_node(node("10.0.0.3:7000", Role::Primary, 1));
        new.assign(0, 8191, a);
        new.assign(8192, 16383, b);
        assert_eq!(old.diff(&new), (0..8192).collect::<Vec<u16>>());
        assert_eq!(old.taken_away(&new).len(), 8192);
    }

    #[test]
    fn ranges_past_the_last_slot_are_clamped() {
        let mut map = SlotMap::empty();
        let a = map.add_node(node("h:1", Role::Primary, 0));
        map.assign(16000, u16::MAX, a);
        assert_eq!(map.assigned(), 384);
    }
}
