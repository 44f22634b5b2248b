//! The connection's side of ACL rules for L1 (see [`crate::acl`]): whether this session's
//! identity may be answered from L1 by a command, learning it from replies, and ACL
//! changes passing through.

use std::sync::Arc;

use bytes::Bytes;

use crate::acl::{Acl, Marks, Read};
use crate::connection::handlers::Ctx;
use crate::connection::observers::Observers;
use crate::protocol::decode::is_error;
use crate::protocol::Request;
use crate::upstream::Router;

/// What a fetch learns from its reply about the identity that sent it.
pub(in crate::connection) struct Learn {
    acl: Arc<Acl>,
    marks: Arc<Marks>,
    read: Read,
    taken: u64,
}

impl Learn {
    /// A reply to the command itself that is not an error permits it (from the epoch the
    /// request was sent in).
    pub(in crate::connection) fn reply(&self, frame: &Bytes) {
        if !is_error(frame) {
            self.acl.learn(&self.marks, self.read, self.taken);
        }
    }
}

impl<R: Router> Ctx<R> {
    /// Whether L1 may answer `read` for this session's identity: the upstream ran it for
    /// this identity in the current ACL epoch (or it ever did, while stale hits are served
    /// because the upstream is unreachable and nothing can be learned).
    #[inline]
    pub(in crate::connection) fn permitted(&self, read: Read) -> bool {
        let link_up = self.router.link_up();
        Observers::admits(&self.services, &self.session.marks, read, link_up)
    }

    /// Taken before sending `read` upstream; its reply tells.
    pub(in crate::connection) fn learning(&self, read: Read) -> Learn {
        Learn {
            acl: self.services.acl.clone(),
            marks: self.session.marks.clone(),
            read,
            taken: self.services.acl.epoch(),
        }
    }

    fn forget_rules(&self) {
        self.services.acl.forget();
        self.services.l1.flush_all();
    }
}

/// `ACL SETUSER`/`DELUSER`/`LOAD`: what was learned, and L1 (key patterns may have
/// narrowed), is dropped before it is sent and again when its reply arrives, so no
/// fetch that crossed it teaches anything.
pub(in crate::connection) async fn change_rules<R: Router>(cx: &mut Ctx<R>, req: Request) {
    cx.forget_rules();
    let result = cx.ask(req.raw, 1).await;
    cx.forget_rules();
    match result {
        Ok(frames) => cx.replies.ready(&frames[0]),
        Err(e) => cx.replies.error(&e),
    }
}
