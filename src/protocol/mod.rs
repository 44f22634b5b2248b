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
