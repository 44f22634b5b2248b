//! Opening an upstream connection: connect, then the handshake that brings it into its
//! route's state (HELLO/AUTH/SELECT, a liveness PING), and one-off requests on a fresh
//! connection of their own.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::stream::UpstreamStream;

use super::{Credentials, Route, Target};
use crate::error::UpstreamError;
use crate::protocol::decode::is_error;
use crate::protocol::{write_command, FrameScanner, Resp};

/// Pause before a handshake's SELECT is sent again to a busy server.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// What a request of the handshake is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `HELLO 3 [AUTH ...]` or `AUTH ...`: the protocol and the user.
    Auth,
    /// `SELECT <db>`: must take effect, or the route's commands would run in another db.
    Select,
    /// The liveness `PING`: any reply shows that the server answers.
    Ping,
}

/// Connects and brings the connection into the route's state.
///
/// Replies that only describe the server's state (`-BUSY`, `-LOADING`, `-MASTERDOWN`) do
/// not make it unavailable: on the liveness PING the connection is up (the route's commands
/// then get those replies from Redis itself, as a direct client's would); where the request
/// must take effect (HELLO/AUTH, SELECT) the connection fails with the reply as it is, for
/// the client. Real servers accept HELLO, AUTH and SELECT while loading or cut off from
/// their master, and HELLO and AUTH while busy: only SELECT meets `-BUSY`, and is retried
/// for half the connect timeout before the client gets that `-BUSY`.
///
/// Also returns the endpoint's generation the connection was opened in: it must end when
/// the endpoint moves on (see [`super::endpoint::Endpoint::switched`]).
pub(super) async fn connect(
    target: &Target,
    route: Route,
    creds: Option<&Credentials>,
) -> Result<(UpstreamStream, u64), UpstreamError> {
    let (handshake, steps) = handshake(route, creds);
    let (address, generation) = target.endpoint.current();
    let address = address.ok_or_else(|| UpstreamError::unavailable("no primary known"))?;
    let started = Instant::now();
    if target.outbound.looped() {
        return Err(UpstreamError::Itself);
    }
    let deadline = tokio::time::Instant::now() + target.connect_timeout;
    let setup = async {
        let (mut stream, _registered) = target
            .outbound
            .connect(&address, deadline)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .send(&handshake)
            .await
            .map_err(UpstreamError::unavailable)?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut select_again = None;
        for step in steps {
            let reply = read_frame(&mut stream, &mut buf).await?;
            if !is_error(&reply) {
                continue;
            }
            match step {
                // A script or function is running: SELECT is sent again below.
                Step::Select if is_busy(&reply) => select_again = Some(reply),
                // The server answered: it is up. Only a client that must authenticate
                // first gets Redis's reply for that (see `handshake_error`).
                Step::Ping if !reply.starts_with(b"-NOAUTH") => {}
                _ if is_state_error(&reply) => return Err(UpstreamError::Replied(reply)),
                _ => return Err(handshake_error(&reply, creds)),
            }
        }
        while let Some(busy) = select_again.take() {
            // Within the connect timeout, so that waiting clients get Redis's -BUSY rather
            // than a timeout of the sidecar's.
            if started.elapsed() + BUSY_RETRY >= target.connect_timeout / 2 {
                return Err(UpstreamError::Replied(busy));
            }
            tokio::time::sleep(BUSY_RETRY).await;
            let mut select = BytesMut::new();
            write_command(&mut select, &[b"SELECT", route.db.to_string().as_bytes()]);
            stream
                .send(&select)
                .await
                .map_err(UpstreamError::unavailable)?;
            let reply = read_frame(&mut stream, &mut buf).await?;
            if is_busy(&reply) {
                select_again = Some(reply);
            } else if is_state_error(&reply) {
                return Err(UpstreamError::Replied(reply));
            } else if is_error(&reply) {
                return Err(handshake_error(&reply, creds));
            }
        }
        Ok((stream, generation))
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or_else(|_| Err(UpstreamError::unavailable("connect timed out")))
}

/// `-BUSY ...`: the server runs a script or function that has not yielded.
pub(super) fn is_busy(reply: &[u8]) -> bool {
    reply.starts_with(b"-BUSY ")
}

/// An error reply that describes the state the server is in, not the request: a direct
/// client gets it for its commands too.
fn is_state_error(reply: &[u8]) -> bool {
    [&b"-BUSY "[..], b"-LOADING ", b"-MASTERDOWN "]
        .iter()
        .any(|code| reply.starts_with(code))
}

/// The error for a handshake reply; the reply may quote the AUTH arguments (a server
/// without HELLO), so the password is taken out: the text is logged and sent to clients.
pub(super) fn handshake_error(reply: &[u8], creds: Option<&Credentials>) -> UpstreamError {
    let text = super::redact(&String::from_utf8_lossy(reply), creds);
    let text = text.trim_start_matches('-').trim_end();
    // NOAUTH: the client must authenticate itself, and its library expects Redis's own
    // reply for that. Credentials refused: the server answers, the configuration is wrong.
    // Anything else is the sidecar's problem.
    if text.starts_with("NOAUTH") {
        UpstreamError::Refused(text.into())
    } else if creds.is_some() && refuses_credentials(text) {
        UpstreamError::AuthFailed(text.into())
    } else {
        UpstreamError::unavailable(text)
    }
}

/// Whether an error reply to `AUTH` / `HELLO ... AUTH` (without its `-`) refuses the
/// credentials: `WRONGPASS` (Redis 6+, Valkey), a password the server has no use for
/// (`ERR AUTH <password> called without any password configured ...`, and Redis 5's
/// `ERR Client sent AUTH, but no password is set`) or Redis 5's `ERR invalid password`.
fn refuses_credentials(text: &str) -> bool {
    [
        "WRONGPASS",
        "ERR invalid password",
        "ERR Client sent AUTH",
        "ERR AUTH ",
    ]
    .iter()
    .any(|code| text.starts_with(code))
}

/// The requests that bring a new connection into the route's state, and what each is for.
fn handshake(route: Route, creds: Option<&Credentials>) -> (BytesMut, Vec<Step>) {
    let mut out = BytesMut::new();
    let mut steps = Vec::with_capacity(3);
    let mut push = |step: Step, args: &[&[u8]]| {
        write_command(&mut out, args);
        steps.push(step);
    };
    match (route.resp, creds) {
        (Resp::V3, Some(c)) => {
            let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
            push(Step::Auth, &[b"HELLO", b"3", b"AUTH", user, &c.pass]);
        }
        (Resp::V3, None) => push(Step::Auth, &[b"HELLO", b"3"]),
        (
            Resp::V2,
            Some(Credentials {
                user: Some(u),
                pass,
            }),
        ) => push(Step::Auth, &[b"AUTH", u, pass]),
        (Resp::V2, Some(Credentials { user: None, pass })) => push(Step::Auth, &[b"AUTH", pass]),
        (Resp::V2, None) => {}
    }
    if route.db != 0 {
        push(Step::Select, &[b"SELECT", route.db.to_string().as_bytes()]);
    }
    // A connection counts as up only once the server answers (a hung server accepts TCP).
    push(Step::Ping, &[b"PING"]);
    (out, steps)
}

/// Reads exactly one reply frame (handshake and one-off requests only).
pub(super) async fn read_frame(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
) -> Result<Bytes, UpstreamError> {
    let mut scanner = FrameScanner::default();
    loop {
        if let Some(len) = scanner
            .next_frame(buf)
            .map_err(UpstreamError::unavailable)?
        {
            return Ok(buf.split_to(len).freeze());
        }
        if stream
            .read_buf(buf)
            .await
            .map_err(UpstreamError::unavailable)?
            == 0
        {
            return Err(UpstreamError::unavailable("connection closed"));
        }
    }
}

/// Sends `replies` requests on a new connection (RESP2, no credentials) and returns the
/// first error reply, or else the last reply.
pub(super) async fn one_off(
    target: &Target,
    requests: Bytes,
    replies: usize,
) -> Result<Bytes, UpstreamError> {
    if target.outbound.looped() {
        return Err(UpstreamError::Itself);
    }
    let deadline = tokio::time::Instant::now() + target.connect_timeout;
    let address = target.endpoint.address()?;
    let exchange = async {
        let (mut stream, _registered) = target
            .outbound
            .connect(&address, deadline)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .send(&requests)
            .await
            .map_err(UpstreamError::unavailable)?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut last = Bytes::new();
        for _ in 0..replies {
            last = read_frame(&mut stream, &mut buf).await?;
            if is_error(&last) {
                break;
            }
        }
        Ok(last)
    };
    tokio::time::timeout(target.connect_timeout + target.timeout, exchange)
        .await
        .unwrap_or(Err(UpstreamError::Timeout))
}
