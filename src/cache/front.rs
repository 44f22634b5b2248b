//! A per-thread, two-way set-associative front for small L1 values.
//!
//! moka's bookkeeping (read log, frequency sketch, LRU deques) costs more than the rest of a
//! hit put together, so each worker thread keeps recent small hits in a plain array.
//! A front slot is only ever filled from an L1 hit and remembers the generation stamp taken
//! *before* that lookup; every invalidation bumps the generation after removing the entry
//! from L1, so a slot that an invalidation could concern no longer matches and is ignored.
//! Slots also keep the entry's expiry. Values share their bytes with L1 (no copy), but a
//! slot keeps its value alive after L1 evicted it, so the front's worst case ([`SLOT_COST`]
//! per slot: every slot holding a [`MAX_VALUE`] value nobody else holds) is counted inside
//! the `--l1-max-bytes` bound: [`size`] gives each worker thread a share of the bound and L1
//! gives moka the rest.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;

use super::weigh::{heap, BYTES_SHARED};
use super::{Fence, KeyRef};

/// Most sets per thread (a power of two).
pub const MAX_SETS: usize = 16 * 1024;
/// The front takes at most this fraction (1 / `BOUND_SHARE`) of `--l1-max-bytes`.
const BOUND_SHARE: u64 = 8;
/// Slots per set.
pub const WAYS: usize = 2;
/// Longest key kept in the front (stored inline in the slot: no pointer to chase).
pub const MAX_KEY: usize = 40;
/// Longest encoded value kept in the front.
pub const MAX_VALUE: usize = 512;

struct Slot {
    hash: u64,
    /// Generation stamp at fill time (generations only grow, so equal stamps mean no
    /// invalidation since).
    stamp: u64,
    /// Expiry (compared as it is: no conversion on the hit path).
    expires: Instant,
    /// The entry's slot and connection epochs (see `fences`).
    fence: Fence,
    owner: u32,
    user: u32,
    db: u32,
    key_len: u8,
    /// The key's namespace (an index into L1's namespaces), so a hit counts it unmatched.
    namespace: u16,
    key: [u8; MAX_KEY],
    /// The encoded bulk reply, or `None` for a cached missing key.
    value: Option<Bytes>,
}

/// The most memory one slot can hold: the slot itself and a value L1 no longer holds.
pub const SLOT_COST: u64 =
    std::mem::size_of::<Option<Slot>>() as u64 + heap(MAX_VALUE) + BYTES_SHARED;

/// Sets per thread for fronts built from now on (see [`size`]).
static SETS: AtomicUsize = AtomicUsize::new(MAX_SETS);

/// Sizes the fronts of `threads` worker threads within their share of an L1 bound of
/// `max_bytes`; returns the bytes they may hold in all, which the L1 leaves out of moka's
/// capacity. A thread's front takes the new size when it next stores a slot.
pub fn size(max_bytes: u64, threads: usize) -> u64 {
    let sets = sets_per_thread(max_bytes, threads);
    SETS.store(sets, Relaxed);
    sets as u64 * WAYS as u64 * SLOT_COST * threads.max(1) as u64
}

/// The sets each of `threads` fronts gets from a bound of `max_bytes`: a power of two (or
/// zero) at most [`MAX_SETS`], all fronts together within 1 / `BOUND_SHARE` of the bound.
pub fn sets_per_thread(max_bytes: u64, threads: usize) -> usize {
    let per_thread = max_bytes / BOUND_SHARE / threads.max(1) as u64;
    let sets = (per_thread / (WAYS as u64 * SLOT_COST)) as usize;
    if sets == 0 {
        0
    } else {
        (1usize << sets.ilog2()).min(MAX_SETS)
    }
}

#[derive(Default)]
struct Front {
    slots: Vec<Option<Slot>>,
    /// Alternates the way a new slot replaces when both are taken.
    victim: usize,
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front::default());
}

/// The first slot of `hash`'s set in a front of `slots` slots (a power of two, or zero).
#[inline]
fn set(hash: u64, slots: usize) -> usize {
    ((hash >> 20) as usize & (slots / WAYS).wrapping_sub(1)) * WAYS
}

impl Slot {
    #[inline]
    fn is(&self, owner: u32, hash: u64, key: &KeyRef<'_>) -> bool {
        self.hash == hash
            && self.owner == owner
            && self.user == key.user
            && self.db == key.db
            && &self.key[..self.key_len as usize] == key.key
    }
}

/// Calls `read` with the front's answer for a key of L1 `owner` — `Some(bulk)` a value,
/// `None` a missing key — and the key's namespace, if it has one that is valid at
/// generation stamp `stamp` and whose fence `holds`.
#[inline]
pub fn read<R>(
    owner: u32,
    hash: u64,
    key: &KeyRef<'_>,
    stamp: u64,
    holds: impl FnOnce(&Fence) -> bool,
    read: impl FnOnce(Option<&Bytes>, usize) -> R,
) -> Option<R> {
    FRONT.with(|front| {
        let front = front.borrow();
        let base = set(hash, front.slots.len());
        let slot = front
            .slots
            .get(base..base + WAYS)?
            .iter()
            .flatten()
            .find(|s| s.is(owner, hash, key))?;
        let valid = slot.stamp == stamp && holds(&slot.fence) && Instant::now() < slot.expires;
        valid.then(|| read(slot.value.as_ref(), usize::from(slot.namespace)))
    })
}

/// Where an L1 hit was found: its generation stamp, expiry, namespace and fence.
pub struct Found {
    pub stamp: u64,
    pub expires_at: Instant,
    pub namespace: usize,
    pub fence: Fence,
}

/// Remembers an L1 hit.
pub fn put(owner: u32, hash: u64, key: &KeyRef<'_>, value: Option<&Bytes>, found: Found) {
    let Ok(namespace) = u16::try_from(found.namespace) else {
        return;
    };
    if key.key.len() > MAX_KEY || value.is_some_and(|v| v.len() > MAX_VALUE) {
        return;
    }
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        let slots = SETS.load(Relaxed) * WAYS;
        if front.slots.len() != slots {
            front.slots = Vec::new();
            front.slots.resize_with(slots, || None);
        }
        if slots == 0 {
            return;
        }
        let base = set(hash, slots);
        let ways = &front.slots[base..base + WAYS];
        let way = ways
            .iter()
            .position(|s| s.as_ref().is_none_or(|s| s.is(owner, hash, key)))
            .unwrap_or(front.victim % WAYS);
        front.victim = front.victim.wrapping_add(1);
        let mut inline = [0u8; MAX_KEY];
        inline[..key.key.len()].copy_from_slice(key.key);
        front.slots[base + way] = Some(Slot {
            hash,
            stamp: found.stamp,
            expires: found.expires_at,
            fence: found.fence,
            namespace,
            owner,
            user: key.user,
            db: key.db,
            key_len: key.key.len() as u8,
            key: inline,
            value: value.cloned(),
        });
    });
}
