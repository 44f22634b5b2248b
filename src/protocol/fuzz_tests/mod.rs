//! Bounded property runs of the client request parser and the upstream reply decoder, the
//! properties of the `fuzz/` targets without nightly: a few thousand pseudo-random valid
//! inputs and mutations of them, each read whole and split at random points. Neither may
//! panic or consume more than it was given; a valid input reads back as what was encoded;
//! a split input reads as the whole one does.

mod replies;
mod requests;

use super::Limits;

/// Limits small enough for random input to cross them.
const LIMITS: Limits = Limits {
    max_bulk_bytes: 4096,
    max_array_len: 64,
    max_inline_bytes: 256,
};

/// Rounds of each property: together well under two seconds in a debug build.
const ROUNDS: usize = 3000;

/// Bytes a mutation writes: the protocol's own, so that mutants stay near valid frames.
const SPECIAL: &[u8] = b"*$+-:_#,(!=~%>|\r\n0123456789 \"'\\\0tx";

/// xorshift64: a fixed seed, so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// Up to `max` bytes: any byte, or often one the protocol gives a meaning to.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| match self.below(3) {
                0 => self.next() as u8,
                1 => SPECIAL[self.below(SPECIAL.len())],
                _ => b'a' + self.below(26) as u8,
            })
            .collect()
    }

    /// Sorted cut points strictly inside `0..len`, at most `max`.
    fn cuts(&mut self, len: usize, max: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..self.below(max + 1)).map(|_| self.below(len)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// `input` with one to three bytes flipped, inserted, removed, or a piece repeated, or
    /// the whole cut short.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(out.len());
            let byte = SPECIAL[self.below(SPECIAL.len())];
            match self.below(5) {
                0 if !out.is_empty() => out[at] = byte,
                1 => out.insert(at, byte),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                3 => {
                    let end = (at + self.below(8)).min(out.len());
                    let piece = out[at..end].to_vec();
                    out.splice(at..at, piece);
                }
                _ => out.truncate(at),
            }
        }
        out
    }
}
