//! The properties the request parser and the reply decoder must keep on any input, shared
//! by the bounded property run in the unit tests and the `fuzz/` targets (which build the
//! crate with the `fuzzing` feature): one statement of each property, two drivers.

use bytes::{Bytes, BytesMut};

use super::decode;
use super::{Limits, RequestError, RequestParser};

/// What one parser read from an input delivered in pieces.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// The requests read, as their arguments.
    pub requests: Vec<Vec<Bytes>>,
    /// The error that stopped reading, if any.
    pub error: Option<RequestError>,
    /// Bytes left unconsumed (meaningful without an error).
    pub left: usize,
}

/// Feeds `input` to one parser in pieces ending at each of `cuts`, then the rest, taking
/// every request after each piece.
pub fn parse_in_pieces(input: &[u8], cuts: &[usize], limits: &Limits) -> Parsed {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut fed = 0;
    for &end in cuts.iter().chain([input.len()].iter()) {
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            let result = parser.next(&mut buf, limits);
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

/// Every reader of `crate::protocol::decode`, on any bytes: none may panic.
pub fn read_every_way(frame: &Bytes) {
    let _ = decode::is_null(frame);
    let _ = decode::is_bulk(frame);
    let _ = decode::is_error(frame);
    let _ = decode::integer(frame);
    let _ = decode::text(frame);
    for elements in [decode::array_elements(frame), decode::push_elements(frame)]
        .into_iter()
        .flatten()
    {
        for element in &elements {
            assert!(element.len() < frame.len());
            read_every_way(element);
        }
    }
}
