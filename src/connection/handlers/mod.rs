//! Command handling, per family: reads (`read`: GET, MGET), forwards (`forward`: writes
//! and everything else sent upstream as it is), the commands the sidecar answers about the
//! session itself (`local`, with `client_ids`, `reply_mode` and `acl`), its own command
//! (`nearcache`), a client's own upstream connection (`pinned`), and in front of a Redis
//! Cluster the keyless commands answered over every primary (`fanout`) and the sidecar seen
//! as one node (`one_node`: `CLUSTER ...`, `SELECT`). Each works on a
//! [`Ctx`]: the session, the replies owed, the hit-path observers and the services it may
//! touch, with requests reaching the upstream through an [`crate::upstream::Router`] (a
//! fake one in the tests). Writing the replies to the client is the connection's.

pub(in crate::connection) mod acl;
mod client_ids;
pub(in crate::connection) mod fanout;
pub(in crate::connection) mod forward;
pub(super) mod local;
mod mget_hits;
pub(in crate::connection) mod nearcache;
pub(in crate::connection) mod one_node;
pub(in crate::connection) mod pinned;
pub(in crate::connection) mod read;
mod redirect;
pub(in crate::connection) mod reply_mode;
pub(in crate::connection) mod split;

use std::sync::Arc;

use super::observers::Observers;
use super::replies::Replies;
use super::session::Session;
use super::Addrs;
use crate::protocol::Request;
use crate::services::Services;
use crate::upstream::Router;

/// What a handler works on: one client's session and owed replies, its hit-path figures,
/// and what it may touch of the sidecar (`services`, and the upstream through `router`).
pub(in crate::connection) struct Ctx<R: Router> {
    /// L1, the coalescer, the command table, ACL, the control plane, the figures.
    pub(in crate::connection) services: Arc<Services>,
    /// Where requests go upstream (the services' upstream, or a test's fake).
    pub(in crate::connection) router: Arc<R>,
    pub(in crate::connection) session: Session<R>,
    /// What the client is owed, in request order, and the bytes ready for its socket.
    pub(in crate::connection) replies: Replies,
    /// Forwarded writes whose replies have not arrived: reads behind them bypass L1 and
    /// other clients' fetches, so this client reads its own writes.
    pub(in crate::connection) unacked_writes: usize,
    /// What watches the reads: ACL check, counts, timing, hot keys, N+1, audit.
    pub(in crate::connection) observers: Observers,
    /// The upstream timeout of the reply being waited for, moved from call to call.
    pub(in crate::connection) reply_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The client's and the sidecar's addresses (`None` off a socket).
    pub(in crate::connection) addrs: Addrs,
}

impl<R: Router> Ctx<R> {
    /// Counts a request by command (the hit path counts its GETs apart).
    pub(in crate::connection) fn count(&self, req: &Request) {
        let i = crate::metrics::commands::index(req.name());
        self.services.stats.commands.add(self.session.id, i, 1);
    }

    /// Adds the batch's read counts to the shared figures.
    pub(in crate::connection) fn publish_counts(&mut self) {
        self.observers.publish(&self.services);
    }
}
