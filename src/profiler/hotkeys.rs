//! The most read keys, approximately, in memory independent of the key space: a count-min
//! sketch ([`ROWS`] × [`COLUMNS`] `u32` atomics) counts sampled reads, and a table of
//! candidates (at least [`TOP_K`], at most [`MAX_TOP`]: `[warm] peer_keys` sizes it, since
//! peers and re-warming ask for that many) keeps the keys whose estimate is highest. Every
//! [`DECAY_EVERY`] samples all counts are halved, so the figures follow recent traffic.
//!
//! The lock is taken by few samples: a key not listed only when its estimate beats the
//! table's lowest count (the floor), and a listed key (a bit per hash bucket says so
//! without the lock) only when its estimate reaches a power of two, so a hot key takes it
//! about log2(count) times per decay period. The table finds a candidate by hash in O(1);
//! only an eviction scans it.
//!
//! Reads are sampled per connection (see [`super::Sampler`], one read in
//! [`super::SAMPLE_EVERY`] on average); counts are reported scaled back by that rate.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

/// Rows of the sketch (independent hash functions).
pub const ROWS: usize = 4;
/// Counters per row, at least (a larger table gets [`COLUMNS_PER_KEY`] per candidate, so
/// the estimates still tell its keys apart: 256 KiB of counters for 1024 candidates).
pub const COLUMNS: usize = 1024;
/// Counters per row for each listed candidate.
pub const COLUMNS_PER_KEY: usize = 16;
/// Candidates kept for the top list, at least.
pub const TOP_K: usize = 64;
/// Candidates kept, at most (with keys of at most [`MAX_LISTED_KEY`] bytes: 2 MiB).
pub const MAX_TOP: usize = 4096;
/// Bits of the lock-free "listed" filter (one per hash bucket).
const LISTED_BITS: usize = 1 << 16;
/// Longer keys are counted in the sketch but never listed (the table holds copies).
pub const MAX_LISTED_KEY: usize = 512;
/// Samples between two halvings of every count.
pub const DECAY_EVERY: u64 = 1 << 15;

/// A key in the top table.
#[derive(Clone)]
struct Candidate {
    hash: u64,
    key: Bytes,
}

/// The candidates, their counts, and where each is by hash.
#[derive(Default)]
struct Top {
    entries: Vec<Candidate>,
    /// The sketch's estimate of each candidate when it was last sampled, apart from the
    /// candidates so that finding the lowest is a scan of packed `u32`s.
    counts: Vec<u32>,
    index: HashMap<u64, usize>,
}

impl Top {
    /// The lowest count (0 for an empty table).
    fn lowest(&self) -> u32 {
        self.counts.iter().copied().min().unwrap_or(0)
    }

    /// Removes up to `most` candidates whose count is `low` (the lowest), calling `gone`
    /// with each one's hash. Evicting the ties together leaves room for as many keys, so
    /// a full table is scanned once per batch of newcomers instead of once per newcomer.
    fn evict_lowest(&mut self, low: u32, most: usize, mut gone: impl FnMut(u64)) {
        let ties: Vec<usize> = (0..self.counts.len())
            .rev()
            .filter(|&i| self.counts[i] == low)
            .take(most.max(1))
            .collect();
        // From the highest position down, so that what `swap_remove` moves in was kept.
        for i in ties {
            let old = self.entries.swap_remove(i);
            self.counts.swap_remove(i);
            self.index.remove(&old.hash);
            gone(old.hash);
            if let Some(moved) = self.entries.get(i) {
                self.index.insert(moved.hash, i);
            }
        }
    }
}

/// A count-min sketch with a top-K table of the keys it estimates highest.
pub struct HotKeys {
    /// `ROWS * width` counters, row after row.
    counters: Box<[AtomicU32]>,
    /// Counters per row: a power of two.
    width: usize,
    /// Samples recorded, for the periodic decay.
    samples: AtomicU64,
    /// The lowest count in a full table: a key estimated below it is not a candidate, so
    /// most samples never take the lock.
    floor: AtomicU32,
    /// The candidates.
    top: Mutex<Top>,
    /// Most candidates.
    capacity: usize,
    /// One bit per hash bucket, set while a key of that bucket is listed (a collision only
    /// makes a key take the lock more or less often).
    listed: Box<[AtomicU64]>,
    /// Samples that took the lock (for tests and tuning).
    locked: AtomicU64,
}

impl Default for HotKeys {
    fn default() -> HotKeys {
        HotKeys::new()
    }
}

impl HotKeys {
    /// An empty sketch listing [`TOP_K`] candidates.
    pub fn new() -> HotKeys {
        HotKeys::with_capacity(TOP_K)
    }

    /// An empty sketch listing `n` candidates (clamped to [`TOP_K`]..=[`MAX_TOP`]).
    pub fn with_capacity(n: usize) -> HotKeys {
        let capacity = n.clamp(TOP_K, MAX_TOP);
        let width = (capacity * COLUMNS_PER_KEY)
            .next_power_of_two()
            .max(COLUMNS);
        HotKeys {
            counters: (0..ROWS * width).map(|_| AtomicU32::new(0)).collect(),
            width,
            samples: AtomicU64::new(0),
            floor: AtomicU32::new(0),
            top: Mutex::default(),
            capacity,
            listed: (0..LISTED_BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            locked: AtomicU64::new(0),
        }
    }

    /// Most candidates listed.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts one sampled read of `key`.
    pub fn record(&self, key: &[u8]) {
        let h = hash(key);
        let estimate = self.increment(h);
        if key.len() <= MAX_LISTED_KEY {
            let offer = match self.is_listed(h) {
                true => estimate.is_power_of_two(),
                false => estimate > self.floor.load(Relaxed),
            };
            if offer {
                self.offer(h, key, estimate);
            }
        }
        // Same trade as `increment`: a lost sample only delays the next decay.
        let samples = self.samples.load(Relaxed) + 1;
        self.samples.store(samples, Relaxed);
        if samples.is_multiple_of(DECAY_EVERY) {
            self.decay();
        }
    }

    /// The sketch's estimate of `key`'s sampled reads (never below the true count since
    /// the last decay).
    pub fn estimate(&self, key: &[u8]) -> u32 {
        columns(hash(key), self.width)
            .enumerate()
            .map(|(row, col)| self.counters[row * self.width + col].load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Up to `n` keys, most read first, with their sampled read counts.
    pub fn top(&self, n: usize) -> Vec<(Bytes, u32)> {
        let (entries, counts) = {
            let top = self.lock();
            (top.entries.clone(), top.counts.clone())
        };
        // The table keeps the estimate of a key's last sample: ask the sketch again.
        let mut top: Vec<(Bytes, u32)> = entries
            .into_iter()
            .zip(counts)
            .map(|(c, count)| {
                let count = count.max(self.estimate(&c.key));
                (c.key, count)
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// Forgets every count.
    pub fn reset(&self) {
        let mut top = self.lock();
        self.counters.iter().for_each(|c| c.store(0, Relaxed));
        *top = Top::default();
        self.listed.iter().for_each(|w| w.store(0, Relaxed));
        self.floor.store(0, Relaxed);
    }

    /// Samples that took the table's lock since start.
    pub fn locked_samples(&self) -> u64 {
        self.locked.load(Relaxed)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Top> {
        self.top.lock()
    }

    fn is_listed(&self, hash: u64) -> bool {
        let bit = hash as usize % LISTED_BITS;
        self.listed[bit / 64].load(Relaxed) & (1 << (bit % 64)) != 0
    }

    fn set_listed(&self, hash: u64, on: bool) {
        let bit = hash as usize % LISTED_BITS;
        let word = &self.listed[bit / 64];
        match on {
            true => word.fetch_or(1 << (bit % 64), Relaxed),
            false => word.fetch_and(!(1 << (bit % 64)), Relaxed),
        };
    }

    /// Adds one to the counter of the key hashed to `hash` in every row (saturating); returns the new estimate.
    /// A load and a store, not a locked read-modify-write: two threads sampling the same
    /// counter at the same instant may lose one count, which an approximate figure can
    /// afford, and a sample costs a third as much.
    fn increment(&self, hash: u64) -> u32 {
        columns(hash, self.width)
            .enumerate()
            .map(|(row, col)| {
                let c = &self.counters[row * self.width + col];
                let after = c.load(Relaxed).saturating_add(1);
                c.store(after, Relaxed);
                after
            })
            .min()
            .unwrap_or(0)
    }

    /// Puts `key` in the table (or updates it), evicting the lowest candidate when full.
    #[cold]
    fn offer(&self, hash: u64, key: &[u8], estimate: u32) {
        let mut guard = self.lock();
        self.locked.fetch_add(1, Relaxed);
        let top = &mut *guard;
        let new = || Candidate {
            hash,
            key: Bytes::copy_from_slice(key),
        };
        let floor = self.floor.load(Relaxed);
        if let Some(&i) = top.index.get(&hash) {
            if top.entries[i].key != key {
                return; // another key with the same hash: this one is not listed
            }
            let was = top.counts[i];
            top.counts[i] = was.max(estimate);
            self.set_listed(hash, true);
            if was > floor {
                return;
            }
        } else {
            if top.entries.len() >= self.capacity {
                let low = top.lowest();
                if low >= estimate {
                    return;
                }
                top.evict_lowest(low, self.capacity / 8, |old| self.set_listed(old, false));
            }
            top.index.insert(hash, top.entries.len());
            top.entries.push(new());
            top.counts.push(estimate);
            self.set_listed(hash, true);
        }
        if top.entries.len() == self.capacity {
            self.floor.store(top.lowest(), Relaxed);
        }
    }

    /// Halves every count: what was read long ago fades.
    fn decay(&self) {
        let mut guard = self.lock();
        let top = &mut *guard;
        for c in self.counters.iter() {
            // Concurrent increments may be lost here; the sketch is approximate anyway.
            c.store(c.load(Relaxed) / 2, Relaxed);
        }
        top.counts.iter_mut().for_each(|c| *c /= 2);
        let (entries, counts) = (
            std::mem::take(&mut top.entries),
            std::mem::take(&mut top.counts),
        );
        for (c, count) in entries.into_iter().zip(counts) {
            match count {
                0 => self.set_listed(c.hash, false),
                _ => {
                    top.entries.push(c);
                    top.counts.push(count);
                }
            }
        }
        top.index = top
            .entries
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash, i))
            .collect();
        let floor = match top.entries.len() == self.capacity {
            true => top.lowest(),
            false => 0,
        };
        self.floor.store(floor, Relaxed);
    }
}

/// The column of a key hashed to `h` in each row: double hashing.
fn columns(h: u64, width: usize) -> impl Iterator<Item = usize> {
    let (h1, h2) = (h as u32 as usize, ((h >> 32) as usize) | 1);
    (0..ROWS).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % width)
}

/// A multiply-rotate hash over 8-byte words with a final avalanche (fixed seed: the
/// sketch's placement need not be secret, a collision only overstates a count).
fn hash(key: &[u8]) -> u64 {
    const M: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(M);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(26) ^ u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .wrapping_mul(M);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(26) ^ u64::from_le_bytes(last)).wrapping_mul(M);
    }
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_stream_puts_the_hot_key_first_with_its_count() {
        let hot = HotKeys::new();
        for i in 0..5000u32 {
            hot.record(format!("cold:{i}").as_bytes());
            if i % 2 == 0 {
                hot.record(b"hot");
            }
            if i % 10 == 0 {
                hot.record(b"warm");
            }
        }
        let top = hot.top(3);
        assert_eq!(&top[0].0[..], b"hot");
        // Never below the truth; 5000 other keys over 1024 columns add a few at most.
        assert!((2500..2520).contains(&top[0].1), "{top:?}");
        assert_eq!(&top[1].0[..], b"warm");
        assert!((500..520).contains(&top[1].1), "{top:?}");
        assert!(top[2].1 < 20, "{top:?}");
    }

    #[test]
    fn estimates_never_undercount() {
        let hot = HotKeys::new();
        for i in 0..3000u32 {
            for _ in 0..(i % 5) {
                hot.record(&i.to_le_bytes());
            }
        }
        for i in 0..3000u32 {
            assert!(hot.estimate(&i.to_le_bytes()) >= i % 5);
        }
    }

    #[test]
    fn counts_halve_every_decay_period() {
        let hot = HotKeys::new();
        for _ in 0..DECAY_EVERY - 1 {
            hot.record(b"k");
        }
        assert_eq!(hot.estimate(b"k"), (DECAY_EVERY - 1) as u32);
        hot.record(b"k");
        assert_eq!(hot.estimate(b"k"), (DECAY_EVERY / 2) as u32);
        assert_eq!(hot.top(1)[0].1, (DECAY_EVERY / 2) as u32);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_highest() {
        let hot = HotKeys::new();
        for i in 0..1000u32 {
            for _ in 0..=(i / 100) {
                hot.record(format!("k{i}").as_bytes());
            }
        }
        let top = hot.top(usize::MAX);
        // Ties for the lowest count leave together (an eighth of the table at most).
        assert!(
            (TOP_K - TOP_K / 8..=TOP_K).contains(&top.len()),
            "{}",
            top.len()
        );
        assert!(top.iter().all(|(_, c)| *c >= 9), "{top:?}");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn a_larger_table_lists_the_hottest_keys_and_stays_bounded() {
        let hot = HotKeys::with_capacity(1024);
        assert_eq!(hot.capacity(), 1024);
        assert_eq!(HotKeys::with_capacity(1 << 20).capacity(), MAX_TOP);
        assert_eq!(HotKeys::with_capacity(1).capacity(), TOP_K);
        // 900 keys read 10 times each among 10000 keys read once (no decay meanwhile).
        for round in 0..10u32 {
            for i in 0..900u32 {
                hot.record(format!("hot:{i}").as_bytes());
            }
            for i in 0..1000u32 {
                hot.record(format!("cold:{}", round * 1000 + i).as_bytes());
            }
        }
        let top = hot.top(usize::MAX);
        assert_eq!(top.len(), 1024);
        let listed_hot = top.iter().filter(|(k, _)| k.starts_with(b"hot:")).count();
        assert!(listed_hot >= 890, "{listed_hot} of 900 hot keys listed");
        // The hot keys come first (a cold key colliding in every row may slip in).
        let cold_first = top[..900].iter().filter(|(k, _)| k.starts_with(b"cold:"));
        assert!(cold_first.count() <= 10);
    }

    #[test]
    fn most_samples_of_a_skewed_stream_do_not_take_the_lock() {
        let hot = HotKeys::with_capacity(1024);
        let mut samples = 0u64;
        for _ in 0..200 {
            for i in 0..500u32 {
                hot.record(format!("k{i}").as_bytes());
                samples += 1;
            }
        }
        let locked = hot.locked_samples();
        assert!(
            locked * 20 < samples,
            "{locked} of {samples} samples took the lock"
        );
    }

    #[test]
    fn long_keys_are_counted_not_listed_and_reset_forgets() {
        let hot = HotKeys::new();
        let long = vec![b'x'; MAX_LISTED_KEY + 1];
        hot.record(&long);
        assert_eq!(hot.estimate(&long), 1);
        assert!(hot.top(10).is_empty());
        hot.record(b"a");
        assert_eq!(hot.top(10).len(), 1);
        hot.reset();
        assert!(hot.top(10).is_empty());
        assert_eq!(hot.estimate(b"a"), 0);
    }
}
