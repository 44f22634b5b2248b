//! Errors at the sidecar's boundaries, and the one place they become `-ERR` replies.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::protocol::{write_error, ProtocolError, RequestError};

/// Why an upstream request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the upstream (refused, lost, handshake failed).
    #[error("upstream unavailable ({0})")]
    Unavailable(Arc<str>),
    /// The reply did not arrive within `--upstream-timeout`.
    #[error("upstream timeout")]
    Timeout,
    /// The upstream refused to set up a connection for this client with this error reply
    /// (e.g. `NOAUTH Authentication required.`): the client gets it as Redis words it.
    #[error("{0}")]
    Refused(Arc<str>),
    /// The upstream answered a request that opens a connection (HELLO/AUTH, SELECT) with
    /// this error reply (the whole frame) for a state it is in: `-BUSY`, `-LOADING`,
    /// `-MASTERDOWN`. The client gets it as it is, as a direct client's command would; the
    /// connection is tried again.
    #[error("{}", String::from_utf8_lossy(.0).trim_end())]
    Replied(Bytes),
    /// The upstream answered, and refused the credentials of `--upstream` (or of a client's
    /// identity) while a connection was set up: `WRONGPASS`, or a password the server has
    /// no use for. A configuration error, not an outage: the text is the server's, the
    /// password taken out.
    #[error("upstream authentication failed ({0})")]
    AuthFailed(Arc<str>),
    /// The upstream address leads back to this sidecar's own listener (`--upstream`).
    #[error("upstream is this sidecar itself (--upstream leads back to its own listener)")]
    Itself,
    /// `--max-pinned` upstream connections are pinned to clients already.
    #[error("max number of clients reached")]
    MaxPinned,
    /// Every upstream route (db, protocol, user) has a pool in use and none may be added.
    #[error("too many upstream routes ({0} pools in use; see --max-upstream-routes)")]
    TooManyRoutes(usize),
}

impl UpstreamError {
    /// Builds an `Unavailable` error from any message.
    pub fn unavailable(reason: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Unavailable(reason.to_string().into())
    }
}

/// Appends the client-facing reply for an upstream failure.
pub fn write_upstream_error(out: &mut BytesMut, e: &UpstreamError) {
    match e {
        UpstreamError::Refused(reply) => write_error(out, reply),
        UpstreamError::Replied(frame) => out.extend_from_slice(frame),
        UpstreamError::Itself | UpstreamError::MaxPinned => write_error(out, &format!("ERR {e}")),
        _ => write_error(out, &format!("ERR nearcache: {e}")),
    }
}

/// Appends the client-facing reply for a malformed request.
pub fn write_protocol_error(out: &mut BytesMut, e: &ProtocolError) {
    write_error(out, &format!("ERR {e}"));
}

/// Appends the reply for a refused client request (Redis's own text), after which the
/// connection closes.
pub fn write_request_error(out: &mut BytesMut, e: &RequestError) {
    e.write_reply(out);
}

/// Appends the reply for a command the sidecar does not proxy (the command table of docs/behaviour.md
/// says why for each).
pub fn write_not_supported(out: &mut BytesMut, name: &[u8]) {
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let why = match name.as_str() {
        "CLIENT KILL" => {
            "client ids here are the sidecar's, not the upstream's; run it on the upstream"
        }
        _ => "the replication protocol goes to the upstream directly",
    };
    write_error(
        out,
        &format!("ERR nearcache: {name} is not supported ({why})"),
    );
}
