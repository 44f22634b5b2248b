//! Generations: invalidation counters that keep a fetch which raced with an invalidation
//! from installing its stale result, and the locks that order fills against invalidations.
//!
//! A fetch takes a [`Generation`] before it is sent; every invalidation bumps the counters
//! that cover its keys (a hash bucket of the key, the key's database, everything). A fill
//! installs only if the generation is unchanged, checked under the key's stripe lock, which
//! invalidations hold while they remove the entry and bump the counter.

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Number of generation buckets (a power of two).
const BUCKETS: usize = 4096;
/// Number of per-database epochs; databases beyond share slots (flushing more, never less).
const DB_EPOCHS: usize = 64;
/// Lock stripes for fills and invalidations.
const STRIPES: usize = 256;

/// A snapshot of the invalidation counters that cover one key, taken before its fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    bucket: u64,
    db: u64,
    all: u64,
    /// The key's Redis Cluster slot (0 outside a cluster) and its epoch (see `fences`).
    pub(super) slot: u16,
    pub(super) slot_epoch: u32,
}

impl Generation {
    /// Whether no invalidation counter moved between `self` and `now` (the slot epoch is
    /// checked by the fence).
    pub(super) fn unchanged(&self, now: &Generation) -> bool {
        (self.bucket, self.db, self.all) == (now.bucket, now.db, now.all)
    }
}

/// The counters and locks of one L1.
pub(super) struct Generations {
    buckets: Box<[AtomicU64]>,
    /// Entries installed per bucket (changed only under the stripe lock).
    inserts: Box<[AtomicU64]>,
    db_epochs: Box<[AtomicU64]>,
    all_epoch: AtomicU64,
    /// Serialises generation checks + inserts against invalidations of the same keys.
    stripes: Box<[Mutex<()>]>,
    /// Key operations share it; flushes take it alone.
    flush_lock: RwLock<()>,
}

/// Held while one key is checked and installed, or removed and bumped.
pub(super) struct KeyLock<'a> {
    _flushes: RwLockReadGuard<'a, ()>,
    _stripe: MutexGuard<'a, ()>,
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Generations {
    pub(super) fn new() -> Generations {
        Generations {
            buckets: counters(BUCKETS),
            inserts: counters(BUCKETS),
            db_epochs: counters(DB_EPOCHS),
            all_epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            flush_lock: RwLock::new(()),
        }
    }

    /// The generation of the key with hash `hash` in `db`.
    #[inline]
    pub(super) fn at(&self, hash: u64, db: u32) -> Generation {
        Generation {
            bucket: self.buckets[bucket(hash)].load(SeqCst),
            db: self.db_epochs[db as usize % DB_EPOCHS].load(SeqCst),
            all: self.all_epoch.load(SeqCst),
            slot: 0,
            slot_epoch: 0,
        }
    }

    /// Locks the key with hash `hash` against invalidations (and flushes).
    pub(super) fn lock(&self, hash: u64) -> KeyLock<'_> {
        let flushes = self.flush_lock.read();
        let stripe = &self.stripes[(hash as usize >> 12) % STRIPES];
        KeyLock {
            _flushes: flushes,
            _stripe: stripe.lock(),
        }
    }

    /// Locks out every key operation, for a flush.
    pub(super) fn lock_all(&self) -> RwLockWriteGuard<'_, ()> {
        self.flush_lock.write()
    }

    /// Counts an install in the key's bucket (under its [`KeyLock`]).
    pub(super) fn installed(&self, hash: u64) {
        self.inserts[bucket(hash)].fetch_add(1, SeqCst);
    }

    /// Installs counted in the key's bucket so far.
    pub(super) fn installs(&self, hash: u64) -> u64 {
        self.inserts[bucket(hash)].load(SeqCst)
    }

    /// Bumps the key's bucket (under its [`KeyLock`], after removing it).
    pub(super) fn bump_key(&self, hash: u64) {
        self.buckets[bucket(hash)].fetch_add(1, SeqCst);
    }

    /// Bumps one database's epoch (under [`Generations::lock_all`]).
    pub(super) fn bump_db(&self, db: u32) {
        self.db_epochs[db as usize % DB_EPOCHS].fetch_add(1, SeqCst);
    }

    /// Bumps the epoch of everything (under [`Generations::lock_all`]).
    pub(super) fn bump_all(&self) {
        self.all_epoch.fetch_add(1, SeqCst);
    }
}

fn bucket(hash: u64) -> usize {
    hash as usize & (BUCKETS - 1)
}
