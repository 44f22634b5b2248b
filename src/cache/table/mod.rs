//! L1's own store: entries written into large segments, found through a small index, with
//! no heap allocation and no timer per entry (what moka cost, 500 bytes per entry, was
//! the reason: see `docs/performance.md`, "L1 store candidates").
//!
//! - Shards by key hash, each behind a mutex: a lookup locks one shard, probes its index,
//!   compares the key in place, sets the entry's accessed bit and lends the value to the
//!   caller (who copies the reply out) before unlocking.
//! - Per shard, segments of `segment_bytes` (an entry larger than that gets a segment of
//!   its own, of its exact size) hold entries appended as `[header][key][value]`; the
//!   header (see `segment`) has the lengths, the expiry, the fence, user, db and flags.
//!   The index is a `hashbrown::HashTable` of bare locations (segment, offset) hashed by
//!   the key they point at: about 20 bytes per entry.
//! - Eviction is FIFO over segments with a second chance (CLOCK at segment granularity, as
//!   in Segcache): when the shard's share of the bound is reached, its oldest segment is
//!   retired: the live entries read since they were written and not expired move to its
//!   start (bit cleared) and it becomes the head; the others leave the index (cause
//!   [`Cause::Size`], or [`Cause::Expired`] if their time was up). A replaced or removed
//!   entry is marked dead in place; its bytes come back when its segment is retired.
//! - The bound counts what the shard really holds: its segments' bytes and its index.
//! - Expiry is checked on every read: an expired entry is never returned, and is removed
//!   (cause `Expired`) when found.
//! - `promote`: a compressed entry that was read is rewritten plain in its place.
//!
//! Every removal is told to one listener, under the shard's lock (it must not take the
//! table's locks).

use std::hash::BuildHasher;
use std::time::Instant;

use parking_lot::Mutex;

use super::{Fence, KeyHasher, KeyRef};

mod promote;
mod segment;
mod shard;

pub use segment::HEADER;
use segment::{fits, Header, COMPRESSED, MAX_KEY, MISSING};
use shard::Shard;

/// What the index costs per entry, counted in each entry's weight: an 8-byte location
/// and a control byte, in a table that grows to twice its size once half full with live
/// entries and removed ones (hashbrown's policy; an evicting cache removes all the time),
/// so at 36-72% load: 12-25 bytes, about 20 measured.
pub const INDEX_SHARE: u64 = 20;

/// Most shards (a power of two).
const MAX_SHARDS: usize = 32;
/// Least capacity per shard: below it there are fewer shards (an entry up to half a
/// shard's share is held, so this keeps the largest L1 entry, `MAX_ENTRY_BYTES`, in reach).
const MIN_SHARD_BYTES: u64 = 8 << 20;
/// Largest regular segment.
const MAX_SEGMENT: u64 = 1 << 20;
/// Smallest regular segment.
const MIN_SEGMENT: u64 = 4 << 10;
/// Regular segments per shard at least (when the bound allows): FIFO eviction retires one
/// segment at a time, so this bounds the share of a shard evicted at once, and the share
/// that stands empty after a retirement (16 left 7% of the bound unused with 1 KiB values).
const SEGMENTS_PER_SHARD: u64 = 64;

/// Why an entry left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its segment was retired to stay under the bound.
    Size,
    /// Its time was up.
    Expired,
    /// Removed on request (one key, a predicate, everything).
    Explicit,
    /// A new entry of the same key took its place.
    Replaced,
}

/// An entry leaving the table, as the listener sees it.
#[derive(Debug)]
pub struct Removed<'a> {
    /// Its user.
    pub user: u32,
    /// Its database.
    pub db: u32,
    /// Its key.
    pub key: &'a [u8],
    /// The hash of (db, key) (see [`Table::hash`]).
    pub hash: u64,
    /// Its weight (see [`weight_of`]).
    pub weight: u64,
    /// Whether its value was stored compressed.
    pub compressed: bool,
    /// Why it left.
    pub cause: Cause,
}

/// A value as the table holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// The key does not exist upstream.
    Missing,
    /// The encoded reply.
    Plain(&'a [u8]),
    /// zstd of an encoded reply of `len` bytes.
    Compressed {
        /// The compressed bytes.
        data: &'a [u8],
        /// The original length.
        len: usize,
    },
}

impl Value<'_> {
    /// The bytes an entry stores for it (a compressed value's length prefix included).
    pub fn stored_len(&self) -> usize {
        match self {
            Value::Missing => 0,
            Value::Plain(v) => v.len(),
            Value::Compressed { data, .. } => 4 + data.len(),
        }
    }
}

/// An entry to insert.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
    /// Its user.
    pub user: u32,
    /// Its database.
    pub db: u32,
    /// Its key.
    pub key: &'a [u8],
    /// Its value.
    pub value: Value<'a>,
    /// When it stops being served.
    pub expires_at: Instant,
    /// What it was filled under (see `fences`).
    pub fence: Fence,
}

/// The weight of an entry with `key_len` bytes of key and `stored_len` bytes of value (see
/// [`Value::stored_len`]): what the table pays for it.
pub const fn weight_of(key_len: usize, stored_len: usize) -> u64 {
    (HEADER + key_len + stored_len) as u64 + INDEX_SHARE
}

fn weight(header: &Header) -> u64 {
    weight_of(header.key_len as usize, header.value_len as usize)
}

/// What every shard shares: sizes, the clock's epoch, the hasher, the listener.
struct Ctx {
    /// Bound per shard.
    capacity: u64,
    segment_bytes: usize,
    epoch: Instant,
    hasher: KeyHasher,
    listener: Box<dyn Fn(&Removed<'_>) + Send + Sync>,
}

impl Ctx {
    /// Microseconds since the epoch.
    #[inline]
    fn now(&self) -> u64 {
        self.micros(Instant::now())
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The store (see the module docs).
pub struct Table {
    shards: Box<[Mutex<Shard>]>,
    ctx: Ctx,
}

impl Table {
    /// A table holding at most `capacity` bytes (segments and index), hashing keys with
    /// `hasher`, telling `listener` of every entry that leaves.
    pub fn new(
        capacity: u64,
        hasher: KeyHasher,
        listener: impl Fn(&Removed<'_>) + Send + Sync + 'static,
    ) -> Table {
        let shards = (capacity / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS as u64);
        let shards = 1usize << shards.ilog2();
        let per_shard = capacity / shards as u64;
        let segment = (per_shard / SEGMENTS_PER_SHARD)
            .clamp(MIN_SEGMENT, MAX_SEGMENT)
            .next_power_of_two()
            .min(MAX_SEGMENT);
        Table {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            ctx: Ctx {
                capacity: per_shard,
                segment_bytes: segment as usize,
                epoch: Instant::now(),
                hasher,
                listener: Box::new(listener),
            },
        }
    }

    /// The hash every call takes: of (db, key), with the table's hasher.
    #[inline]
    pub fn hash(&self, db: u32, key: &[u8]) -> u64 {
        self.ctx.hasher.hash_one((db, key))
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // Bits the index does not use for its buckets (low) or control bytes (top 7).
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    /// Stores `put` (of key hash `hash`), replacing an entry of the same key; false when
    /// it cannot be held (larger than half a shard's share of the bound, a key over 16 MiB,
    /// a user id or database past 65535): an entry of the same key is removed then all the
    /// same, so that an older value is never served in place of one that did not fit.
    pub fn insert(&self, hash: u64, put: &Put<'_>) -> bool {
        let stored = put.value.stored_len();
        let len = HEADER + put.key.len() + stored;
        if put.key.len() > MAX_KEY || len as u64 > self.ctx.capacity / 2 || !fits(put.user, put.db)
        {
            let mut shard = self.shard(hash).lock();
            if let Some(at) = shard.find(hash, put.user, put.db, put.key) {
                shard.remove(&self.ctx, hash, at, Cause::Replaced);
            }
            return false;
        }
        let (flags, value_len) = match put.value {
            Value::Missing => (MISSING, 0),
            Value::Plain(v) => (0, v.len()),
            Value::Compressed { data, .. } => (COMPRESSED, 4 + data.len()),
        };
        let header = Header {
            key_len: put.key.len() as u32,
            flags,
            value_len: value_len as u32,
            expires: self.ctx.micros(put.expires_at),
            fence: put.fence.to_bytes(),
            user: put.user,
            db: put.db,
        };
        let mut shard = self.shard(hash).lock();
        if let Some(at) = shard.find(hash, put.user, put.db, put.key) {
            shard.remove(&self.ctx, hash, at, Cause::Replaced);
        }
        let written = shard.append(&self.ctx, hash, len, |entry| {
            header.write(entry);
            let (key, value) = entry[HEADER..].split_at_mut(put.key.len());
            key.copy_from_slice(put.key);
            match put.value {
                Value::Missing => {}
                Value::Plain(v) => value.copy_from_slice(v),
                Value::Compressed { data, len } => {
                    value[..4].copy_from_slice(&(len as u32).to_le_bytes());
                    value[4..].copy_from_slice(data);
                }
            }
        });
        written.is_some()
    }

    /// Lends `key`'s value and fence to `read` (inside the shard's lock: copy what is
    /// needed and return) and marks the entry read. `None` when it is not held or its
    /// time is up (it is then removed).
    #[inline]
    pub fn read<R>(
        &self,
        hash: u64,
        key: &KeyRef<'_>,
        read: impl FnOnce(Value<'_>, Fence) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(hash).lock();
        let at = shard.find(hash, key.user, key.db, key.key)?;
        let header = Header::read(shard.entry(at));
        if header.expires <= self.ctx.now() {
            shard.remove(&self.ctx, hash, at, Cause::Expired);
            return None;
        }
        shard.touch(at);
        let entry = shard.entry(at);
        let value = &entry[HEADER + header.key_len as usize..header.len()];
        let value = if header.flags & MISSING != 0 {
            Value::Missing
        } else if header.flags & COMPRESSED != 0 {
            let mut len = [0u8; 4];
            len.copy_from_slice(&value[..4]);
            Value::Compressed {
                data: &value[4..],
                len: u32::from_le_bytes(len) as usize,
            }
        } else {
            Value::Plain(value)
        };
        Some(read(value, Fence::from_bytes(header.fence)))
    }

    /// Whether `key` is held and its time not up (not counted as a read).
    pub fn contains(&self, hash: u64, key: &KeyRef<'_>) -> bool {
        let shard = self.shard(hash).lock();
        shard
            .find(hash, key.user, key.db, key.key)
            .is_some_and(|at| Header::read(shard.entry(at)).expires > self.ctx.now())
    }

    /// Removes `key` (cause `Explicit`); whether it was held.
    pub fn remove(&self, hash: u64, key: &KeyRef<'_>) -> bool {
        let mut shard = self.shard(hash).lock();
        let Some(at) = shard.find(hash, key.user, key.db, key.key) else {
            return false;
        };
        shard.remove(&self.ctx, hash, at, Cause::Explicit);
        true
    }

    /// Removes every entry for which `pred(user, db, key)` holds (cause `Explicit`).
    pub fn remove_if(&self, mut pred: impl FnMut(u32, u32, &[u8]) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let doomed: Vec<(u64, u64)> = shard
                .live()
                .filter(|(_, h, entry)| {
                    pred(h.user, h.db, &entry[HEADER..HEADER + h.key_len as usize])
                })
                .map(|(at, h, entry)| {
                    let key = &entry[HEADER..HEADER + h.key_len as usize];
                    (self.hash(h.db, key), at)
                })
                .collect();
            for (hash, at) in doomed {
                shard.remove(&self.ctx, hash, at, Cause::Explicit);
            }
        }
    }

    /// Removes everything (cause `Explicit`) and frees the memory.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().clear(&self.ctx);
        }
    }

    /// Shards (for [`Table::keys_in`]).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The segment ids shard `shard` uses now (for [`Table::keys_in`]).
    pub fn segments(&self, shard: usize) -> Vec<usize> {
        self.shards[shard].lock().segment_ids()
    }

    /// Calls `each` with the key of every live entry in segment `segment` of shard
    /// `shard` (under the shard's lock: a pass over the table one segment at a time keeps
    /// each lock short).
    pub fn keys_in(&self, shard: usize, segment: usize, mut each: impl FnMut(KeyRef<'_>)) {
        let shard = self.shards[shard].lock();
        for (h, entry) in shard.live_in(segment) {
            each(KeyRef {
                user: h.user,
                db: h.db,
                key: &entry[HEADER..HEADER + h.key_len as usize],
            });
        }
    }

    /// Entries held (expired ones not yet found included).
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().len() as u64).sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weights of the entries held.
    pub fn weighed_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().weighed).sum()
    }

    /// What the table holds in memory: segments and indexes.
    pub fn footprint(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().footprint()).sum()
    }

    /// Whether the live entries of the shard of key hash `hash` weigh at least three
    /// quarters of its share of the bound: past it, inserts evict, and storing large values
    /// compressed buys entries (below it, compressing them only costs every hit a
    /// decompression). Live weight, not the segments allocated: replaced and removed
    /// entries fill segments until eviction reaches them, in a table with room to spare.
    pub fn crowded(&self, hash: u64) -> bool {
        self.shard(hash).lock().weighed >= self.ctx.capacity / 4 * 3
    }

    /// The bound (each shard's share times the shards).
    pub fn capacity(&self) -> u64 {
        self.ctx.capacity * self.shards.len() as u64
    }

    /// The size of a regular segment.
    pub fn segment_bytes(&self) -> usize {
        self.ctx.segment_bytes
    }
}

#[cfg(test)]
mod tests;
