//! How many L1 entries each slice of the key space holds right now: a write to a key whose
//! slice holds none skips the table's removal (a lock and a probe into its index that misses the CPU
//! cache), the common case for keys that are written but not read (counters, locks,
//! sessions).
//!
//! Counts are exact or too high, never too low: an entry is counted before it is inserted
//! (under the key's stripe lock, which evictions take too) and uncounted by the eviction
//! listener once the table has removed it, whatever the cause (replaced, evicted, expired,
//! invalidated, flushed).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// Slices of the key space (a power of two): 64 KiB of counters.
const SLICES: usize = 16 * 1024;

/// Live entries per slice of key hashes.
pub(super) struct Live(Box<[AtomicU32]>);

fn slice(hash: u64) -> usize {
    // Bits the generation buckets and lock stripes do not use.
    (hash >> 24) as usize & (SLICES - 1)
}

impl Live {
    pub(super) fn new() -> Live {
        Live((0..SLICES).map(|_| AtomicU32::new(0)).collect())
    }

    /// An entry of a key with this hash is about to be inserted.
    pub(super) fn entered(&self, hash: u64) {
        self.0[slice(hash)].fetch_add(1, SeqCst);
    }

    /// An entry of a key with this hash has been removed.
    pub(super) fn left(&self, hash: u64) {
        let _ = self.0[slice(hash)].fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Whether L1 may hold an entry of a key with this hash.
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        self.0[slice(hash)].load(SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_entries_per_slice() {
        let live = Live::new();
        let (a, b) = (7u64 << 24, 8u64 << 24);
        assert!(!live.may_hold(a));
        live.entered(a);
        live.entered(a);
        assert!(live.may_hold(a) && !live.may_hold(b));
        live.left(a);
        assert!(live.may_hold(a));
        live.left(a);
        assert!(!live.may_hold(a));
        live.left(a);
        assert!(!live.may_hold(a), "never below zero");
    }
}
