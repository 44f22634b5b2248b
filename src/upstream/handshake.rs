//! Opening an upstream connection: connect, then the handshake that brings it into its
//! route's state (HELLO/AUTH/SELECT, a liveness PING), and one-off requests on a fresh
//! connection of their own.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reply::is_error;
use super::{Credentials, Route, Target};
use crate::error::UpstreamError;
use crate::protocol::{write_command, FrameScanner, Resp};

/// Pause before a handshake's SELECT is sent again to a busy server.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// Connects and brings the connection into the route's state.
pub(super) async fn connect(
    target: &Target,
    route: Route,
    creds: Option<&Credentials>,
) -> Result<TcpStream, UpstreamError> {
    let (handshake, replies) = handshake(route, creds);
    let setup = async {
        let mut stream = TcpStream::connect(&target.address)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .set_nodelay(true)
            .map_err(UpstreamError::unavailable)?;
        stream
            .write_all(&handshake)
            .await
            .map_err(UpstreamError::unavailable)?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut select_again = false;
        for i in 0..replies {
            let reply = read_frame(&mut stream, &mut buf).await?;
            if is_busy(&reply) {
                // A script or function is running: the server answers, so the connection
                // is up (its commands get -BUSY as a direct client's would). Only SELECT
                // (never the last request, PING) must still take effect.
                select_again |= i + 1 < replies;
                continue;
            }
            if i + 1 == replies && reply.starts_with(b"-NOPERM") {
                // The last request is the liveness PING: a user whose ACL rules leave out
                // PING still got an answer from a live server.
                continue;
            }
            if is_error(&reply) {
                return Err(handshake_error(&reply));
            }
        }
        while select_again {
            tokio::time::sleep(BUSY_RETRY).await;
            let mut select = BytesMut::new();
            write_command(&mut select, &[b"SELECT", route.db.to_string().as_bytes()]);
            stream
                .write_all(&select)
                .await
                .map_err(UpstreamError::unavailable)?;
            let reply = read_frame(&mut stream, &mut buf).await?;
            if is_error(&reply) && !is_busy(&reply) {
                return Err(handshake_error(&reply));
            }
            select_again = is_busy(&reply);
        }
        Ok(stream)
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or_else(|_| Err(UpstreamError::unavailable("connect timed out")))
}

/// `-BUSY ...`: the server runs a script or function that has not yielded.
pub(super) fn is_busy(reply: &[u8]) -> bool {
    reply.starts_with(b"-BUSY ")
}

fn handshake_error(reply: &[u8]) -> UpstreamError {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_start_matches('-').trim_end();
    // NOAUTH: the client must authenticate itself, and its library expects Redis's own
    // reply for that. Anything else is the sidecar's problem.
    if text.starts_with("NOAUTH") {
        UpstreamError::Refused(text.into())
    } else {
        UpstreamError::unavailable(text)
    }
}

/// The requests that bring a new connection into the route's state, and how many there are.
fn handshake(route: Route, creds: Option<&Credentials>) -> (BytesMut, usize) {
    let mut out = BytesMut::new();
    let mut count = 0;
    let mut push = |args: &[&[u8]]| {
        write_command(&mut out, args);
        count += 1;
    };
    match (route.resp, creds) {
        (Resp::V3, Some(c)) => {
            let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
            push(&[b"HELLO", b"3", b"AUTH", user, &c.pass]);
        }
        (Resp::V3, None) => push(&[b"HELLO", b"3"]),
        (
            Resp::V2,
            Some(Credentials {
                user: Some(u),
                pass,
            }),
        ) => push(&[b"AUTH", u, pass]),
        (Resp::V2, Some(Credentials { user: None, pass })) => push(&[b"AUTH", pass]),
        (Resp::V2, None) => {}
    }
    if route.db != 0 {
        push(&[b"SELECT", route.db.to_string().as_bytes()]);
    }
    // A connection counts as up only once the server answers (a hung server accepts TCP).
    push(&[b"PING"]);
    (out, count)
}

/// Reads exactly one reply frame (handshake and one-off requests only).
async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes, UpstreamError> {
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
    let exchange = async {
        let mut stream = TcpStream::connect(&target.address)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .write_all(&requests)
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
