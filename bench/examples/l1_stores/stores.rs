//! The candidate stores behind one small interface: moka as L1 used it, moka holding one
//! allocation per entry, quick_cache, the CLOCK prototype of [`super::clock`], and L1's own
//! segment store ([`super::segments`]).

use std::borrow::Borrow;
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nearcache::cache::{CacheKey, KeyHasher, KeyRef};

use super::clock::Clock;
use super::segments::Segments;

/// What every candidate answers: a lookup (the value's length, read from the entry, for a
/// live entry), an insert of copies of `key` and `value`, and its size.
pub trait Store: Sync {
    /// The value's length when `key` is held and not expired.
    fn get(&self, key: &[u8]) -> Option<usize>;
    /// Stores copies of `key` and `value` (lifetime one hour).
    fn insert(&self, key: &[u8], value: &[u8]);
    /// Finishes deferred work (moka's maintenance).
    fn settle(&self) {}
    /// Entries held.
    fn len(&self) -> u64;
    /// The store's own account of the memory its structures take, when it keeps one.
    fn own_bytes(&self) -> Option<u64> {
        None
    }
}

/// The candidates, in table order.
pub const NAMES: [&str; 6] = [
    "(a) moka as L1 used it: per-entry expiry, closures, listener",
    "(b) moka, one allocation per entry, no per-entry timer",
    "(c) quick_cache 0.7, one allocation per entry",
    "(d) CLOCK prototype, 16 shards, one allocation per entry",
    "(e) L1's segment store (nearcache::cache::table)",
    "(f) (e) with the sidecar's admission once crowded (a first miss does not insert)",
];

/// Candidate `which` bounded to `capacity` bytes, each entry weighing its key and value
/// lengths plus `overhead`; `entries` is the expected count (a sizing hint).
pub fn build(which: usize, capacity: u64, overhead: u64, entries: usize) -> Box<dyn Store> {
    match which {
        0 => Box::new(MokaL1::new(capacity, overhead)),
        1 => Box::new(MokaPacked::new(capacity, overhead)),
        2 => Box::new(Quick::new(capacity, overhead, entries)),
        3 => Box::new(Clock::new(capacity, overhead, entries)),
        4 => Box::new(Segments::new(capacity, overhead, entries, false)),
        _ => Box::new(Segments::new(capacity, overhead, entries, true)),
    }
}

/// The coarse clock entries' expiry is checked against on read (milliseconds; a server
/// would advance it from a timer, here it stays at zero).
pub static NOW_MS: AtomicU64 = AtomicU64::new(0);

const LIFETIME_MS: u64 = 3_600_000;

fn weight(key: usize, value: usize, overhead: u64) -> u64 {
    (key + value) as u64 + overhead
}

/// Key and value in one reference-counted allocation: `[expires_ms u64][key len u16][key]
/// [value]`. Hashes, compares and borrows as its key.
#[derive(Clone)]
pub struct Packed(Arc<[u8]>);

const HEADER: usize = 10;

impl Packed {
    /// One allocation holding copies of `key` and `value`.
    pub fn new(key: &[u8], value: &[u8]) -> Packed {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let expires = NOW_MS.load(Relaxed) + LIFETIME_MS;
            s.extend_from_slice(&expires.to_le_bytes());
            s.extend_from_slice(&(key.len() as u16).to_le_bytes());
            s.extend_from_slice(key);
            s.extend_from_slice(value);
            Packed(Arc::from(&s[..]))
        })
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.0[8], self.0[9]]) as usize
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.0[HEADER + self.key_len()..]
    }

    /// The value's length, if the entry's time is not up.
    pub fn live_len(&self) -> Option<usize> {
        let expires = u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"));
        (expires > NOW_MS.load(Relaxed)).then(|| self.value().len())
    }

    /// Key and value lengths.
    pub fn payload(&self) -> usize {
        self.0.len() - HEADER
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Packed {}

impl Hash for Packed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl Borrow<[u8]> for Packed {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// (a) The sidecar's L1 today: an owned key with user and db, the value in its own
/// exact-size `Bytes`, an `Instant` per entry and moka's per-entry expiry, invalidation
/// closures and an eviction listener.
struct MokaL1 {
    cache: moka::sync::Cache<CacheKey, Entry, KeyHasher>,
}

#[derive(Clone)]
struct Entry {
    stored: Bytes,
    expires_at: Instant,
}

struct Lifetime;

impl moka::Expiry<CacheKey, Entry> for Lifetime {
    fn expire_after_create(&self, _: &CacheKey, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.expires_at.saturating_duration_since(Instant::now()))
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.expires_at.saturating_duration_since(Instant::now()))
    }
}

impl MokaL1 {
    fn new(capacity: u64, overhead: u64) -> MokaL1 {
        let removed = AtomicU64::new(0);
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(move |k: &CacheKey, e: &Entry| {
                u32::try_from(weight(k.key.len(), e.stored.len(), overhead)).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .eviction_listener(move |_, _, _| {
                removed.fetch_add(1, Relaxed);
            })
            .build_with_hasher(KeyHasher::new());
        MokaL1 { cache }
    }
}

impl Store for MokaL1 {
    fn get(&self, key: &[u8]) -> Option<usize> {
        let key = KeyRef {
            user: 0,
            db: 0,
            key,
        };
        self.cache.get(&key).map(|e| e.stored.len())
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let key = CacheKey {
            user: 0,
            db: 0,
            key: Bytes::copy_from_slice(key),
        };
        let entry = Entry {
            stored: Bytes::copy_from_slice(value),
            expires_at: Instant::now() + Duration::from_millis(LIFETIME_MS),
        };
        self.cache.insert(key, entry);
    }

    fn settle(&self) {
        self.cache.run_pending_tasks();
    }

    fn len(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// (b) moka with key and value in one allocation, expiry checked on read against a coarse
/// clock (no timer wheel), no invalidation closures; the eviction listener kept (L1 counts
/// what it holds through it).
struct MokaPacked {
    cache: moka::sync::Cache<Packed, Packed, KeyHasher>,
}

impl MokaPacked {
    fn new(capacity: u64, overhead: u64) -> MokaPacked {
        let removed = AtomicU64::new(0);
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(move |p: &Packed, _: &Packed| {
                u32::try_from(p.payload() as u64 + overhead).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_, _, _| {
                removed.fetch_add(1, Relaxed);
            })
            .build_with_hasher(KeyHasher::new());
        MokaPacked { cache }
    }
}

impl Store for MokaPacked {
    fn get(&self, key: &[u8]) -> Option<usize> {
        self.cache.get(key)?.live_len()
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let p = Packed::new(key, value);
        self.cache.insert(p.clone(), p);
    }

    fn settle(&self) {
        self.cache.run_pending_tasks();
    }

    fn len(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// (c) quick_cache: key and value in one allocation (the slot holds two pointers to it).
struct Quick {
    cache: quick_cache::sync::Cache<
        Packed,
        Packed,
        Weigh,
        KeyHasher,
        quick_cache::sync::DefaultLifecycle<Packed, Packed>,
    >,
}

#[derive(Clone)]
struct Weigh(u64);

impl quick_cache::Weighter<Packed, Packed> for Weigh {
    fn weight(&self, key: &Packed, _: &Packed) -> u64 {
        key.payload() as u64 + self.0
    }
}

impl Quick {
    fn new(capacity: u64, overhead: u64, entries: usize) -> Quick {
        let cache = quick_cache::sync::Cache::with(
            entries,
            capacity,
            Weigh(overhead),
            KeyHasher::new(),
            Default::default(),
        );
        Quick { cache }
    }
}

impl Store for Quick {
    fn get(&self, key: &[u8]) -> Option<usize> {
        self.cache.get(key)?.live_len()
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let p = Packed::new(key, value);
        self.cache.insert(p.clone(), p);
    }

    fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    fn own_bytes(&self) -> Option<u64> {
        Some(self.cache.memory_used().total() as u64)
    }
}
