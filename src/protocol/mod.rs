//! The wire: client requests in (multibulk and inline, with limits, accepted and refused
//! exactly as Redis does), upstream reply framing, and the few replies the sidecar writes.

mod args;
pub mod decode;
mod encode;
mod frames;
#[cfg(test)]
mod fuzz_tests;
mod inline;
mod limits;
mod parser;
#[cfg(any(test, feature = "fuzzing"))]
pub mod properties;
mod request;

use bytes::{BufMut, BytesMut};

/// Whether `arg` is the command or option name `name` (ASCII, in any case), as Redis
/// matches names: no allocation, no `to_lowercase`.
#[inline]
pub fn is(arg: &[u8], name: &[u8]) -> bool {
    arg.eq_ignore_ascii_case(name)
}

pub use args::Args;
pub use encode::*;
pub use frames::FrameScanner;
pub use limits::{Limits, REDIS_DEFAULT_MAX_BULK};
pub use parser::RequestParser;
pub use request::{command, parse_request, peek_get, write_command, Request};

/// A frame that can never become valid: the connection answers `-ERR Protocol error: ...`
/// and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub &'static str);

/// Why a client request was refused; the texts are Redis's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Malformed or over a limit (`invalid bulk length`, `too big inline request`, ...).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Something other than `$` where a bulk string header was expected.
    #[error("Protocol error: expected '$', got '{}'", shown(*.0) as char)]
    ExpectedBulk(u8),
}

impl RequestError {
    /// Appends the `-ERR Protocol error: ...` reply Redis sends, byte for byte (the byte in
    /// `expected '$', got 'X'` is written raw, CR and LF as spaces).
    pub fn write_reply(&self, out: &mut BytesMut) {
        match self {
            RequestError::Protocol(e) => write_error(out, &format!("ERR {e}")),
            RequestError::ExpectedBulk(got) => {
                out.put_slice(b"-ERR Protocol error: expected '$', got '");
                out.put_u8(shown(*got));
                out.put_slice(b"'\r\n");
            }
        }
    }
}

/// A byte as it may appear inside an error line.
fn shown(b: u8) -> u8 {
    if b == b'\r' || b == b'\n' {
        b' '
    } else {
        b
    }
}

/// The RESP version a client (or an upstream connection) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resp {
    /// RESP2, the default of every new connection.
    V2,
    /// RESP3, after `HELLO 3`.
    V3,
}

/// A signed decimal as RESP writes integers and lengths: digits with an optional leading
/// `-`, no `+`, no spaces; `None` when malformed or out of the i64 range.
#[inline]
pub fn parse_decimal(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated towards the sign, so `i64::MIN` (an INCRBY can reach it) reads too.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = (d - b'0') as i64;
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// A decimal exactly as Redis's `string2ll` accepts it in a request header: `0`, or an
/// optional `-` then digits without a leading zero; no `+`, no spaces, no `-0`, at most 20
/// bytes, within the i64 range (`i64::MIN` included).
#[inline]
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}
