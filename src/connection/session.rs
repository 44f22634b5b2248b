//! One client's session: what the sidecar keeps for it between requests (database,
//! protocol, identity and its ACL marks, name, reply mode) and the route they make, with
//! the client's lane into that route's pool and its kept pinned connection.

use std::sync::Arc;

use bytes::Bytes;

use super::handlers::pinned::Pin;
use super::handlers::reply_mode::ReplyMode;
use crate::acl::Marks;
use crate::protocol::Resp;
use crate::upstream::{Lane, Route, Router};

/// Per-client state kept by the sidecar (the upstream connections are shared).
pub(super) struct Session<R: Router> {
    /// This client connection's id (`CLIENT ID`), unique in the process, from 1.
    pub(super) id: u64,
    pub(super) db: u32,
    pub(super) resp: Resp,
    pub(super) user: u32,
    /// What the identity `user` is known to be allowed (shared by its sessions).
    pub(super) marks: Arc<Marks>,
    pub(super) name: Option<Bytes>,
    /// This client's slot in `pool`, kept while its calls are in flight.
    pub(super) lane: Lane,
    pub(super) pool: Arc<R::Pool>,
    /// The client's own upstream connection, clean, kept from its last pinned state.
    pub(super) parked: Option<Pin<R::Dedicated>>,
    /// Which replies the client gets (`CLIENT REPLY`).
    pub(super) reply: ReplyMode,
}

impl<R: Router> Session<R> {
    /// The route the session's commands go by.
    pub(super) fn route(&self) -> Route {
        Route {
            db: self.db,
            resp: self.resp,
            user: self.user,
        }
    }
}
