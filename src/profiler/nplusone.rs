//! N+1 detection: a client reading many keys of the same shape one `GET` at a time, where
//! one `MGET` would do. Keys are folded to a shape ([`fold_shape`]); a connection that reads
//! `--n-plus-one-threshold` keys of one shape within `--n-plus-one-window` (a window opens
//! at the first read of the shape) is reported once for that window.
//!
//! The state is per connection and bounded: at most [`MAX_SHAPES`] shapes (the least
//! recently opened window is dropped first), each with a folded shape of at most
//! [`MAX_SHAPE_BYTES`] and [`EXAMPLES`] example keys of at most [`MAX_EXAMPLE_BYTES`].

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Shapes followed per connection.
pub const MAX_SHAPES: usize = 64;
/// A shape is folded from at most this many bytes of the key.
pub const MAX_SHAPE_BYTES: usize = 128;
/// Example keys kept per shape for the report.
pub const EXAMPLES: usize = 3;
/// An example key is cut to this many bytes in the report.
pub const MAX_EXAMPLE_BYTES: usize = 64;
/// A token of hex digits (and dashes) with at least this many hex digits and one decimal
/// digit is an identifier (a UUID, a hash, a hex id).
pub const MIN_HEX_ID: usize = 8;

/// Folds the variable parts of a key to `#`: `user:123:profile` → `user:#:profile`.
///
/// The key is split into tokens, runs of ASCII letters, digits and `-`; the bytes between
/// them (`:`, `.`, `/`, `_`, ...) are kept. A token made only of hex digits and dashes,
/// with at least [`MIN_HEX_ID`] hex digits of which one is a decimal digit (a UUID, a
/// SHA, a hex id, a date `2024-01-31`), becomes one `#`; in any other token each run of
/// decimal digits becomes `#` (`v2` → `v#`, `item-42` → `item-#`). Only the first
/// [`MAX_SHAPE_BYTES`] bytes of the key are read.
pub fn fold_shape(key: &[u8], shape: &mut Vec<u8>) {
    let key = &key[..key.len().min(MAX_SHAPE_BYTES)];
    // Folded on the stack (a shape is never longer than the bytes it is folded from),
    // then copied out at once.
    let mut out = Folded {
        bytes: [0; MAX_SHAPE_BYTES],
        len: 0,
    };
    let mut i = 0;
    while i < key.len() {
        if class(key[i]) == 0 {
            out.push(key[i]);
            i += 1;
            continue;
        }
        i = fold_token(key, i, &mut out);
    }
    shape.clear();
    shape.extend_from_slice(&out.bytes[..out.len]);
}

/// A shape being folded.
struct Folded {
    bytes: [u8; MAX_SHAPE_BYTES],
    len: usize,
}

impl Folded {
    #[inline]
    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }
}

/// What a byte is to [`fold_shape`], as bits: 0 between tokens, else [`TOKEN`] and at
/// most one of the kinds.
const TOKEN: u8 = 1;
const DECIMAL: u8 = 2;
const HEX_LETTER: u8 = 4;
const LETTER: u8 = 8;

/// The class of every byte, so a token is folded in one pass with one look-up a byte.
const CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        class[b] = match c {
            b'0'..=b'9' => TOKEN | DECIMAL,
            b'a'..=b'f' | b'A'..=b'F' => TOKEN | HEX_LETTER,
            b'-' => TOKEN,
            b'g'..=b'z' | b'G'..=b'Z' => TOKEN | LETTER,
            _ => 0,
        };
        b += 1;
    }
    class
};

/// The class of `b` (see [`CLASS`]).
#[inline]
fn class(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// Folds the token of [`fold_shape`] that starts at `start` into `shape`, in one pass:
/// each run of decimal digits becomes `#` (skipped in a loop of its own), and when the
/// token turns out to be a hex identifier what was written for it is replaced by one `#`.
/// Returns where it ends.
fn fold_token(key: &[u8], start: usize, shape: &mut Folded) -> usize {
    let mark = shape.len;
    // Every kind of byte seen, and how many hex digits.
    let (mut seen, mut hex_digits) = (0, 0);
    let mut i = start;
    while i < key.len() {
        let c = class(key[i]);
        if c & DECIMAL != 0 {
            let run = key[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            shape.push(b'#');
            hex_digits += run;
            seen |= DECIMAL;
            i += run;
            continue;
        }
        if c == 0 {
            break;
        }
        hex_digits += usize::from(c & HEX_LETTER != 0);
        seen |= c;
        shape.push(key[i]);
        i += 1;
    }
    if seen & (DECIMAL | LETTER) == DECIMAL && hex_digits >= MIN_HEX_ID {
        shape.len = mark;
        shape.push(b'#');
    }
    i
}

/// A shape read often enough to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The folded shape.
    pub shape: Bytes,
    /// Keys read in the window so far.
    pub reads: usize,
    /// The first keys read in the window, each cut to [`MAX_EXAMPLE_BYTES`].
    pub examples: Vec<Bytes>,
}

/// One shape's current window.
struct Window {
    shape: Vec<u8>,
    opened: Instant,
    reads: usize,
    examples: Vec<Bytes>,
    reported: bool,
}

/// One connection's recent single-key reads, by shape.
#[derive(Default)]
pub struct Tracker {
    windows: Vec<Window>,
    /// Scratch space for folding, reused.
    scratch: Vec<u8>,
    /// The window of the last read: looked at first (a loop of reads keeps one shape).
    last: usize,
}

impl Tracker {
    /// Counts a single-key read of `key` at `now`; returns a finding the first time the
    /// shape reaches `threshold` reads within `window`.
    pub fn read(
        &mut self,
        key: &[u8],
        now: Instant,
        threshold: usize,
        window: Duration,
    ) -> Option<Finding> {
        fold_shape(key, &mut self.scratch);
        let same = |w: &Window| w.shape == self.scratch;
        let at = match self.windows.get(self.last).is_some_and(same) {
            true => self.last,
            false => match self.windows.iter().position(same) {
                Some(at) => at,
                None => self.open(now),
            },
        };
        self.last = at;
        let w = &mut self.windows[at];
        if now.saturating_duration_since(w.opened) > window {
            w.opened = now;
            w.reads = 0;
            w.examples.clear();
            w.reported = false;
        }
        w.reads += 1;
        if w.examples.len() < EXAMPLES {
            let cut = &key[..key.len().min(MAX_EXAMPLE_BYTES)];
            w.examples.push(Bytes::copy_from_slice(cut));
        }
        if w.reported || w.reads < threshold {
            return None;
        }
        w.reported = true;
        Some(Finding {
            shape: Bytes::copy_from_slice(&w.shape),
            reads: w.reads,
            examples: w.examples.clone(),
        })
    }

    /// A window for the shape in `scratch`, replacing the oldest when [`MAX_SHAPES`] are
    /// followed; returns its position.
    fn open(&mut self, now: Instant) -> usize {
        let window = Window {
            shape: self.scratch.clone(),
            opened: now,
            reads: 0,
            examples: Vec::new(),
            reported: false,
        };
        if self.windows.len() < MAX_SHAPES {
            self.windows.push(window);
            return self.windows.len() - 1;
        }
        let (oldest, _) = self
            .windows
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.opened)
            .expect("a full tracker");
        self.windows[oldest] = window;
        oldest
    }

    /// Shapes followed now.
    pub fn shapes(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(key: &str) -> String {
        let mut out = Vec::new();
        fold_shape(key.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn variable_parts_fold_to_hash() {
        let cases = [
            ("user:123:profile", "user:#:profile"),
            ("user:7", "user:#"),
            ("order/2024-01-31/items", "order/#/items"),
            ("session:550e8400-e29b-41d4-a716-446655440000", "session:#"),
            ("blob:9f86d081884c7d65", "blob:#"),
            ("item-42.v2", "item-#.v#"),
            ("deadbeefcafe", "deadbeefcafe"),
            ("abc-12", "abc-#"),
            ("user123", "user#"),
            ("12:34", "#:#"),
            ("plain", "plain"),
            ("", ""),
        ];
        for (key, want) in cases {
            assert_eq!(shape(key), want, "{key}");
        }
    }

    #[test]
    fn only_the_start_of_a_long_key_is_folded() {
        let key = format!("k:{}", "a".repeat(1000));
        assert_eq!(shape(&key).len(), MAX_SHAPE_BYTES);
    }

    const W: Duration = Duration::from_millis(100);

    #[test]
    fn the_threshold_within_a_window_reports_once() {
        let mut t = Tracker::default();
        let start = Instant::now();
        let mut found = Vec::new();
        for i in 0..20 {
            let key = format!("user:{i}:profile");
            let now = start + Duration::from_millis(i);
            found.extend(t.read(key.as_bytes(), now, 10, W));
        }
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].shape[..], b"user:#:profile");
        assert_eq!(found[0].reads, 10);
        assert_eq!(found[0].examples.len(), EXAMPLES);
        assert_eq!(&found[0].examples[0][..], b"user:0:profile");
        // The next window may report again.
        let later = start + Duration::from_millis(300);
        let again: Vec<_> = (0..10)
            .filter_map(|i| t.read(format!("user:{i}:profile").as_bytes(), later, 10, W))
            .collect();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn reads_spread_over_windows_or_below_the_threshold_do_not_report() {
        let mut t = Tracker::default();
        let start = Instant::now();
        for i in 0..20u64 {
            let now = start + Duration::from_millis(i * 30);
            assert_eq!(t.read(format!("a:{i}").as_bytes(), now, 10, W), None);
        }
        for i in 0..9 {
            assert_eq!(t.read(format!("b:{i}").as_bytes(), start, 10, W), None);
        }
        // Different shapes do not add up.
        for i in 0..9 {
            assert_eq!(t.read(format!("c{i}:x").as_bytes(), start, 10, W), None);
            assert_eq!(t.read(format!("c{i}:y").as_bytes(), start, 10, W), None);
        }
    }

    #[test]
    fn shapes_are_bounded_oldest_dropped_first() {
        let mut t = Tracker::default();
        let start = Instant::now();
        for i in 0..(MAX_SHAPES as u64 + 10) {
            let key = format!("{}:1", "x".repeat(i as usize + 1));
            t.read(key.as_bytes(), start + Duration::from_millis(i), 10, W);
        }
        assert_eq!(t.shapes(), MAX_SHAPES);
        // The newest shape is still followed: nine more reads reach the threshold.
        let last = format!("{}:2", "x".repeat(MAX_SHAPES + 10));
        let now = start + Duration::from_millis(80);
        let found: Vec<_> = (0..9)
            .filter_map(|_| t.read(last.as_bytes(), now, 10, W))
            .collect();
        assert_eq!(found.len(), 1);
    }
}
