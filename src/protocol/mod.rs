//! The wire: client requests in (multibulk and inline, with limits), upstream reply framing,
//! and the few replies the sidecar writes itself.

mod reply;
mod request;
mod scan;

pub use reply::*;
pub use request::{command, parse_request, peek_get, write_command, Request};
pub use scan::FrameScanner;

pub use crate::config::Limits;

/// A frame that can never become valid: the connection answers `-ERR Protocol error: ...`
/// and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub &'static str);

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
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    Some(if negative { -n } else { n })
}
