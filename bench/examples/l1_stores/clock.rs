//! A prototype, for the comparison only: a byte-bounded CLOCK store. Sixteen shards, each a
//! hashbrown table of slot numbers (4 bytes and a control byte per entry) over a vector of
//! slots (the entry's pointer and a referenced bit); a lookup takes the shard's read lock and
//! sets the bit, an insert takes the write lock and sweeps the hand past referenced entries
//! (clearing their bit) to the first unreferenced one until the new entry fits.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use hashbrown::HashTable;
use nearcache::cache::KeyHasher;
use parking_lot::RwLock;

use super::stores::{Packed, Store};

const SHARDS: usize = 16;

/// The CLOCK store.
pub struct Clock {
    shards: Box<[RwLock<Shard>]>,
    hasher: KeyHasher,
}

struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    hand: usize,
    used: u64,
    capacity: u64,
    overhead: u64,
}

struct Slot {
    entry: Option<Packed>,
    referenced: AtomicBool,
}

impl Clock {
    /// A store of `capacity` bytes, each entry weighing its payload plus `overhead`.
    pub fn new(capacity: u64, overhead: u64, entries: usize) -> Clock {
        let per = entries / SHARDS + 1;
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashTable::with_capacity(per),
                    slots: Vec::with_capacity(per),
                    free: Vec::new(),
                    hand: 0,
                    used: 0,
                    capacity: capacity / SHARDS as u64,
                    overhead,
                })
            })
            .collect();
        Clock {
            shards,
            hasher: KeyHasher::new(),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 40) as usize % SHARDS]
    }
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        let found = self.table.find(hash, |&i| {
            slots[i as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.key() == key)
        });
        found.map(|&i| i as usize)
    }

    fn weight(&self, p: &Packed) -> u64 {
        p.payload() as u64 + self.overhead
    }

    /// Removes the first unreferenced entry from the hand on; false when empty.
    fn evict(&mut self, hasher: &KeyHasher) -> bool {
        if self.table.is_empty() {
            return false;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let at = self.hand;
            self.hand += 1;
            let slot = &mut self.slots[at];
            let Some(entry) = &slot.entry else { continue };
            if slot.referenced.swap(false, Relaxed) {
                continue;
            }
            let hash = hasher.hash_one(entry.key());
            if let Ok(found) = self.table.find_entry(hash, |&i| i as usize == at) {
                found.remove();
            }
            let w = entry.payload() as u64 + self.overhead;
            self.used -= w;
            self.slots[at].entry = None;
            self.free.push(at as u32);
            return true;
        }
    }
}

impl Store for Clock {
    fn get(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash).read();
        let at = shard.find(hash, key)?;
        let slot = &shard.slots[at];
        if !slot.referenced.load(Relaxed) {
            slot.referenced.store(true, Relaxed);
        }
        slot.entry.as_ref()?.live_len()
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let p = Packed::new(key, value);
        let hash = self.hasher.hash_one(key);
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        let w = shard.weight(&p);
        if let Some(at) = shard.find(hash, key) {
            let old = shard.slots[at].entry.replace(p);
            let old = old.map_or(0, |o| shard.weight(&o));
            shard.used = shard.used - old + w;
        } else {
            if w > shard.capacity {
                return;
            }
            while shard.used + w > shard.capacity && shard.evict(&self.hasher) {}
            let at = match shard.free.pop() {
                Some(at) => at as usize,
                None => {
                    shard.slots.push(Slot {
                        entry: None,
                        referenced: AtomicBool::new(false),
                    });
                    shard.slots.len() - 1
                }
            };
            shard.slots[at].entry = Some(p);
            shard.used += w;
            let (slots, hasher) = (&shard.slots, &self.hasher);
            shard.table.insert_unique(hash, at as u32, |&i| {
                slots[i as usize]
                    .entry
                    .as_ref()
                    .map_or(0, |e| hasher.hash_one(e.key()))
            });
        }
    }

    fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().table.len() as u64)
            .sum()
    }

    fn own_bytes(&self) -> Option<u64> {
        let bytes = self.shards.iter().map(|s| {
            let s = s.read();
            s.table.allocation_size()
                + s.slots.capacity() * std::mem::size_of::<Slot>()
                + s.free.capacity() * 4
        });
        Some(bytes.sum::<usize>() as u64)
    }
}
