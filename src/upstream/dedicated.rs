//! Connections of a single client's own (pinned): opened like a pool's, in the client's
//! route (database, protocol, user), then handed over whole. The client's session reads
//! and writes it directly; nothing else ever uses it, and it is closed when dropped. Also
//! [`Upstream::queued`], a permission check run on such a connection.

use parking_lot::Mutex;
use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::stream::UpstreamStream;

use super::{handshake, Credentials, Route, Upstream};
use crate::error::UpstreamError;
use crate::protocol::decode::is_error;
use crate::protocol::write_command;

/// What [`Upstream::queued`] learned.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Redis refused `MULTI` itself (this reply): nothing was queued.
    MultiRefused(Bytes),
    /// The reply to each command queued: `+QUEUED` (the user may run it) or an error
    /// (`-NOPERM ...`: Redis's own refusal, worded for that command).
    Replies(Vec<Bytes>),
}

/// An upstream client id no connection has: what a sidecar client id without a pinned
/// connection is translated to (Redis answers as for any unknown id).
pub const NO_UPSTREAM_ID: u64 = i64::MAX as u64;

/// The upstream client id of each client's pinned connection, by the client's own id
/// (`CLIENT ID` through the sidecar): how `CLIENT UNBLOCK` and `CLIENT TRACKING ...
/// REDIRECT`, which name clients by the ids the application knows, reach the upstream.
#[derive(Debug, Default)]
pub struct PinnedIds(Mutex<HashMap<u64, u64>>);

impl PinnedIds {
    /// `client`'s pinned connection is `upstream` there.
    pub fn insert(&self, client: u64, upstream: u64) {
        self.lock().insert(client, upstream);
    }

    /// `client`'s pinned connection is closed.
    pub fn remove(&self, client: u64) {
        self.lock().remove(&client);
    }

    /// The upstream id of `client`'s pinned connection, or [`NO_UPSTREAM_ID`].
    pub fn upstream(&self, client: u64) -> u64 {
        self.lock().get(&client).copied().unwrap_or(NO_UPSTREAM_ID)
    }

    /// The map (a panic elsewhere while holding it leaves it usable: each change is one
    /// insert or remove).
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, u64>> {
        self.0.lock()
    }
}

impl Upstream {
    /// [`Upstream::dedicated`], and the connection's upstream client id (`CLIENT ID`, one
    /// more round trip, bounded by `timeout`; `None` when the user may not run it).
    pub async fn dedicated_with_id(
        &self,
        route: Route,
        timeout: std::time::Duration,
    ) -> Result<(UpstreamStream, Option<u64>), UpstreamError> {
        let mut stream = self.dedicated(route).await?;
        let ask = async {
            let mut out = BytesMut::new();
            write_command(&mut out, &[b"CLIENT", b"ID"]);
            stream
                .send(&out)
                .await
                .map_err(UpstreamError::unavailable)?;
            let mut buf = BytesMut::with_capacity(64);
            handshake::read_frame(&mut stream, &mut buf).await
        };
        let reply = tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let id = reply
            .strip_prefix(b":")
            .and_then(|r| r.strip_suffix(b"\r\n"))
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok());
        Ok((stream, id))
    }

    /// Opens a connection in `route`'s state for one client. It talks to the endpoint of
    /// [`Upstream::generation`] at the time of the call or later: its holder closes it when
    /// the endpoint switches from that generation.
    pub async fn dedicated(&self, route: Route) -> Result<UpstreamStream, UpstreamError> {
        let creds = self.credentials(route.user)?;
        let (stream, _) = handshake::connect(&self.target, route, creds.as_ref()).await?;
        Ok(stream)
    }

    /// Asks Redis whether `route`'s user may run each of `commands` without running any:
    /// on a fresh connection of the route, `MULTI`, then (only once Redis accepted it, so
    /// that no command can run outside the transaction) the commands and `DISCARD` in one
    /// write. Redis checks ACL rules when it queues a command (`+QUEUED`, or `-NOPERM` worded
    /// as for running it) and `DISCARD` drops them all: a check as exact as running the
    /// command, with no side effect (a `PUBLISH` reaches no subscriber).
    pub async fn queued(&self, route: Route, commands: &[Bytes]) -> Result<Queued, UpstreamError> {
        let check = async {
            let mut stream = self.dedicated(route).await?;
            let mut buf = BytesMut::with_capacity(256);
            let mut multi = BytesMut::new();
            write_command(&mut multi, &[b"MULTI"]);
            stream
                .send(&multi)
                .await
                .map_err(UpstreamError::unavailable)?;
            let reply = handshake::read_frame(&mut stream, &mut buf).await?;
            if is_error(&reply) {
                return Ok(Queued::MultiRefused(reply));
            }
            let mut out = BytesMut::new();
            for c in commands {
                out.extend_from_slice(c);
            }
            write_command(&mut out, &[b"DISCARD"]);
            stream
                .send(&out)
                .await
                .map_err(UpstreamError::unavailable)?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(handshake::read_frame(&mut stream, &mut buf).await?);
            }
            handshake::read_frame(&mut stream, &mut buf).await?;
            Ok(Queued::Replies(replies))
        };
        let bound = self.target.connect_timeout + self.target.timeout;
        tokio::time::timeout(bound, check)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// The ACL user name identity `user` authenticates as (`default` when it sends no
    /// user name, or no credentials at all); `None` for an identity dropped meanwhile.
    pub fn user_name(&self, user: u32) -> Option<Bytes> {
        match self.credentials(user) {
            Ok(Some(c)) => Some(super::user_name(&c)),
            Ok(None) => Some(Bytes::from_static(b"default")),
            Err(_) => None,
        }
    }

    /// The credentials identity `user` connects with (`None`: no AUTH).
    pub(super) fn credentials(&self, user: u32) -> Result<Option<Credentials>, UpstreamError> {
        match user {
            0 => Ok(self.target.credentials.current()),
            super::DEFAULT_USER => Ok(None),
            id => {
                let mut routes = self.lock();
                let creds = self.registry.identity(&mut routes, id);
                Ok(Some(creds.ok_or_else(|| {
                    UpstreamError::unavailable("credentials expired; AUTH again")
                })?))
            }
        }
    }
}
