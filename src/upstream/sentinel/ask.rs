//! One exchange with a sentinel or a node on a connection of its own: connect, `AUTH` when
//! there are credentials, the requests, their replies; all within one bound.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::super::handshake::read_frame;
use super::super::outbound::Outbound;
use super::super::stream::UpstreamStream;
use super::super::Credentials;
use crate::protocol::decode::is_error;
use crate::protocol::write_command;

/// Connects to `address` (TLS when the upstream is `rediss+sentinel://`), authenticates
/// with `creds` and returns the replies to `requests`, all within `timeout`. An error
/// reply to `AUTH` is an error (its text may quote the password: callers redact it).
pub(super) async fn ask(
    outbound: &std::sync::Arc<Outbound>,
    address: &str,
    creds: Option<&Credentials>,
    requests: &[&[&[u8]]],
    timeout: Duration,
) -> Result<Vec<Bytes>, String> {
    let exchange = async {
        let (mut stream, buf) = open(outbound, address, creds, timeout).await?;
        let mut buf = buf;
        let mut out = BytesMut::new();
        for request in requests {
            write_command(&mut out, request);
        }
        stream.send(&out).await.map_err(|e| e.to_string())?;
        let mut replies = Vec::with_capacity(requests.len());
        for _ in requests {
            replies.push(
                read_frame(&mut stream, &mut buf)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(replies)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// A connection to `address`, authenticated with `creds` when given; the caller bounds it.
pub(in crate::upstream) async fn open(
    outbound: &std::sync::Arc<Outbound>,
    address: &str,
    creds: Option<&Credentials>,
    timeout: Duration,
) -> Result<(UpstreamStream, BytesMut), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut stream, _registered) = outbound
        .connect(address, deadline)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(512);
    if let Some(c) = creds {
        let mut auth = BytesMut::new();
        match &c.user {
            Some(user) => write_command(&mut auth, &[b"AUTH", user, &c.pass]),
            None => write_command(&mut auth, &[b"AUTH", &c.pass]),
        }
        stream.send(&auth).await.map_err(|e| e.to_string())?;
        let reply = read_frame(&mut stream, &mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if is_error(&reply) {
            let text = String::from_utf8_lossy(&reply);
            return Err(c.redact(text.trim_start_matches('-').trim_end()));
        }
    }
    Ok((stream, buf))
}
