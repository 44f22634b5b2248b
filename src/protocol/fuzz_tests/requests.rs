//! The request parser: valid requests read back as encoded; random and mutated ones never
//! panic; split input reads as whole.

use std::fmt::Write as _;

use bytes::Bytes;

use super::{Rng, LIMITS, ROUNDS};
use crate::protocol::properties::parse_in_pieces;

/// A request as a client encodes it: a multibulk, or now and then the inline form of
/// plain words.
fn encode_request(rng: &mut Rng, out: &mut Vec<u8>) -> Vec<Bytes> {
    if rng.chance(5) {
        let words: Vec<Bytes> = (0..=rng.below(4))
            .map(|_| {
                let len = 1 + rng.below(10);
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect();
        let line: Vec<&[u8]> = words.iter().map(|w| &w[..]).collect();
        out.extend_from_slice(&line.join(&b' '));
        out.extend_from_slice(if rng.chance(2) { b"\r\n" } else { b"\n" });
        return words;
    }
    let args: Vec<Bytes> = (0..=rng.below(8))
        .map(|_| {
            let max = if rng.chance(10) { 600 } else { 24 };
            Bytes::from(rng.bytes(max))
        })
        .collect();
    let mut head = String::new();
    write!(head, "*{}\r\n", args.len()).unwrap();
    out.extend_from_slice(head.as_bytes());
    for arg in &args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    args
}

#[test]
fn valid_requests_read_back_whole_and_split() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..ROUNDS {
        let mut input = Vec::new();
        let sent: Vec<Vec<Bytes>> = (0..=rng.below(3))
            .map(|_| encode_request(&mut rng, &mut input))
            .collect();
        let shown = input.escape_ascii().to_string();
        let whole = parse_in_pieces(&input, &[], &LIMITS);
        assert_eq!(whole.error, None, "{shown}");
        assert_eq!(whole.requests, sent, "{shown}");
        assert_eq!(whole.left, 0, "{shown}");
        let cuts = rng.cuts(input.len(), 4);
        assert_eq!(
            parse_in_pieces(&input, &cuts, &LIMITS),
            whole,
            "{shown} cut at {cuts:?}"
        );
    }
}

#[test]
fn random_and_mutated_requests_never_panic_and_split_reads_as_whole() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..ROUNDS {
        let input = if round % 3 == 0 {
            rng.bytes(80)
        } else {
            let mut valid = Vec::new();
            for _ in 0..=rng.below(2) {
                encode_request(&mut rng, &mut valid);
            }
            rng.mutate(&valid)
        };
        let shown = input.escape_ascii().to_string();
        let whole = parse_in_pieces(&input, &[], &LIMITS);
        let cuts = rng.cuts(input.len(), 4);
        let split = parse_in_pieces(&input, &cuts, &LIMITS);
        assert_eq!(split.requests, whole.requests, "{shown} cut at {cuts:?}");
        assert_eq!(
            split.error.is_some(),
            whole.error.is_some(),
            "{shown} {cuts:?}"
        );
        // Which error: a line over the limit is "too big" when it arrives without its end,
        // "invalid" when it arrives whole (Redis too), and a NUL hides a line's end.
        if input.len() <= LIMITS.max_inline_bytes && !input.contains(&0) {
            assert_eq!(split.error, whole.error, "{shown} cut at {cuts:?}");
        }
        if whole.error.is_none() {
            assert_eq!(split.left, whole.left, "{shown} cut at {cuts:?}");
        }
    }
}
