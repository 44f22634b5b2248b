//! Fuzz target: the upstream reply decoder, `nearcache::protocol::FrameScanner` framing
//! then the readers of `nearcache::protocol::decode` on each frame.
//!
//! The first input byte chooses where the rest is split in two. The scanner must find the
//! same frame (or the same error, or none) in the input whole and arriving in those two
//! pieces, never a frame longer than the input; no reader may panic, and the elements an
//! array or push reply splits into are shorter than it and read without panic in turn.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nearcache::protocol::properties::read_every_way;
use nearcache::protocol::FrameScanner;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(choice) % (input.len() + 1);
    let whole = FrameScanner::default().next_frame(input);
    let mut scanner = FrameScanner::default();
    let split = match scanner.next_frame(&input[..cut]) {
        Ok(None) => scanner.next_frame(input),
        done => done,
    };
    assert_eq!(whole, split);
    if let Ok(Some(len)) = whole {
        assert!(len > 0 && len <= input.len());
        read_every_way(&Bytes::copy_from_slice(&input[..len]));
    }
    read_every_way(&Bytes::copy_from_slice(input));
});
