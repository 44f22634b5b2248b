//! L1: a byte-bounded moka cache of GET replies keyed by (user, db, key), with per-entry
//! lifetimes capped by the key's upstream TTL, zstd for large values, and generations that
//! keep a fetch which raced with an invalidation from installing its stale result.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::protocol::write_bulk;

mod front;
mod hasher;

use hasher::KeyHasher;

/// Fixed per-entry cost added to key and value bytes by the weigher.
const ENTRY_OVERHEAD: u32 = 96;
/// Number of generation buckets (a power of two).
const GENERATION_BUCKETS: usize = 4096;
/// Number of per-database epochs; databases beyond share slots (flushing more, never less).
const DB_EPOCHS: usize = 64;
/// Values larger than this are served but not cached: compressing, decompressing and copying
/// them would stall the worker thread for milliseconds per hit or fill.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Lock stripes for fills and invalidations.
const STRIPES: usize = 256;
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

impl CacheKey {
    /// The borrowed form used for lookups.
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            user: self.user,
            db: self.db,
            key: &self.key,
        }
    }
}

/// A borrowed [`CacheKey`] for lookups straight from a client's input buffer (hashes and
/// compares like the owned key, so the hit path creates no `Bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    /// See [`CacheKey::user`].
    pub user: u32,
    /// See [`CacheKey::db`].
    pub db: u32,
    /// See [`CacheKey::key`].
    pub key: &'a [u8],
}

impl equivalent::Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, k: &CacheKey) -> bool {
        self.user == k.user && self.db == k.db && self.key == &k.key[..]
    }
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

impl Generation {
    /// The three counters folded into one: they only grow, so two stamps of one key are
    /// equal exactly when no invalidation happened between them.
    fn stamp(&self) -> u64 {
        self.bucket.wrapping_add(self.db).wrapping_add(self.all)
    }
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
    /// Distinguishes this L1's slots in the per-thread front.
    id: u32,
    cache: Cache<CacheKey, Entry, KeyHasher>,
    hasher: KeyHasher,
    buckets: Box<[AtomicU64]>,
    /// Entries installed per generation bucket (changed only under the stripe lock).
    inserts: Box<[AtomicU64]>,
    db_epochs: Box<[AtomicU64]>,
    all_epoch: AtomicU64,
    /// Serialises generation checks + inserts against invalidations of the same keys.
    stripes: Box<[Mutex<()>]>,
    /// Key operations share it; flushes take it alone.
    flush_lock: RwLock<()>,
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

    /// A replaced entry takes the new value's lifetime (moka's default keeps the old one).
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
        static IDS: AtomicU32 = AtomicU32::new(1);
        L1 {
            id: IDS.fetch_add(1, Relaxed),
            cache,
            hasher,
            buckets: (0..GENERATION_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            inserts: (0..GENERATION_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            db_epochs: (0..DB_EPOCHS).map(|_| AtomicU64::new(0)).collect(),
            all_epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            flush_lock: RwLock::new(()),
            max_user: AtomicU32::new(0),
            options,
            counters,
        }
    }

    /// True when the L1 caches anything at all.
    pub fn enabled(&self) -> bool {
        !self.options.ttl.is_zero()
    }

    /// Looks a key up. Expired entries are never returned (the front checks each slot's
    /// expiry; moka checks each entry's expiry against the exact clock on every read).
    pub fn get(&self, key: &KeyRef<'_>) -> Option<Cached> {
        self.read(key, |value| {
            value.map_or(Cached::Missing, |b| Cached::Value(b.clone()))
        })
    }

    /// Like [`L1::get`], but lends the value to `read` instead of returning it: a hit in the
    /// thread's front then copies the reply without touching any shared reference count.
    /// `read` gets the encoded bulk reply, or `None` for a key cached as missing.
    #[inline]
    pub fn read<R>(&self, key: &KeyRef<'_>, read: impl FnOnce(Option<&Bytes>) -> R) -> Option<R> {
        let hash = self.key_hash(key.db, key.key);
        let taken = self.generation_at(hash, key.db).stamp();
        let mut read = Some(read);
        let lend = |v: Option<&Bytes>| (read.take().expect("called once"))(v);
        if let Some(r) = front::read(self.id, hash, key, taken, lend) {
            return Some(r);
        }
        let read = read.expect("front did not call it");
        let entry = self.cache.get(key)?;
        match entry.stored {
            Stored::Plain(b) => {
                front::put(self.id, hash, key, Some(&b), entry.expires_at, taken);
                Some(read(Some(&b)))
            }
            Stored::Missing => {
                front::put(self.id, hash, key, None, entry.expires_at, taken);
                Some(read(None))
            }
            Stored::Compressed { data, len } => Some(read(Some(&decompress(&data, len)?))),
        }
    }

    /// The generation to take before fetching `key` from upstream.
    pub fn generation(&self, key: &CacheKey) -> Generation {
        self.generation_at(self.key_hash(key.db, &key.key), key.db)
    }

    fn generation_at(&self, hash: u64, db: u32) -> Generation {
        Generation {
            bucket: self.buckets[hash as usize & (GENERATION_BUCKETS - 1)].load(SeqCst),
            db: self.db_epochs[db as usize % DB_EPOCHS].load(SeqCst),
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
        if !self.enabled() {
            return false;
        }
        let l1_expiry = Instant::now() + self.options.ttl;
        let expires_at = upstream_expiry.map_or(l1_expiry, |u| u.min(l1_expiry));
        if expires_at <= Instant::now() {
            return false;
        }
        let stored = match value {
            Cached::Missing => Stored::Missing,
            Cached::Value(bulk) if bulk.len() > MAX_ENTRY_BYTES => return false,
            Cached::Value(bulk) => self.store(bulk),
        };
        let compressed = matches!(stored, Stored::Compressed { .. });
        // Copied so that L1 never pins a client's whole input buffer.
        let key = CacheKey {
            key: Bytes::copy_from_slice(&key.key),
            ..key
        };
        let hash = self.key_hash(key.db, &key.key);
        let _flushes = self.flush_lock.read().unwrap_or_else(|p| p.into_inner());
        let _stripe = self.stripe(hash);
        if self.generation_at(hash, key.db) != taken {
            return false;
        }
        self.max_user.fetch_max(key.user, SeqCst);
        self.inserts[hash as usize & (GENERATION_BUCKETS - 1)].fetch_add(1, SeqCst);
        if compressed {
            self.counters.compressed.fetch_add(1, Relaxed);
        }
        self.cache.insert(key, Entry { stored, expires_at });
        true
    }

    /// Evicts one key for every user, before a write is sent. Removal and generation bump
    /// happen under the key's stripe lock, which fills take too: a fetch that started before
    /// this cannot install its result afterwards, and a front slot filled from the removed
    /// entry is left invalid. Returns what [`L1::invalidate_after`] needs when the write's
    /// reply arrives.
    pub fn invalidate(&self, db: u32, key: &[u8]) -> u64 {
        self.evict(db, key, None)
    }

    /// Evicts one key again when the write's reply arrives: a fetch that started after the
    /// first eviction may have read the old value. The removal is skipped when nothing was
    /// installed in the key's bucket since (`seen`), which is the common case.
    pub fn invalidate_after(&self, db: u32, key: &[u8], seen: u64) {
        self.evict(db, key, Some(seen));
    }

    /// Removes the key (unless nothing was installed in its bucket since `seen`), then bumps
    /// its generation; returns the bucket's install count.
    fn evict(&self, db: u32, key: &[u8], seen: Option<u64>) -> u64 {
        let hash = self.key_hash(db, key);
        let bucket = hash as usize & (GENERATION_BUCKETS - 1);
        let _flushes = self.flush_lock.read().unwrap_or_else(|p| p.into_inner());
        let _stripe = self.stripe(hash);
        let inserts = self.inserts[bucket].load(SeqCst);
        if seen != Some(inserts) {
            self.remove_all_users(db, key);
        }
        self.buckets[bucket].fetch_add(1, SeqCst);
        inserts
    }

    fn remove_all_users(&self, db: u32, key: &[u8]) {
        for user in 0..=self.max_user.load(SeqCst) {
            self.cache.invalidate(&KeyRef { user, db, key });
        }
    }

    /// Evicts every entry of one database (all users).
    pub fn flush_db(&self, db: u32) {
        let _all = self.flush_lock.write().unwrap_or_else(|p| p.into_inner());
        let _ = self.cache.invalidate_entries_if(move |k, _| k.db == db);
        self.db_epochs[db as usize % DB_EPOCHS].fetch_add(1, SeqCst);
    }

    /// Evicts everything.
    pub fn flush_all(&self) {
        let _all = self.flush_lock.write().unwrap_or_else(|p| p.into_inner());
        self.cache.invalidate_all();
        self.all_epoch.fetch_add(1, SeqCst);
    }

    fn stripe(&self, hash: u64) -> std::sync::MutexGuard<'_, ()> {
        let stripe = &self.stripes[(hash as usize >> 12) % STRIPES];
        stripe.lock().unwrap_or_else(|p| p.into_inner())
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

    fn key_hash(&self, db: u32, key: &[u8]) -> u64 {
        self.hasher.hash_one((db, key))
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
mod tests;
