//! Connections of a single client's own (pinned): opened like a pool's, in the client's
//! route (database, protocol, user), then handed over whole. The client's session reads
//! and writes it directly; nothing else ever uses it, and it is closed when dropped.

use tokio::net::TcpStream;

use super::{handshake, Credentials, Route, Upstream};
use crate::error::UpstreamError;

impl Upstream {
    /// Opens a connection in `route`'s state for one client.
    pub async fn dedicated(&self, route: Route) -> Result<TcpStream, UpstreamError> {
        let creds = self.credentials(route.user)?;
        handshake::connect(&self.target, route, creds.as_ref()).await
    }

    /// The credentials identity `user` connects with (`None`: no AUTH).
    pub(super) fn credentials(&self, user: u32) -> Result<Option<Credentials>, UpstreamError> {
        match user {
            0 => Ok(self.target.credentials.clone()),
            super::DEFAULT_USER => Ok(None),
            id => {
                let routes = self.lock();
                let held = routes.identities.get(&id);
                let creds = held.map(|h| h.value.clone());
                Ok(Some(creds.ok_or_else(|| {
                    UpstreamError::unavailable("credentials expired; AUTH again")
                })?))
            }
        }
    }
}
