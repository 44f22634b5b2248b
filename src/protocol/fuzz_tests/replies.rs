//! The reply decoder (`FrameScanner` framing, `crate::protocol::decode` reading): valid
//! replies decode to what was encoded; random and mutated ones never panic; split input
//! frames as whole.

use bytes::Bytes;

use super::{Rng, ROUNDS};
use crate::protocol::decode;
use crate::protocol::properties::read_every_way;
use crate::protocol::{FrameScanner, ProtocolError};

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
fn frame_in_pieces(input: &[u8], cuts: &[usize]) -> Result<Option<usize>, ProtocolError> {
    let mut scanner = FrameScanner::default();
    for &cut in cuts {
        match scanner.next_frame(&input[..cut])? {
            None => {}
            Some(len) => return Ok(Some(len)),
        }
    }
    scanner.next_frame(input)
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
            Value::Line(kind, _) => assert_eq!(decode::is_error(&frame), *kind == b'-'),
            Value::Integer(n) => assert_eq!(decode::integer(&frame), Some(*n), "{shown}"),
            Value::Null(_) => assert!(decode::is_null(&frame) && !decode::is_bulk(&frame)),
            Value::Blob(kind, payload) => {
                let text = decode::text(&frame);
                match kind {
                    b'$' => {
                        assert_eq!(text, Some((&payload[..], false)), "{shown}");
                        assert!(decode::is_bulk(&frame));
                    }
                    b'=' => assert_eq!(text, Some((&payload[4..], true)), "{shown}"),
                    _ => assert!(decode::is_error(&frame) && text.is_none(), "{shown}"),
                }
            }
            Value::Aggregate(kind, elements) if matches!(kind, b'*' | b'>') => {
                let expected: Vec<Bytes> = elements.iter().map(|e| e.encoded().into()).collect();
                let read = if *kind == b'*' {
                    decode::array_elements(&bytes)
                } else {
                    decode::push_elements(&bytes)
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
