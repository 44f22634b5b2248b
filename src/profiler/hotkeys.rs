//! The most read keys, approximately, in memory independent of the key space: a count-min
//! sketch ([`ROWS`] × [`COLUMNS`] `u32` atomics) counts sampled reads, and a small table of
//! [`TOP_K`] candidates keeps the keys whose estimate is highest. Every [`DECAY_EVERY`]
//! samples all counts are halved, so the figures follow recent traffic.
//!
//! Reads are sampled per connection (see [`super::Sampler`], one read in
//! [`super::SAMPLE_EVERY`] on average); counts are reported scaled back by that rate.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use bytes::Bytes;

/// Rows of the sketch (independent hash functions).
pub const ROWS: usize = 4;
/// Counters per row.
pub const COLUMNS: usize = 1024;
/// Candidates kept for the top list.
pub const TOP_K: usize = 64;
/// Longer keys are counted in the sketch but never listed (the table holds copies).
pub const MAX_LISTED_KEY: usize = 512;
/// Samples between two halvings of every count.
pub const DECAY_EVERY: u64 = 1 << 15;

/// A key in the top table.
#[derive(Clone)]
struct Candidate {
    hash: u64,
    key: Bytes,
    /// The sketch's estimate when the key was last sampled.
    count: u32,
}

/// A count-min sketch with a top-K table of the keys it estimates highest.
pub struct HotKeys {
    /// `ROWS * COLUMNS` counters, row after row.
    counters: Box<[AtomicU32]>,
    /// Samples recorded, for the periodic decay.
    samples: AtomicU64,
    /// The lowest count in a full table: a key estimated below it is not a candidate, so
    /// most samples never take the lock.
    floor: AtomicU32,
    /// The candidates, found by hash first.
    top: Mutex<Vec<Candidate>>,
}

impl Default for HotKeys {
    fn default() -> HotKeys {
        HotKeys::new()
    }
}

impl HotKeys {
    /// An empty sketch.
    pub fn new() -> HotKeys {
        HotKeys {
            counters: (0..ROWS * COLUMNS).map(|_| AtomicU32::new(0)).collect(),
            samples: AtomicU64::new(0),
            floor: AtomicU32::new(0),
            top: Mutex::new(Vec::with_capacity(TOP_K)),
        }
    }

    /// Counts one sampled read of `key`.
    pub fn record(&self, key: &[u8]) {
        let h = hash(key);
        let estimate = self.increment(h);
        if key.len() <= MAX_LISTED_KEY && estimate > self.floor.load(Relaxed) {
            self.offer(h, key, estimate);
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
        columns(hash(key))
            .enumerate()
            .map(|(row, col)| self.counters[row * COLUMNS + col].load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Up to `n` keys, most read first, with their sampled read counts.
    pub fn top(&self, n: usize) -> Vec<(Bytes, u32)> {
        let top = self.top.lock().expect("hot keys lock").clone();
        // The table keeps the estimate of a key's last sample: ask the sketch again.
        let mut top: Vec<(Bytes, u32)> = top
            .into_iter()
            .map(|c| {
                let count = c.count.max(self.estimate(&c.key));
                (c.key, count)
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    /// Forgets every count.
    pub fn reset(&self) {
        let mut top = self.top.lock().expect("hot keys lock");
        self.counters.iter().for_each(|c| c.store(0, Relaxed));
        top.clear();
        self.floor.store(0, Relaxed);
    }

    /// Adds one to the counter of the key hashed to `hash` in every row (saturating); returns the new estimate.
    /// A load and a store, not a locked read-modify-write: two threads sampling the same
    /// counter at the same instant may lose one count, which an approximate figure can
    /// afford, and a sample costs a third as much.
    fn increment(&self, hash: u64) -> u32 {
        columns(hash)
            .enumerate()
            .map(|(row, col)| {
                let c = &self.counters[row * COLUMNS + col];
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
        let mut top = self.top.lock().expect("hot keys lock");
        let new = || Candidate {
            hash,
            key: Bytes::copy_from_slice(key),
            count: estimate,
        };
        if let Some(c) = top.iter_mut().find(|c| c.hash == hash && c.key == key) {
            c.count = c.count.max(estimate);
        } else if top.len() < TOP_K {
            top.push(new());
        } else {
            let (lowest, _) = top
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.count)
                .expect("a full table");
            if top[lowest].count < estimate {
                top[lowest] = new();
            }
        }
        if top.len() == TOP_K {
            let floor = top.iter().map(|c| c.count).min().unwrap_or(0);
            self.floor.store(floor, Relaxed);
        }
    }

    /// Halves every count: what was read long ago fades.
    fn decay(&self) {
        let mut top = self.top.lock().expect("hot keys lock");
        for c in self.counters.iter() {
            // Concurrent increments may be lost here; the sketch is approximate anyway.
            c.store(c.load(Relaxed) / 2, Relaxed);
        }
        top.iter_mut().for_each(|c| c.count /= 2);
        top.retain(|c| c.count > 0);
        let floor = match top.len() {
            TOP_K => top.iter().map(|c| c.count).min().unwrap_or(0),
            _ => 0,
        };
        self.floor.store(floor, Relaxed);
    }
}

/// The column of a key hashed to `h` in each row: double hashing.
fn columns(h: u64) -> impl Iterator<Item = usize> {
    let (h1, h2) = (h as u32 as usize, ((h >> 32) as usize) | 1);
    (0..ROWS).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % COLUMNS)
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
        assert_eq!(top.len(), TOP_K);
        assert!(top.iter().all(|(_, c)| *c >= 9), "{top:?}");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
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
