//! Bounded property runs of the client request parser and the upstream reply decoder, the
//! properties of the `fuzz/` targets without nightly: a few thousand pseudo-random valid
//! inputs and mutations of them, each read whole and split at random points. Neither may
//! panic or consume more than it was given; a valid input reads back as what was encoded;
//! a split input reads as the whole one does.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::{FrameScanner, Limits, RequestError, RequestParser};
use crate::upstream::reply;

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

// ---------------------------------------------------------------- requests

/// What one parser read from an input delivered in pieces.
#[derive(Debug, PartialEq)]
struct Parsed {
    requests: Vec<Vec<Bytes>>,
    error: Option<RequestError>,
    /// Bytes left unconsumed (meaningful without an error).
    left: usize,
}

/// Feeds `input` to one parser in pieces ending at each of `cuts`, then the rest, taking
/// every request after each piece.
fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Parsed {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut fed = 0;
    for &end in cuts.iter().chain([input.len()].iter()) {
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            let result = parser.next(&mut buf, &LIMITS);
            assert!(buf.len() <= before, "the parser grew its input");
            match result {
                Ok(Some(request)) => {
                    assert!(buf.len() < before, "a request consumed nothing");
                    assert!(!request.args.is_empty(), "a request without a name");
                    requests.push(request.args.to_vec());
                }
                Ok(None) => break,
                Err(error) => {
                    return Parsed {
                        requests,
                        error: Some(error),
                        left: buf.len(),
                    }
                }
            }
        }
        assert!(buf.len() <= fed, "consumed more than was fed");
    }
    Parsed {
        requests,
        error: None,
        left: buf.len(),
    }
}

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
        let whole = parse_in_pieces(&input, &[]);
        assert_eq!(whole.error, None, "{shown}");
        assert_eq!(whole.requests, sent, "{shown}");
        assert_eq!(whole.left, 0, "{shown}");
        let cuts = rng.cuts(input.len(), 4);
        assert_eq!(
            parse_in_pieces(&input, &cuts),
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
        let whole = parse_in_pieces(&input, &[]);
        let cuts = rng.cuts(input.len(), 4);
        let split = parse_in_pieces(&input, &cuts);
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

// ---------------------------------------------------------------- replies

/// A reply value, RESP2 and RESP3 kinds.
enum Value {
    /// `+`, `-`, `(`, `,`, `#` and the like: one line.
    Line(u8, Vec<u8>),
    /// `:n`.
    Integer(i64),
    /// `$-1`, `*-1` or `_`.
    Null(&'static [u8]),
    /// `$`, `!` or `=` with a length-prefixed payload (`=` payloads start `txt:`).
    Blob(u8, Vec<u8>),
    /// `*`, `~`, `>` with elements, `%` with key-value pairs (the elements in order).
    Aggregate(u8, Vec<Value>),
    /// `|`: an attribute map, then the value it annotates, one frame.
    Attributed(Vec<Value>, Box<Value>),
}

impl Value {
    fn random(rng: &mut Rng, depth: usize) -> Value {
        let kinds = if depth == 0 { 4 } else { 6 };
        match rng.below(kinds) {
            0 => {
                let kind = b"+-(,#"[rng.below(5)];
                let text = rng
                    .bytes(16)
                    .into_iter()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .collect();
                Value::Line(kind, text)
            }
            1 => Value::Integer(rng.next() as i64 >> rng.below(64)),
            2 => Value::Null([&b"$-1\r\n"[..], b"*-1\r\n", b"_\r\n"][rng.below(3)]),
            3 => match rng.below(3) {
                0 => Value::Blob(b'$', rng.bytes(40)),
                1 => Value::Blob(b'!', rng.bytes(20)),
                _ => {
                    let mut text = b"txt:".to_vec();
                    text.extend(rng.bytes(20));
                    Value::Blob(b'=', text)
                }
            },
            4 => {
                let kind = b"*~>%"[rng.below(4)];
                let n = rng.below(5);
                let n = if kind == b'%' { n * 2 } else { n };
                Value::Aggregate(
                    kind,
                    (0..n).map(|_| Value::random(rng, depth - 1)).collect(),
                )
            }
            _ => {
                let pairs = (0..2).map(|_| Value::random(rng, 0)).collect();
                Value::Attributed(pairs, Box::new(Value::random(rng, depth - 1)))
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Line(kind, text) => {
                out.push(*kind);
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Value::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Value::Null(frame) => out.extend_from_slice(frame),
            Value::Blob(kind, payload) => {
                out.extend_from_slice(format!("{}{}\r\n", *kind as char, payload.len()).as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Value::Aggregate(kind, elements) => {
                let n = if *kind == b'%' {
                    elements.len() / 2
                } else {
                    elements.len()
                };
                out.extend_from_slice(format!("{}{n}\r\n", *kind as char).as_bytes());
                elements.iter().for_each(|e| e.encode(out));
            }
            Value::Attributed(pairs, value) => {
                out.extend_from_slice(format!("|{}\r\n", pairs.len() / 2).as_bytes());
                pairs.iter().for_each(|e| e.encode(out));
                value.encode(out);
            }
        }
    }

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The frame length `FrameScanner` finds in `input` delivered growing to each of `cuts`,
/// then whole; `None` while incomplete.
fn frame_in_pieces(input: &[u8], cuts: &[usize]) -> Result<Option<usize>, super::ProtocolError> {
    let mut scanner = FrameScanner::default();
    for &cut in cuts {
        match scanner.next_frame(&input[..cut])? {
            None => {}
            Some(len) => return Ok(Some(len)),
        }
    }
    scanner.next_frame(input)
}

/// Every reader of `crate::upstream::reply`, on any bytes: none may panic.
fn read_every_way(frame: &Bytes) {
    let _ = reply::is_null(frame);
    let _ = reply::is_bulk(frame);
    let _ = reply::is_error(frame);
    let _ = reply::integer(frame);
    let _ = reply::text(frame);
    for elements in [reply::array_elements(frame), reply::push_elements(frame)]
        .into_iter()
        .flatten()
    {
        for element in &elements {
            assert!(element.len() < frame.len());
            read_every_way(element);
        }
    }
}

#[test]
fn valid_replies_decode_to_what_was_encoded_whole_and_split() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..ROUNDS {
        let value = Value::random(&mut rng, 3);
        let frame = value.encoded();
        let shown = frame.escape_ascii().to_string();
        // The frame ends where it was encoded to end, whatever follows it.
        let mut stream = frame.clone();
        stream.extend_from_slice(b"+next\r\n");
        assert_eq!(
            frame_in_pieces(&stream, &[]),
            Ok(Some(frame.len())),
            "{shown}"
        );
        let cuts = rng.cuts(frame.len(), 4);
        for &cut in &cuts {
            let partial = FrameScanner::default().next_frame(&frame[..cut]);
            assert_eq!(partial, Ok(None), "{shown} cut at {cut}");
        }
        assert_eq!(
            frame_in_pieces(&stream, &cuts),
            Ok(Some(frame.len())),
            "{shown} {cuts:?}"
        );

        let bytes = Bytes::from(frame.clone());
        read_every_way(&bytes);
        match &value {
            Value::Line(kind, _) => assert_eq!(reply::is_error(&frame), *kind == b'-'),
            Value::Integer(n) => assert_eq!(reply::integer(&frame), Some(*n), "{shown}"),
            Value::Null(_) => assert!(reply::is_null(&frame) && !reply::is_bulk(&frame)),
            Value::Blob(kind, payload) => {
                let text = reply::text(&frame);
                match kind {
                    b'$' => {
                        assert_eq!(text, Some((&payload[..], false)), "{shown}");
                        assert!(reply::is_bulk(&frame));
                    }
                    b'=' => assert_eq!(text, Some((&payload[4..], true)), "{shown}"),
                    _ => assert!(reply::is_error(&frame) && text.is_none(), "{shown}"),
                }
            }
            Value::Aggregate(kind, elements) if matches!(kind, b'*' | b'>') => {
                let expected: Vec<Bytes> = elements.iter().map(|e| e.encoded().into()).collect();
                let read = if *kind == b'*' {
                    reply::array_elements(&bytes)
                } else {
                    reply::push_elements(&bytes)
                };
                assert_eq!(read, Some(expected), "{shown}");
            }
            Value::Aggregate(..) | Value::Attributed(..) => {}
        }
    }
}

#[test]
fn random_and_mutated_replies_never_panic_and_split_reads_as_whole() {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    for round in 0..ROUNDS {
        let input = if round % 3 == 0 {
            rng.bytes(60)
        } else {
            let valid = Value::random(&mut rng, 3).encoded();
            rng.mutate(&valid)
        };
        let shown = input.escape_ascii().to_string();
        let whole = frame_in_pieces(&input, &[]);
        let cuts = rng.cuts(input.len(), 4);
        assert_eq!(
            frame_in_pieces(&input, &cuts),
            whole,
            "{shown} cut at {cuts:?}"
        );
        if let Ok(Some(len)) = whole {
            assert!(len > 0 && len <= input.len(), "{shown}: frame of {len}");
            read_every_way(&Bytes::copy_from_slice(&input[..len]));
        }
        read_every_way(&Bytes::from(input));
    }
}
