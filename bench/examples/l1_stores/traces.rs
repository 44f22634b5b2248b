//! The request traces the hit ratios are measured on, generated from a fixed seed so every
//! candidate sees the same requests: key ids, where ids `0..universe` are the Zipf ranks'
//! keys and ids from `universe` on are one-time scan keys.

#[path = "../../src/dist.rs"]
#[allow(dead_code)]
mod dist;

use dist::{XorShift, Zipf};

/// The three traces.
pub const NAMES: [&str; 3] = ["Zipf 0.99", "Zipf + 20% scan", "shifting Zipf"];

/// Requests in a block of the scan trace, and the sequential one-time keys that open it.
const SCAN_BLOCK: usize = 10_000;
const SCAN_RUN: usize = 2_000;

/// The shifting trace rotates the ranks this many times over its length.
const SHIFTS: usize = 10;

/// The sampler all three traces draw ranks from.
pub struct Traces {
    zipf: Zipf,
    universe: u64,
    fit: u64,
}

impl Traces {
    /// Zipf 0.99 over `universe` keys; `fit` entries fit in the bound.
    pub fn new(universe: u64, fit: u64) -> Traces {
        Traces {
            zipf: Zipf::new(universe, 0.99),
            universe,
            fit,
        }
    }

    /// Trace `which` (see [`NAMES`]) of `len` requests.
    pub fn generate(&self, which: usize, len: usize) -> Vec<u64> {
        let mut rng = XorShift::new(0x5EED + which as u64);
        let mut scan = self.universe;
        let period = len / SHIFTS + 1;
        let step = self.fit / 4;
        (0..len)
            .map(|i| match which {
                0 => self.zipf.sample(&mut rng),
                1 if i % SCAN_BLOCK < SCAN_RUN => {
                    scan += 1;
                    scan
                }
                1 => self.zipf.sample(&mut rng),
                _ => (self.zipf.sample(&mut rng) + (i / period) as u64 * step) % self.universe,
            })
            .collect()
    }
}

/// The 16-byte key of id `id` (hex digits, as fast to build as to read).
pub fn key(id: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = HEX[((id >> (60 - 4 * i)) & 15) as usize];
    }
    k
}
