//! The glob matcher against a real redis-server: random patterns and keys over a small
//! alphabet rich in pattern syntax, and for every pattern the keys `KEYS` returns must be
//! exactly the keys [`nearcache::glob::Pattern`] accepts.

use std::collections::BTreeSet;

use nearcache::glob::Pattern;
use proto_tests::*;

/// Bytes keys and patterns are made of: every special byte, a few letters, and a byte
/// above 0x7f (ranges compare bytes as signed chars).
const ALPHABET: &[u8] = b"ab*?[]^-\\c\xe9";
const KEYS: usize = 400;
const PATTERNS: usize = 4000;
/// Requests pipelined per round trip.
const PIPELINE: usize = 200;

/// Random strings for the cases (the generator has a fixed seed: every run checks the same
/// cases).
trait Strings {
    fn string(&mut self, max: usize, weighted: &[u8]) -> Vec<u8>;
}

impl Strings for Rng {
    /// Up to `max` bytes, drawn from `ALPHABET` or from `weighted` (half the time).
    fn string(&mut self, max: usize, weighted: &[u8]) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                if !weighted.is_empty() && self.below(2) == 0 {
                    weighted[self.below(weighted.len())]
                } else {
                    ALPHABET[self.below(ALPHABET.len())]
                }
            })
            .collect()
    }
}

/// The elements of a flat array of bulk strings.
fn bulks(reply: &[u8]) -> Vec<Vec<u8>> {
    fn line(buf: &[u8], at: usize) -> (usize, usize) {
        let end = at
            + buf[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("CRLF");
        let n = std::str::from_utf8(&buf[at + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        (n, end + 2)
    }
    assert_eq!(reply[0], b'*', "not an array: {}", show(reply));
    let (count, mut at) = line(reply, 0);
    (0..count)
        .map(|_| {
            assert_eq!(reply[at], b'$', "not a bulk string: {}", show(&reply[at..]));
            let (len, start) = line(reply, at);
            at = start + len + 2;
            reply[start..start + len].to_vec()
        })
        .collect()
}

#[test]
fn random_patterns_match_exactly_the_keys_redis_returns() {
    let redis = Redis::start();
    let mut conn = redis.conn();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let mut keys = BTreeSet::new();
    keys.insert(Vec::new());
    while keys.len() < KEYS {
        keys.insert(rng.string(6, b"ab"));
    }
    let keys: Vec<Vec<u8>> = keys.into_iter().collect();
    for batch in keys.chunks(PIPELINE) {
        let mut request = Vec::new();
        for key in batch {
            request.extend(encode_command(&[b"SET", key, b"1"]));
        }
        conn.send(&request);
        for reply in conn.read_replies(batch.len()) {
            assert_reply(&reply, b"+OK\r\n", "SET");
        }
    }

    let patterns: Vec<Vec<u8>> = (0..PATTERNS)
        .map(|i| match i {
            0 => b"*".to_vec(),
            1 => Vec::new(),
            _ => rng.string(8, b"*?[]-\\ab"),
        })
        .collect();
    let mut checked = 0;
    let mut matched = 0;
    for batch in patterns.chunks(PIPELINE) {
        let mut request = Vec::new();
        for pattern in batch {
            request.extend(encode_command(&[b"KEYS", pattern]));
        }
        conn.send(&request);
        for (pattern, reply) in batch.iter().zip(conn.read_replies(batch.len())) {
            let want: BTreeSet<Vec<u8>> = bulks(&reply).into_iter().collect();
            let compiled = Pattern::new(pattern);
            let got: BTreeSet<Vec<u8>> = keys
                .iter()
                .filter(|k| compiled.matches(k))
                .cloned()
                .collect();
            assert!(
                got == want,
                "pattern {}: Redis returned {} key(s), the matcher {}; only Redis: {:?}; only the matcher: {:?}",
                show(pattern),
                want.len(),
                got.len(),
                want.difference(&got).map(|k| show(k)).collect::<Vec<_>>(),
                got.difference(&want).map(|k| show(k)).collect::<Vec<_>>(),
            );
            checked += 1;
            matched += usize::from(!want.is_empty());
        }
    }
    assert_eq!(checked, PATTERNS);
    // The generator must produce patterns that match something, or the test proves little.
    assert!(
        matched > PATTERNS / 5,
        "only {matched} of {PATTERNS} patterns matched any key"
    );
}
