//! L1: a byte-bounded store of GET replies keyed by (user, db, key), with per-entry
//! lifetimes capped by the key's upstream TTL, zstd for large values, and generations that
//! keep a fetch which raced with an invalidation from installing its stale result.
//!
//! - `generations`: the invalidation counters and the locks that order fills against them.
//! - [`fences`]: slot and connection epochs that end many entries at once (a Redis Cluster
//!   slot that moved, a node lost or silent, an upstream connection closed).
//! - [`table`]: the store itself: segments of entries, an index, FIFO eviction with a
//!   second chance, expiry checked on every read.
//! - `store`: values as they are accepted and compressed before they enter the table.
//! - `weigh`: what an entry really costs, for the byte bound.
//! - `key`: what identifies an entry, owned and borrowed.
//! - `users`: the user ids an invalidation covers.
//! - [`coalesce`]: concurrent misses of one key share one fetch.
//! - `fill`: a fetched GET/MGET reply and its PTTL into an L1 insert ([`L1::fill`]).
//! - `patterns`: pattern invalidations, registered at once and scanned off the serving
//!   thread; hits on the keys they match are refused meanwhile.
//! - [`namespaces`]: which namespace a key is in, its policy and its figures. A namespace
//!   with its own `max_bytes` has its own table, so its entries and the others' cannot
//!   evict each other; every other key is in the shared store.
//! - `covered`: the keys L1 may hold at all (under a `--tracking bcast` prefix).
//! - [`admission`]: with `--l1-admit-second-miss`, once L1 is crowded, a missed key fills it
//!   only on its second miss.
//!
//! Keys are evicted one at a time by writes ([`L1::invalidate`]), by pattern
//! ([`L1::invalidate_patterns`], `NEARCACHE INVALIDATE`), by database or all at once.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::NamespaceConfig;
use crate::protocol::write_bulk;

pub mod admission;
pub mod coalesce;
mod covered;
mod evict;
pub mod fences;
mod figures;
mod fill;
mod generations;
mod hasher;
mod key;
mod live;
pub mod namespaces;
mod patterns;
mod store;
pub mod table;
mod users;
mod weigh;

pub use coalesce::{Coalescer, Fetched, Flight, Join};
pub use fences::{ConnFence, Fence, Fenced, FilledBy, SlotCause};
pub use figures::L1Figures;
pub use generations::Generation;
pub use key::{CacheKey, KeyRef};
pub use weigh::ENTRY_OVERHEAD;

use fences::SlotEpochs;
use generations::Generations;
pub use hasher::KeyHasher;
use live::Live;
pub use namespaces::{Namespaces, Policy};
use patterns::Pending;
pub use patterns::{Invalidation, MAX_PENDING};
use store::{decompress, Encoder, Install, Prepared, Stored};
use table::{Cause, Put, Removed, Table, Value};
use users::Users;

/// Entries (key and value together) larger than this are served but not cached:
/// compressing, decompressing and copying them would stall the worker thread for
/// milliseconds per hit or fill, and a huge key name (a missing 30 MiB key is a nil entry
/// of 30 MiB) would take a large share of L1 for one entry.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// A value as L1 answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// The encoded bulk reply `$len\r\n...\r\n` (identical in RESP2 and RESP3).
    Value(Bytes),
    /// The key does not exist upstream.
    Missing,
}

/// Options of the L1.
#[derive(Debug, Clone, Copy)]
pub struct L1Options {
    /// Bound on the memory L1 holds: the tables' segments and indexes (entries weigh what
    /// they take there, see [`ENTRY_OVERHEAD`]).
    pub max_bytes: u64,
    /// Longest lifetime of an entry; zero disables the L1.
    pub ttl: Duration,
    /// Values at least this long are stored compressed once their table is crowded.
    pub compress_min_bytes: usize,
    /// Cache keys that do not exist upstream.
    pub cache_nil: bool,
    /// Once a table is crowded, fill it only on a key's second miss (see `admission`).
    pub admit_second_miss: bool,
}

/// The in-process cache.
pub struct L1 {
    /// The shared table, then one per namespace with its own `max_bytes`.
    stores: Vec<Table>,
    namespaces: Arc<Namespaces>,
    hasher: KeyHasher,
    generations: Generations,
    /// Epochs of the Redis Cluster slots (see [`fences`]).
    slots: SlotEpochs,
    /// Keys are in Redis Cluster slots: a fetch's generation takes its key's slot.
    slotted: AtomicBool,
    /// Pattern invalidations registered whose scan is not done.
    pending: Pending,
    /// Entries held per slice of the key space (see [`live`]).
    live: Arc<Live>,
    /// The user ids entries may carry: invalidations cover each of them.
    users: Users,
    /// The databases fetches were taken for (the same kind of set as `users`): an
    /// invalidation that names no database covers each of them.
    dbs: Users,
    /// Compresses and installs large values off the upstream reader.
    encoder: Encoder,
    options: L1Options,
    counters: Arc<L1Counters>,
    /// The keys L1 may hold (see [`covered`]).
    covered: covered::Covered,
    /// The keys missed recently: who is admitted once L1 is crowded (see [`admission`]).
    doorkeeper: admission::Doorkeeper,
}

#[derive(Default)]
struct L1Counters {
    /// Removed by the table to stay under the bound.
    evictions: AtomicU64,
    /// Removed by the table because their time was up.
    expired: AtomicU64,
    /// Removed on request (writes, invalidations, flushes), as the table reports them.
    explicit: AtomicU64,
    /// Removed because a write went through this sidecar.
    written: AtomicU64,
    /// Removed by an invalidation (tracking, bus, NEARCACHE INVALIDATE).
    invalidated: AtomicU64,
    compressed: AtomicI64,
    /// Keys fetched from the upstream that it held (`l2` hits), and did not.
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
}

/// Entries removed from L1, by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evictions {
    /// To stay under `--l1-max-bytes`.
    pub size: u64,
    /// Their time was up (`--l1-ttl` or the key's own TTL).
    pub expired: u64,
    /// A write through this sidecar.
    pub written: u64,
    /// An invalidation from Redis's tracking, the bus, or `NEARCACHE INVALIDATE`.
    pub invalidated: u64,
    /// A flush of L1 or of a database.
    pub flushed: u64,
}

/// Why a key is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A write through this sidecar.
    Written,
    /// An invalidation from elsewhere.
    Invalidated,
}

impl L1 {
    /// Builds an empty L1 with no namespaces.
    pub fn new(options: L1Options) -> L1 {
        L1::with_namespaces(options, &[])
    }

    /// Builds an empty L1 for `namespaces`: the namespaces' own shares are left out of the
    /// shared table's capacity.
    pub fn with_namespaces(options: L1Options, namespaces: &[NamespaceConfig]) -> L1 {
        let counters = Arc::new(L1Counters::default());
        let hasher = KeyHasher::new();
        let live = Arc::new(Live::new());
        let namespaces = Arc::new(Namespaces::new(
            namespaces,
            Policy {
                cache: true,
                ttl: options.ttl,
                cache_nil: options.cache_nil,
                compress_min_bytes: options.compress_min_bytes,
                max_bytes: None,
            },
        ));
        let shares = namespaces.shares();
        let shared = options.max_bytes.saturating_sub(shares.iter().sum());
        let store = |capacity: u64| {
            let (counters, live) = (counters.clone(), live.clone());
            let namespaces = namespaces.clone();
            Table::new(capacity, hasher.clone(), move |r: &Removed<'_>| {
                live.left(r.hash);
                let weight = u32::try_from(r.weight).unwrap_or(u32::MAX);
                namespaces.held(namespaces.of(r.key), -1, weight);
                if r.compressed {
                    counters.compressed.fetch_sub(1, Relaxed);
                }
                let counter = match r.cause {
                    Cause::Size => &counters.evictions,
                    Cause::Expired => &counters.expired,
                    Cause::Explicit => &counters.explicit,
                    Cause::Replaced => return,
                };
                counter.fetch_add(1, Relaxed);
            })
        };
        let stores = std::iter::once(shared).chain(shares).map(store).collect();
        L1 {
            stores,
            namespaces,
            hasher,
            generations: Generations::new(),
            slots: SlotEpochs::new(),
            slotted: AtomicBool::new(false),
            pending: Pending::default(),
            live,
            users: Users::default(),
            dbs: Users::default(),
            encoder: Encoder::new(),
            options,
            counters,
            covered: covered::Covered::default(),
            // Sized for the bound only when it is used (its slots are written when made).
            doorkeeper: admission::Doorkeeper::new(match options.admit_second_miss {
                true => options.max_bytes,
                false => 0,
            }),
        }
    }

    /// The namespaces: which one a key is in, their policies and figures.
    #[inline]
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// The table that holds `key`'s entries.
    #[inline]
    fn store_of(&self, key: &[u8]) -> &Table {
        match self.stores.len() {
            1 => &self.stores[0],
            _ => &self.stores[self.namespaces.store(self.namespaces.of(key))],
        }
    }

    /// Whether reads of `key` may be answered and filled by L1 (its namespace caches, and
    /// it is under a broadcast tracking prefix when there are any).
    #[inline]
    pub fn caches(&self, key: &[u8]) -> bool {
        let ns = &self.namespaces;
        (!ns.bypasses() || ns.policy(ns.of(key)).cache) && self.covers(key)
    }

    /// True when the L1 caches anything at all.
    pub fn enabled(&self) -> bool {
        !self.options.ttl.is_zero()
    }

    /// Looks a key up. Expired entries are never returned (the table checks each entry's
    /// expiry against the clock on every read).
    pub fn get(&self, key: &KeyRef<'_>) -> Option<Cached> {
        self.get_in(key).map(|(cached, _)| cached)
    }

    /// Like [`L1::get`], with the key's namespace (see [`L1::read`]).
    pub fn get_in(&self, key: &KeyRef<'_>) -> Option<(Cached, usize)> {
        self.read(key, |value, namespace| {
            let cached = value.map_or(Cached::Missing, |b| {
                Cached::Value(Bytes::copy_from_slice(b))
            });
            (cached, namespace)
        })
    }

    /// Like [`L1::get`], but lends the value to `read` instead of returning it: `read` runs
    /// inside the lock of the entry's shard and copies the reply out (no allocation, no
    /// reference count; a compressed value is copied out and decompressed after the lock).
    /// `read` gets the encoded bulk reply, or `None` for a key cached as missing, and the
    /// key's namespace (see [`Namespaces::of`]). A key that a pending pattern invalidation
    /// matches is not answered (one atomic load when none is pending), nor is an entry
    /// whose fence no longer holds.
    #[inline]
    pub fn read<R>(
        &self,
        key: &KeyRef<'_>,
        read: impl FnOnce(Option<&[u8]>, usize) -> R,
    ) -> Option<R> {
        if self.pending.any() && self.pending.covers(key.key) {
            return None;
        }
        let hash = self.key_hash(key.db, key.key);
        let ns = self.namespaces.of(key.key);
        let mut read = Some(read);
        let found = self.stores[self.namespaces.store(ns)].read(hash, key, |value, fence| {
            if !self.slots.holds(&fence) {
                return None;
            }
            let mut lend = |v| (read.take().expect("called once"))(v, ns);
            Some(match value {
                Value::Plain(bulk) => Ok(lend(Some(bulk))),
                Value::Missing => Ok(lend(None)),
                Value::Compressed { data, len } => Err((data.to_vec(), len)),
            })
        })??;
        match found {
            Ok(r) => Some(r),
            Err((data, len)) => {
                let plain = decompress(&data, len)?;
                self.promote(hash, ns, key, &data, &plain);
                Some((read.take().expect("not called yet"))(Some(&plain), ns))
            }
        }
    }

    /// Stores a compressed entry that was just read plain (see [`Table::promote`]): values
    /// are compressed to hold more of those rarely read, and one that is read is likely to
    /// be read again, each time paying a decompression.
    fn promote(&self, hash: u64, ns: usize, key: &KeyRef<'_>, data: &[u8], plain: &[u8]) {
        self.live.entered(hash);
        // Not while a pattern invalidation is pending: its scan might have passed the shard
        // the entry would be rewritten into (see `Table::promote`).
        let idle = || !self.pending.any();
        if !self.stores[self.namespaces.store(ns)].promote(hash, key, (data, plain), idle) {
            self.live.left(hash);
            return;
        }
        let weight = weigh::weigh(key.key.len(), &Value::Plain(plain));
        self.namespaces.held(ns, 1, weight);
    }

    /// The generation to take before fetching `key` from upstream (in a Redis Cluster
    /// with its key's slot and the slot's epoch: computed here, on the way upstream, never
    /// on a hit).
    pub fn generation(&self, key: &CacheKey) -> Generation {
        self.dbs.add(key.db);
        let mut taken = self.generations.at(self.key_hash(key.db, &key.key), key.db);
        if self.slotted.load(Relaxed) {
            taken.slot = redis_protocol::redis_keyslot(&key.key);
            taken.slot_epoch = self.slots.at(taken.slot);
        }
        taken
    }

    /// Installs a fetched value unless an invalidation of its key happened since `taken`.
    /// `value` is the encoded bulk reply (or `Missing`); `upstream_expiry` is the upstream
    /// expiry bound, if the key has one. Compresses on the calling thread. Returns whether
    /// the entry was installed.
    pub fn insert_if_current(
        &self,
        key: CacheKey,
        taken: Generation,
        value: Cached,
        upstream_expiry: Option<Instant>,
    ) -> bool {
        self.accept(key, taken, value, upstream_expiry, None)
            .is_some_and(|install| self.install(install))
    }

    /// Like [`L1::insert_if_current`] for a caller that must not block (the upstream reader):
    /// a value to compress is compressed and installed by the encoder thread, with the
    /// generation checked when it is installed; when the encoder's queue is full, it is not
    /// cached. `by`: the connection the value was read on (its closing ends the entry).
    pub fn insert_later(
        self: &Arc<Self>,
        key: CacheKey,
        taken: Generation,
        value: Cached,
        upstream_expiry: Option<Instant>,
        by: Option<FilledBy>,
    ) {
        let Some(install) = self.accept(key, taken, value, upstream_expiry, by) else {
            return;
        };
        if !install.value.compresses() {
            self.install(install);
            return;
        }
        let l1 = self.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        self.encoder.submit(move || {
            let compressed = install.value.compress();
            match runtime {
                // The copy L1 keeps is made on a worker thread (see `Encoder`).
                Some(runtime) => drop(runtime.spawn(async move {
                    l1.install_encoded(install, compressed);
                })),
                None => {
                    l1.install_encoded(install, compressed);
                }
            }
        });
    }

    /// Checks what can be checked before encoding: L1 enabled, lifetime left, key and value
    /// within [`MAX_ENTRY_BYTES`]. A value to compress is copied with its key, so that the
    /// install waiting for the encoder never pins a client's input buffer or an upstream read
    /// buffer; any other is installed at once, and the table copies key and value into its
    /// segments (a copy here would be freed right after).
    pub(crate) fn accept(
        &self,
        key: CacheKey,
        taken: Generation,
        value: Cached,
        upstream_expiry: Option<Instant>,
        by: Option<FilledBy>,
    ) -> Option<Install> {
        if !self.enabled() {
            return None;
        }
        let ns = self.namespaces.of(&key.key);
        let policy = self.namespaces.policy(ns);
        if !policy.cache || !self.covers(&key.key) {
            return None;
        }
        let now = Instant::now();
        let l1_expiry = now + policy.ttl;
        let expires_at = upstream_expiry.map_or(l1_expiry, |u| u.min(l1_expiry));
        let value_len = match &value {
            Cached::Value(b) => b.len(),
            _ => 0,
        };
        if expires_at <= now || key.key.len().saturating_add(value_len) > MAX_ENTRY_BYTES {
            return None;
        }
        // Large values are compressed only once their table is crowded (see
        // `Table::crowded`): with room to spare, a plain value costs memory nobody needs
        // and saves a decompression on every hit.
        let compress_min_bytes = if value_len >= policy.compress_min_bytes
            && self.stores[self.namespaces.store(ns)].crowded(self.key_hash(key.db, &key.key))
        {
            policy.compress_min_bytes
        } else {
            usize::MAX
        };
        let (key, value) = match value {
            Cached::Value(bulk) if bulk.len() < compress_min_bytes => (key, Prepared::Plain(bulk)),
            Cached::Missing => (key, Prepared::Missing),
            value => {
                let key = CacheKey {
                    key: Bytes::copy_from_slice(&key.key),
                    ..key
                };
                (key, Prepared::new(&value, compress_min_bytes))
            }
        };
        Some(Install {
            key,
            taken,
            value,
            expires_at,
            fence: SlotEpochs::fence(taken.slot, taken.slot_epoch, by),
        })
    }

    /// Encodes an accepted value and installs it if its generation is still current.
    pub(crate) fn install(&self, install: Install) -> bool {
        let compressed = install.value.compress();
        self.install_encoded(install, compressed)
    }

    /// Installs an accepted value, with its compressed bytes if it compressed, if its
    /// generation is still current.
    fn install_encoded(&self, install: Install, compressed: Option<Vec<u8>>) -> bool {
        let stored = install.value.store(compressed);
        let compressed = matches!(stored, Stored::Compressed { .. });
        let key = install.key;
        let hash = self.key_hash(key.db, &key.key);
        let _key = self.generations.lock(hash);
        let now = self.generations.at(hash, key.db);
        if !install.taken.unchanged(&now) || !self.slots.holds(&install.fence) {
            return false;
        }
        self.users.add(key.user);
        self.generations.installed(hash);
        if compressed {
            self.counters.compressed.fetch_add(1, Relaxed);
        }
        let value = match &stored {
            Stored::Plain(bulk) => Value::Plain(bulk),
            Stored::Compressed { data, len } => Value::Compressed { data, len: *len },
            Stored::Missing => Value::Missing,
        };
        let put = Put {
            user: key.user,
            db: key.db,
            key: &key.key,
            value,
            expires_at: install.expires_at,
            fence: install.fence,
        };
        self.live.entered(hash);
        let ns = self.namespaces.of(&key.key);
        if !self.stores[self.namespaces.store(ns)].insert(hash, &put) {
            // Too large for its table: nothing entered, nothing will leave.
            self.live.left(hash);
            if compressed {
                self.counters.compressed.fetch_sub(1, Relaxed);
            }
            return false;
        }
        self.namespaces
            .held(ns, 1, weigh::weigh(put.key.len(), &value));
        true
    }

    /// Entries held (expired ones not yet found included).
    pub fn entry_count(&self) -> u64 {
        self.stores.iter().map(Table::len).sum()
    }

    /// Bytes the entries held weigh (see [`ENTRY_OVERHEAD`]).
    pub fn used_bytes(&self) -> u64 {
        self.stores.iter().map(Table::weighed_bytes).sum()
    }

    /// Configured bound.
    pub fn max_bytes(&self) -> u64 {
        self.options.max_bytes
    }

    /// Entries removed to stay under the byte bound.
    pub fn evictions(&self) -> u64 {
        self.counters.evictions.load(Relaxed)
    }

    /// Entries removed, by why. Flushes are what the tables removed on request beyond the
    /// keys evicted one by one (an entry flushed is reported by its table only).
    pub fn evictions_by_reason(&self) -> Evictions {
        let c = &self.counters;
        let (written, invalidated) = (c.written.load(Relaxed), c.invalidated.load(Relaxed));
        Evictions {
            size: c.evictions.load(Relaxed),
            expired: c.expired.load(Relaxed),
            written,
            invalidated,
            flushed: c
                .explicit
                .load(Relaxed)
                .saturating_sub(written + invalidated),
        }
    }

    /// GET/MGET keys fetched from the upstream that it held, and that it did not.
    pub fn l2_counts(&self) -> (u64, u64) {
        let c = &self.counters;
        (c.l2_hits.load(Relaxed), c.l2_misses.load(Relaxed))
    }

    /// Counts a fetched key the upstream held (`true`) or did not.
    pub(crate) fn count_l2(&self, held: bool) {
        let c = &self.counters;
        let counter = if held { &c.l2_hits } else { &c.l2_misses };
        counter.fetch_add(1, Relaxed);
    }

    /// Entries currently stored compressed.
    pub fn compressed_entries(&self) -> u64 {
        self.counters.compressed.load(Relaxed).max(0) as u64
    }

    fn key_hash(&self, db: u32, key: &[u8]) -> u64 {
        self.hasher.hash_one((db, key))
    }
}

/// Encodes a payload as the bulk reply L1 stores.
pub fn bulk(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 16);
    write_bulk(&mut out, payload);
    out.freeze()
}

#[cfg(test)]
mod tests;
