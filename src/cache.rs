//! L1: a byte-bounded moka cache of GET replies keyed by (user, db, key), with per-entry
//! lifetimes capped by the key's upstream TTL, zstd for large values, and generations that
//! keep a fetch which raced with an invalidation from installing its stale result.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::protocol::write_bulk;

/// Fixed per-entry cost added to key and value bytes by the weigher.
const ENTRY_OVERHEAD: u32 = 96;
/// Number of generation buckets (a power of two).
const GENERATION_BUCKETS: usize = 4096;
/// Number of per-database epochs; databases beyond share slots (flushing more, never less).
const DB_EPOCHS: usize = 64;
/// zstd level for large values: fast, still a good ratio on text.
const ZSTD_LEVEL: i32 = 1;

/// What identifies an L1 entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Upstream identity the client authenticated as (0: the sidecar's own credentials).
    pub user: u32,
    /// Logical database.
    pub db: u32,
    /// The Redis key.
    pub key: Bytes,
}

/// A value as L1 answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// The encoded bulk reply `$len\r\n...\r\n` (identical in RESP2 and RESP3).
    Value(Bytes),
    /// The key does not exist upstream.
    Missing,
}

#[derive(Clone)]
enum Stored {
    Plain(Bytes),
    Compressed { data: Bytes, len: usize },
    Missing,
}

#[derive(Clone)]
struct Entry {
    stored: Stored,
    expires_at: Instant,
}

/// A snapshot of the invalidation counters that cover one key, taken before its fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation {
    bucket: u64,
    db: u64,
    all: u64,
}

/// Options of the L1.
#[derive(Debug, Clone, Copy)]
pub struct L1Options {
    /// Bound on key + value + overhead bytes.
    pub max_bytes: u64,
    /// Longest lifetime of an entry; zero disables the L1.
    pub ttl: Duration,
    /// Values at least this long are stored compressed.
    pub compress_min_bytes: usize,
}

/// The in-process cache.
pub struct L1 {
    cache: Cache<CacheKey, Entry, KeyHasher>,
    hasher: KeyHasher,
    buckets: Box<[AtomicU64]>,
    db_epochs: Box<[AtomicU64]>,
    all_epoch: AtomicU64,
    /// Highest user id any entry may carry: invalidations cover every user.
    max_user: AtomicU32,
    options: L1Options,
    counters: Arc<L1Counters>,
}

#[derive(Default)]
struct L1Counters {
    evictions: AtomicU64,
    compressed: AtomicI64,
}

struct Lifetime;

impl moka::Expiry<CacheKey, Entry> for Lifetime {
    fn expire_after_create(&self, _: &CacheKey, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.expires_at.saturating_duration_since(Instant::now()))
    }
}

impl L1 {
    /// Builds an empty L1.
    pub fn new(options: L1Options) -> L1 {
        let counters = Arc::new(L1Counters::default());
        let listener_counters = counters.clone();
        let hasher = KeyHasher::new();
        let cache = Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(|k: &CacheKey, e: &Entry| {
                let value = match &e.stored {
                    Stored::Plain(b) => b.len(),
                    Stored::Compressed { data, .. } => data.len(),
                    Stored::Missing => 0,
                };
                u32::try_from(k.key.len() + value)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .eviction_listener(move |_k, e: Entry, cause| {
                if matches!(e.stored, Stored::Compressed { .. }) {
                    listener_counters.compressed.fetch_sub(1, Relaxed);
                }
                if cause == RemovalCause::Size {
                    listener_counters.evictions.fetch_add(1, Relaxed);
                }
            })
            .build_with_hasher(hasher.clone());
        L1 {
            cache,
            hasher,
            buckets: (0..GENERATION_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            db_epochs: (0..DB_EPOCHS).map(|_| AtomicU64::new(0)).collect(),
            all_epoch: AtomicU64::new(0),
            max_user: AtomicU32::new(0),
            options,
            counters,
        }
    }

    /// True when the L1 caches anything at all.
    pub fn enabled(&self) -> bool {
        !self.options.ttl.is_zero()
    }

    /// Looks a key up. Expired entries are never returned.
    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        let entry = self.cache.get(key)?;
        if entry.expires_at <= Instant::now() {
            return None;
        }
        Some(match entry.stored {
            Stored::Plain(b) => Cached::Value(b),
            Stored::Missing => Cached::Missing,
            Stored::Compressed { data, len } => Cached::Value(decompress(&data, len)?),
        })
    }

    /// The generation to take before fetching `key` from upstream.
    pub fn generation(&self, key: &CacheKey) -> Generation {
        Generation {
            bucket: self.buckets[self.bucket(key)].load(SeqCst),
            db: self.db_epochs[key.db as usize % DB_EPOCHS].load(SeqCst),
            all: self.all_epoch.load(SeqCst),
        }
    }

    /// Installs a fetched value unless an invalidation of its key happened since `taken`.
    /// `value` is the encoded bulk reply (or `Missing`); `expires_at` is the upstream expiry
    /// bound, if the key has one. Returns whether the entry was installed.
    pub fn insert_if_current(
        &self,
        key: CacheKey,
        taken: Generation,
        value: Cached,
        upstream_expiry: Option<Instant>,
    ) -> bool {
        if !self.enabled() || self.generation(&key) != taken {
            return false;
        }
        let l1_expiry = Instant::now() + self.options.ttl;
        let expires_at = upstream_expiry.map_or(l1_expiry, |u| u.min(l1_expiry));
        if expires_at <= Instant::now() {
            return false;
        }
        let stored = match value {
            Cached::Missing => Stored::Missing,
            Cached::Value(bulk) => self.store(bulk),
        };
        self.max_user.fetch_max(key.user, SeqCst);
        if matches!(stored, Stored::Compressed { .. }) {
            self.counters.compressed.fetch_add(1, Relaxed);
        }
        self.cache.insert(key.clone(), Entry { stored, expires_at });
        // An invalidation between the check and the insert may have missed the new entry.
        if self.generation(&key) != taken {
            self.cache.invalidate(&key);
            return false;
        }
        true
    }

    /// Evicts one key for every user: in-flight fetches of it will not install their result.
    pub fn invalidate(&self, key: &CacheKey) {
        self.buckets[self.bucket(key)].fetch_add(1, SeqCst);
        let mut each = key.clone();
        for user in 0..=self.max_user.load(SeqCst) {
            each.user = user;
            self.cache.invalidate(&each);
        }
    }

    /// Evicts every entry of one database (all users).
    pub fn flush_db(&self, db: u32) {
        self.db_epochs[db as usize % DB_EPOCHS].fetch_add(1, SeqCst);
        let _ = self.cache.invalidate_entries_if(move |k, _| k.db == db);
    }

    /// Evicts everything.
    pub fn flush_all(&self) {
        self.all_epoch.fetch_add(1, SeqCst);
        self.cache.invalidate_all();
    }

    /// Entries held (approximate, as moka counts).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Weighted bytes held.
    pub fn used_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Configured bound.
    pub fn max_bytes(&self) -> u64 {
        self.options.max_bytes
    }

    /// Entries removed to stay under the byte bound.
    pub fn evictions(&self) -> u64 {
        self.counters.evictions.load(Relaxed)
    }

    /// Entries currently stored compressed.
    pub fn compressed_entries(&self) -> u64 {
        self.counters.compressed.load(Relaxed).max(0) as u64
    }

    fn bucket(&self, key: &CacheKey) -> usize {
        (self.hasher.hash_one((key.db, &key.key)) as usize) & (GENERATION_BUCKETS - 1)
    }

    fn store(&self, bulk: Bytes) -> Stored {
        if bulk.len() < self.options.compress_min_bytes {
            return Stored::Plain(Bytes::copy_from_slice(&bulk));
        }
        match zstd::bulk::compress(&bulk, ZSTD_LEVEL) {
            Ok(data) if data.len() < bulk.len() - bulk.len() / 8 => Stored::Compressed {
                data: data.into(),
                len: bulk.len(),
            },
            _ => Stored::Plain(Bytes::copy_from_slice(&bulk)),
        }
    }
}

/// A seeded multiply-rotate hasher for cache keys: several times cheaper than SipHash on
/// the hit path; the per-process random seed keeps bucket placement unpredictable.
#[derive(Clone)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    fn new() -> KeyHasher {
        KeyHasher {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64) | 1,
        }
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.seed)
    }
}

/// The hasher [`KeyHasher`] builds.
pub struct SeededHasher(u64);

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl SeededHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl std::hash::Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche so that low bits depend on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

fn decompress(data: &[u8], len: usize) -> Option<Bytes> {
    zstd::bulk::decompress(data, len).ok().map(Bytes::from)
}

/// Encodes a payload as the bulk reply L1 stores.
pub fn bulk(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 16);
    write_bulk(&mut out, payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l1() -> L1 {
        L1::new(L1Options {
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(60),
            compress_min_bytes: 256,
        })
    }

    fn key(db: u32, k: &str) -> CacheKey {
        CacheKey {
            user: 0,
            db,
            key: Bytes::copy_from_slice(k.as_bytes()),
        }
    }

    #[test]
    fn insert_then_hit() {
        let l1 = l1();
        let g = l1.generation(&key(0, "a"));
        assert!(l1.insert_if_current(key(0, "a"), g, Cached::Value(bulk(b"1")), None));
        assert_eq!(l1.get(&key(0, "a")), Some(Cached::Value(bulk(b"1"))));
        assert_eq!(l1.get(&key(1, "a")), None);
    }

    #[test]
    fn fetch_that_raced_an_invalidation_is_not_installed() {
        let l1 = l1();
        let g = l1.generation(&key(0, "a"));
        l1.invalidate(&key(0, "a"));
        assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Value(bulk(b"old")), None));
        assert_eq!(l1.get(&key(0, "a")), None);
    }

    #[test]
    fn flushes_stop_in_flight_fetches_and_drop_entries() {
        let l1 = l1();
        let g = l1.generation(&key(3, "a"));
        assert!(l1.insert_if_current(
            key(3, "b"),
            l1.generation(&key(3, "b")),
            Cached::Missing,
            None
        ));
        l1.flush_db(3);
        assert!(!l1.insert_if_current(key(3, "a"), g, Cached::Missing, None));
        assert_eq!(l1.get(&key(3, "b")), None);
        let g = l1.generation(&key(0, "a"));
        l1.flush_all();
        assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, None));
    }

    #[test]
    fn upstream_expiry_caps_the_lifetime() {
        let l1 = l1();
        let past = Instant::now() - Duration::from_millis(1);
        let g = l1.generation(&key(0, "a"));
        assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, Some(past)));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(l1.insert_if_current(key(0, "a"), g, Cached::Missing, Some(soon)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(l1.get(&key(0, "a")), None);
    }

    #[test]
    fn large_values_round_trip_compressed() {
        let l1 = l1();
        let value = bulk(&b"abcdefgh".repeat(1000));
        let g = l1.generation(&key(0, "big"));
        assert!(l1.insert_if_current(key(0, "big"), g, Cached::Value(value.clone()), None));
        assert_eq!(l1.compressed_entries(), 1);
        assert!(l1.used_bytes() < value.len() as u64 / 4);
        assert_eq!(l1.get(&key(0, "big")), Some(Cached::Value(value)));
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let l1 = L1::new(L1Options {
            max_bytes: 1 << 20,
            ttl: Duration::ZERO,
            compress_min_bytes: 256,
        });
        let g = l1.generation(&key(0, "a"));
        assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, None));
    }
}
