//! Admission on the second miss (`--l1-admit-second-miss`): once L1 is crowded, a missed
//! key fills L1 only if it was missed before.
//!
//! While a table has room, every miss fills it (nothing is evicted for it). Once it is
//! crowded (see [`super::table::Table::crowded`]), each fill evicts something, and a key
//! read once and never again (a scan, a batch job, a key space far larger than L1) costs
//! a `PTTL` upstream and an entry that pushes out another. A [`Doorkeeper`] (TinyLFU's
//! first filter) remembers the keys missed recently: a key's first miss is forwarded as
//! the plain command (no `PTTL`, no fill: for Redis one command, not two), its next miss
//! fills. It is off by default: on the `l1_stores` traces it gave up hit ratio (Zipf 0.99
//! 0.761 to 0.754, shifting popularity 0.655 to 0.587, scans 0.577 to 0.581), every new
//! hot key paying one more miss; it pays where most misses are never read again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{CacheKey, L1};

/// One slot per this many bytes of the bound: entries weigh at least ~60 bytes, so a slot
/// per entry or two that L1 can hold (4 bytes each: 1/32 of the bound at most, the pages
/// only touched as keys are missed).
const BYTES_PER_SLOT: u64 = 128;
const MIN_SLOTS: u64 = 1 << 10;
const MAX_SLOTS: u64 = 1 << 24;

/// The keys missed recently, one 32-bit fingerprint per slot, direct-mapped: a key's slot
/// taken by another key forgets it (the filter ages by itself, no reset needed). A false
/// "seen" needs a slot and a fingerprint to match: one key in 2^32 per slot.
pub struct Doorkeeper {
    slots: Box<[AtomicU32]>,
    mask: u64,
    /// First misses that were not admitted.
    declined: AtomicU64,
}

impl Doorkeeper {
    /// A filter sized for an L1 bound of `max_bytes`.
    pub fn new(max_bytes: u64) -> Doorkeeper {
        let n = (max_bytes / BYTES_PER_SLOT)
            .clamp(MIN_SLOTS, MAX_SLOTS)
            .next_power_of_two();
        Doorkeeper {
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            mask: n - 1,
            declined: AtomicU64::new(0),
        }
    }

    /// Whether `hash` was missed since its slot last changed; remembers it if not.
    pub fn seen_again(&self, hash: u64) -> bool {
        // High bits for the fingerprint (the slot takes the low ones); never 0, the empty slot.
        let print = (hash >> 32) as u32 | 1;
        let slot = &self.slots[(hash & self.mask) as usize];
        if slot.load(Relaxed) == print {
            return true;
        }
        slot.store(print, Relaxed);
        self.declined.fetch_add(1, Relaxed);
        false
    }
}

impl L1 {
    /// Whether a miss of `key` is to be fetched for L1 (with its `PTTL`, then filled):
    /// always, unless `--l1-admit-second-miss` is on and the key's table is crowded: then
    /// only a key missed before (see [`Doorkeeper`]). A key of a namespace that is not
    /// cached, or with L1 off, is never admitted. `ns` is the key's namespace, as the
    /// caller already matched it ([`super::Namespaces::of`]).
    pub fn admits(&self, key: &CacheKey, ns: usize) -> bool {
        if !self.enabled() {
            return false;
        }
        if !self.namespaces.policy(ns).cache {
            return false;
        }
        if !self.options.admit_second_miss {
            return true;
        }
        let hash = self.key_hash(key.db, &key.key);
        !self.stores[self.namespaces.store(ns)].crowded(hash) || self.doorkeeper.seen_again(hash)
    }

    /// First misses forwarded without filling L1 because it was crowded (see [`L1::admits`]).
    pub fn not_admitted(&self) -> u64 {
        self.doorkeeper.declined.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_seen_again_only_after_its_first_miss() {
        let d = Doorkeeper::new(1 << 20);
        assert!(!d.seen_again(0xdead_beef_0000_0042));
        assert!(d.seen_again(0xdead_beef_0000_0042));
        assert!(d.seen_again(0xdead_beef_0000_0042));
        assert_eq!(d.declined.load(Relaxed), 1);
    }

    #[test]
    fn a_slot_taken_by_another_key_forgets_the_first() {
        let d = Doorkeeper::new(1 << 20);
        let (a, b) = (0x1111_1111_0000_0007, 0x2222_2222_0000_0007);
        assert!(!d.seen_again(a));
        assert!(!d.seen_again(b), "same slot, another fingerprint");
        assert!(!d.seen_again(a), "a was forgotten");
    }

    #[test]
    fn slots_follow_the_bound() {
        assert_eq!(Doorkeeper::new(0).slots.len(), MIN_SLOTS as usize);
        assert_eq!(Doorkeeper::new(256 << 20).slots.len(), (256 << 20) / 128);
        assert_eq!(Doorkeeper::new(u64::MAX).slots.len(), MAX_SLOTS as usize);
    }
}
