//! Fences: epochs that end many entries at once without touching them. Each L1 entry
//! keeps a [`Fence`], the epochs of its key's Redis Cluster slot and of the upstream
//! connection that filled it, read when it was filled; a hit serves it only while both are
//! unchanged (two loads, no hashing: the slot was computed when the fetch went upstream).
//!
//! - A slot's epoch is bumped whenever anything shows the slot changed owner (a topology
//!   diff, a `MOVED`), or its node's entries can no longer be trusted (the node's control
//!   connection lost or silent past its heartbeat). Outside a cluster every entry is in
//!   slot 0, whose epoch nothing bumps.
//! - An `ASK` (the slot is migrating) bumps it only when a missing key was cached in the
//!   slot since its last `ASK` bump (see [`SlotEpochs::asked`]): once per migration, not
//!   on every redirect of it.
//! - A connection's epoch is bumped when that upstream connection ends: Redis forgets the
//!   keys read through a closed connection (redis#11767), so their invalidations would
//!   never come. Connections share [`CONNS`] counters by index: a closing connection may
//!   end another's entries too (more, never less). Index 0 is no connection's (an entry
//!   put by hand): it is never bumped.
//!
//! A fill is refused when its slot's epoch moved between the fetch's send and its install,
//! or its connection's between the reply and the install.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use super::L1;

/// Slots of a Redis Cluster.
pub const SLOTS: usize = 16384;
/// Connection epochs, shared by index among all upstream connections of the process.
pub const CONNS: usize = 4096;

/// What an entry was filled under: its slot and connection, and their epochs then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fence {
    slot: u16,
    conn: u16,
    slot_epoch: u32,
    conn_epoch: u32,
}

impl Fence {
    /// Its 12 bytes as an L1 entry's header stores them.
    pub(crate) fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&self.slot.to_le_bytes());
        b[2..4].copy_from_slice(&self.conn.to_le_bytes());
        b[4..8].copy_from_slice(&self.slot_epoch.to_le_bytes());
        b[8..12].copy_from_slice(&self.conn_epoch.to_le_bytes());
        b
    }

    /// The fence [`Fence::to_bytes`] stored.
    pub(crate) fn from_bytes(b: [u8; 12]) -> Fence {
        Fence {
            slot: u16::from_le_bytes([b[0], b[1]]),
            conn: u16::from_le_bytes([b[2], b[3]]),
            slot_epoch: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            conn_epoch: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// An upstream connection's fence counter, taken when it opens ([`ConnFence::open`]) and
/// bumped when it ends ([`ConnFence::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnFence {
    index: u16,
}

/// The connection a reply was read on and its epoch at that moment: what a fill from it
/// records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilledBy {
    conn: u16,
    epoch: u32,
}

impl FilledBy {
    /// A value filled outside any upstream connection (tests, tools): no connection's end
    /// ends it.
    pub const LOCAL: FilledBy = FilledBy { conn: 0, epoch: 0 };
}

static CONN_EPOCHS: [AtomicU32; CONNS] = [const { AtomicU32::new(0) }; CONNS];
static NEXT_CONN: AtomicU64 = AtomicU64::new(0);
/// Connections that ended (each ended what it filled).
static CLOSED: AtomicU64 = AtomicU64::new(0);

impl ConnFence {
    /// A new connection's counter (indices are handed out in turn).
    pub fn open() -> ConnFence {
        let index = 1 + (NEXT_CONN.fetch_add(1, Relaxed) % (CONNS as u64 - 1)) as u16;
        ConnFence { index }
    }

    /// The connection ended: what it filled is no longer served.
    pub fn close(self) {
        CONN_EPOCHS[usize::from(self.index)].fetch_add(1, SeqCst);
        CLOSED.fetch_add(1, Relaxed);
    }

    /// What a reply read on this connection now fills with.
    #[inline]
    pub fn filled_by(self) -> FilledBy {
        FilledBy {
            conn: self.index,
            epoch: CONN_EPOCHS[usize::from(self.index)].load(SeqCst),
        }
    }
}

/// Why slots' epochs were bumped (the figures count each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCause {
    /// The slot changed owner (a topology diff, a `MOVED`) or is migrating (an `ASK`).
    Moved,
    /// The node's control connection was lost.
    NodeLost,
    /// The node's control connection did not answer a heartbeat within the bound.
    LeaseExpired,
}

/// How often fences ended entries, by cause (what INFO and `/metrics` show).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fenced {
    /// Slots whose owner changed (a topology diff, a `MOVED`) or that began migrating
    /// (the first `ASK` of a migration).
    pub slots_moved: u64,
    /// Cluster nodes whose control connection was lost: their slots ended.
    pub nodes_lost: u64,
    /// Cluster nodes whose control connection left a heartbeat unanswered: their slots
    /// ended (the node's lease expired).
    pub leases_expired: u64,
    /// Upstream connections that ended (of the whole process): what each filled ended.
    pub connections_closed: u64,
}

impl L1 {
    /// Keys are in Redis Cluster slots from now on (set once, before any fetch): each
    /// entry keeps its slot's epoch and is served only while it is unchanged.
    pub fn use_slots(&self) {
        self.slotted.store(true, Relaxed);
    }

    /// Ends the entries of `slots`: they are not served again, and fills taken before are
    /// refused.
    pub fn bump_slots(&self, slots: impl IntoIterator<Item = u16>, cause: SlotCause) {
        self.slots.bump(slots, cause);
    }

    /// `slot` answered `-ASK`: its entries end when a missing key may hide a key now
    /// written on the importing node (see [`SlotEpochs::asked`]).
    pub fn slot_asked(&self, slot: u16) {
        self.slots.asked(slot);
    }

    /// How often fences ended entries, by cause.
    pub fn fenced(&self) -> Fenced {
        let s = &self.slots;
        Fenced {
            slots_moved: s.moved.load(Relaxed),
            nodes_lost: s.node_lost.load(Relaxed),
            leases_expired: s.lease_expired.load(Relaxed),
            connections_closed: CLOSED.load(Relaxed),
        }
    }
}

/// The slot epochs of one L1, and how often they were bumped by cause.
pub(super) struct SlotEpochs {
    epochs: Box<[AtomicU32]>,
    /// Per slot, how many missing keys were cached in it (counted before their install).
    missing: Box<[AtomicU32]>,
    /// Per slot, its epoch and `missing` count (packed) as of its last `ASK` bump.
    asked: Box<[AtomicU64]>,
    /// Slots bumped because they moved.
    pub(super) moved: AtomicU64,
    /// Node losses and lease expiries that bumped a node's slots.
    pub(super) node_lost: AtomicU64,
    pub(super) lease_expired: AtomicU64,
}

impl SlotEpochs {
    pub(super) fn new() -> SlotEpochs {
        SlotEpochs {
            epochs: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            missing: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            asked: (0..SLOTS).map(|_| AtomicU64::new(NEVER_ASKED)).collect(),
            moved: AtomicU64::new(0),
            node_lost: AtomicU64::new(0),
            lease_expired: AtomicU64::new(0),
        }
    }

    /// The epoch of `slot` now.
    #[inline]
    pub(super) fn at(&self, slot: u16) -> u32 {
        self.epochs[usize::from(slot) % SLOTS].load(SeqCst)
    }

    /// Bumps every slot in `slots` for `cause`.
    pub(super) fn bump(&self, slots: impl IntoIterator<Item = u16>, cause: SlotCause) {
        let mut n = 0;
        for slot in slots {
            self.epochs[usize::from(slot) % SLOTS].fetch_add(1, SeqCst);
            n += 1;
        }
        let counter = match cause {
            SlotCause::Moved => {
                self.moved.fetch_add(n, Relaxed);
                return;
            }
            SlotCause::NodeLost => &self.node_lost,
            SlotCause::LeaseExpired => &self.lease_expired,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A missing key of `slot` is about to be cached (before its install, so that an
    /// [`SlotEpochs::asked`] racing with it sees the count move).
    pub(super) fn missing_cached(&self, slot: u16) {
        self.missing[usize::from(slot) % SLOTS].fetch_add(1, SeqCst);
    }

    /// `slot` answered `-ASK`: its keys are migrating, and a key the old owner no longer
    /// holds may be written on the importing node, whose tracking does not cover what this
    /// sidecar read from the old owner. Only entries saying a key is missing can go stale
    /// that way: a value was read from the old owner while it held the key, and `MIGRATE`
    /// deletes each key it moves with a tracking invalidation (as does any write or expiry
    /// there), while the old owner answers `-ASK` instead of a nil for a key it does not
    /// hold, so no missing key is cached during the migration. So the slot is bumped (its
    /// entries end) only when a missing key was cached in it since its last `ASK` bump or
    /// its epoch moved since: the first `ASK` of a migration bumps, the rest of it do not.
    pub(super) fn asked(&self, slot: u16) {
        let at = usize::from(slot) % SLOTS;
        // The count is read before the bump: a missing key counted after it forces the
        // next ASK to bump again (more, never less).
        let missing = self.missing[at].load(SeqCst);
        if self.asked[at].load(SeqCst) == pack(self.at(slot), missing) {
            return;
        }
        self.bump([slot], SlotCause::Moved);
        self.asked[at].store(pack(self.at(slot), missing), SeqCst);
    }

    /// The fence of an entry of `slot` taken at `slot_epoch`, filled by `by` (`None`: no
    /// connection, e.g. a test or a value put by hand).
    #[inline]
    pub(super) fn fence(slot: u16, slot_epoch: u32, by: Option<FilledBy>) -> Fence {
        let (conn, conn_epoch) = by.map_or((0, 0), |b| (b.conn, b.epoch));
        Fence {
            slot,
            conn,
            slot_epoch,
            conn_epoch,
        }
    }

    /// Whether an entry with `fence` may still be served (or installed).
    #[inline]
    pub(super) fn holds(&self, fence: &Fence) -> bool {
        self.at(fence.slot) == fence.slot_epoch
            && CONN_EPOCHS[usize::from(fence.conn)].load(SeqCst) == fence.conn_epoch
    }
}

/// [`SlotEpochs::asked`] of a slot no `ASK` bumped yet (no epoch and count pack to it).
const NEVER_ASKED: u64 = u64::MAX;

/// A slot's epoch and its count of missing keys cached, as one word.
fn pack(epoch: u32, missing: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(missing & (u32::MAX >> 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_bumps_once_per_migration_and_again_after_a_missing_key_is_cached() {
        let slots = SlotEpochs::new();
        slots.asked(5);
        assert_eq!(slots.at(5), 1, "the first ASK bumps");
        slots.asked(5);
        assert_eq!(
            slots.at(5),
            1,
            "a second ASK of the same migration does not"
        );
        slots.missing_cached(5);
        slots.asked(5);
        assert_eq!(slots.at(5), 2, "a missing key cached since: bumped again");
        slots.asked(5);
        assert_eq!(slots.at(5), 2);
        slots.bump([5], SlotCause::NodeLost);
        slots.asked(5);
        assert_eq!(slots.at(5), 4, "the epoch moved since the last ASK: bumped");
        assert_eq!(slots.at(6), 0, "other slots untouched");
        assert_eq!(slots.moved.load(Relaxed), 3);
    }

    #[test]
    fn a_bumped_slot_ends_its_entries_only() {
        let slots = SlotEpochs::new();
        let a = SlotEpochs::fence(7, slots.at(7), None);
        let b = SlotEpochs::fence(8, slots.at(8), None);
        assert!(slots.holds(&a) && slots.holds(&b));
        slots.bump([7], SlotCause::Moved);
        assert!(!slots.holds(&a), "slot 7 moved");
        assert!(slots.holds(&b), "slot 8 did not");
        let again = SlotEpochs::fence(7, slots.at(7), None);
        assert!(slots.holds(&again), "a fill after the bump is served");
        assert_eq!(slots.moved.load(Relaxed), 1);
    }

    #[test]
    fn node_causes_count_events_and_moves_count_slots() {
        let slots = SlotEpochs::new();
        slots.bump(0..100, SlotCause::NodeLost);
        slots.bump(0..100, SlotCause::LeaseExpired);
        slots.bump([1, 2, 3], SlotCause::Moved);
        assert_eq!(slots.node_lost.load(Relaxed), 1);
        assert_eq!(slots.lease_expired.load(Relaxed), 1);
        assert_eq!(slots.moved.load(Relaxed), 3);
        assert_eq!(slots.at(1), 3);
        assert_eq!(slots.at(99), 2);
        assert_eq!(slots.at(100), 0);
    }

    #[test]
    fn a_closed_connection_ends_what_it_filled() {
        let slots = SlotEpochs::new();
        let (one, two) = (ConnFence::open(), ConnFence::open());
        let a = SlotEpochs::fence(0, 0, Some(one.filled_by()));
        let b = SlotEpochs::fence(0, 0, Some(two.filled_by()));
        assert!(slots.holds(&a) && slots.holds(&b));
        one.close();
        assert!(!slots.holds(&a), "its connection closed");
        assert!(slots.holds(&b), "another connection's entry stays");
    }

    use crate::cache::tests::{key, l1};
    use crate::cache::{bulk, Cached};
    use std::sync::Arc;
    use std::time::Instant;

    /// Fills `k` as a fetch read on `by` would, and says whether it was installed.
    fn fill(l1: &Arc<L1>, k: &str, by: Option<FilledBy>) {
        let (k, pttl) = (key(0, k), bytes::Bytes::from_static(b":-1\r\n"));
        let taken = l1.generation(&k);
        l1.fill(k, taken, Instant::now(), &bulk(b"v"), &pttl, true, by);
    }

    fn hit(l1: &L1, k: &str) -> bool {
        // Twice: a hit leaves the entry in place.
        let k = key(0, k);
        let first = l1.get(&k.as_key_ref()) == Some(Cached::Value(bulk(b"v")));
        first && l1.get(&k.as_key_ref()) == Some(Cached::Value(bulk(b"v")))
    }

    #[test]
    fn in_a_cluster_an_entry_is_served_only_while_its_slot_holds() {
        let l1 = Arc::new(l1());
        l1.use_slots();
        // `{a}1` and `{a}2` share a slot; `b` is in another.
        fill(&l1, "{a}1", Some(FilledBy::LOCAL));
        fill(&l1, "b", Some(FilledBy::LOCAL));
        assert!(hit(&l1, "{a}1") && hit(&l1, "b"));
        let a = redis_protocol::redis_keyslot(b"{a}1");
        l1.bump_slots([a], SlotCause::Moved);
        assert!(!hit(&l1, "{a}1"), "its slot moved: not served");
        assert!(hit(&l1, "b"), "another slot's entry stays");
        // A fetch taken before a bump of its slot is refused; one after is served.
        let k = key(0, "{a}2");
        let taken = l1.generation(&k);
        l1.bump_slots([a], SlotCause::LeaseExpired);
        let v = Cached::Value(bulk(b"v"));
        assert!(!l1.insert_if_current(k.clone(), taken, v.clone(), None));
        assert!(l1.insert_if_current(k.clone(), l1.generation(&k), v, None));
        assert!(hit(&l1, "{a}2"));
        let fenced = l1.fenced();
        assert_eq!((fenced.slots_moved, fenced.leases_expired), (1, 1));
    }

    #[test]
    fn outside_a_cluster_no_slot_is_computed_and_a_closed_connection_ends_its_fills() {
        let l1 = Arc::new(l1());
        let (one, two) = (ConnFence::open(), ConnFence::open());
        fill(&l1, "x", Some(one.filled_by()));
        fill(&l1, "y", Some(two.filled_by()));
        fill(&l1, "z", None);
        assert_eq!(
            l1.generation(&key(0, "x")).slot,
            0,
            "no CRC16 outside a cluster"
        );
        assert!(hit(&l1, "x") && hit(&l1, "y"));
        assert!(
            !hit(&l1, "z"),
            "a reply its connection's tracking does not cover"
        );
        one.close();
        assert!(!hit(&l1, "x"), "its connection closed");
        assert!(hit(&l1, "y"), "another connection's fill stays");
    }
}
