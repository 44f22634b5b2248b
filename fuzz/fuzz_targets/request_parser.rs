//! Fuzz target: the client request parser (`nearcache::protocol::RequestParser`).
//!
//! The first input byte chooses where the rest is split in two; the parser reads the rest
//! whole, then in those two pieces. Neither may panic, consume more than it was given or
//! return a request without a name, and both must read the same requests (and, for input
//! without a NUL byte and within the line limit, the same error: see
//! src/protocol/fuzz_tests/ for why those may differ).

#![no_main]

use libfuzzer_sys::fuzz_target;
use nearcache::protocol::properties::parse_in_pieces;
use nearcache::protocol::Limits;

const LIMITS: Limits = Limits {
    max_bulk_bytes: 4096,
    max_array_len: 64,
    max_inline_bytes: 256,
};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(choice) % (input.len() + 1);
    let whole = parse_in_pieces(input, &[], &LIMITS);
    let split = parse_in_pieces(input, &[cut], &LIMITS);
    assert_eq!(whole.requests, split.requests);
    assert_eq!(whole.error.is_some(), split.error.is_some());
    if input.len() <= LIMITS.max_inline_bytes && !input.contains(&0) {
        assert_eq!(whole.error, split.error);
    }
});
