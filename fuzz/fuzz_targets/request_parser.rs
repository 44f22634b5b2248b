//! Fuzz target: the client request parser (`nearcache::protocol::RequestParser`).
//!
//! The first input byte chooses where the rest is split in two; the parser reads the rest
//! whole, then in those two pieces. Neither may panic, consume more than it was given or
//! return a request without a name, and both must read the same requests (and, for input
//! without a NUL byte and within the line limit, the same error: see
//! src/protocol/fuzz_tests/ for why those may differ).

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use nearcache::protocol::{Limits, RequestError, RequestParser};

const LIMITS: Limits = Limits {
    max_bulk_bytes: 4096,
    max_array_len: 64,
    max_inline_bytes: 256,
};

/// The requests read from `input` fed up to `cut` then the rest, and the error if any.
fn parse(input: &[u8], cut: usize) -> (Vec<Vec<Bytes>>, Option<RequestError>) {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for piece in [&input[..cut], &input[cut..]] {
        buf.extend_from_slice(piece);
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
                Err(error) => return (requests, Some(error)),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(choice) % (input.len() + 1);
    let (whole, whole_error) = parse(input, input.len());
    let (split, split_error) = parse(input, cut);
    assert_eq!(whole, split);
    assert_eq!(whole_error.is_some(), split_error.is_some());
    if input.len() <= LIMITS.max_inline_bytes && !input.contains(&0) {
        assert_eq!(whole_error, split_error);
    }
});
