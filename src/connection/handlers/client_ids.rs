//! Client ids the application knows are the sidecar's (`CLIENT ID`, HELLO's `id`): the
//! commands that name another client by id — `CLIENT UNBLOCK`, `CLIENT TRACKING ...
//! REDIRECT` — are sent upstream with the id of that client's pinned connection (the one
//! it blocks or subscribes on), or with an id no connection has; `CLIENT KILL ID` closes
//! the sidecar's own client connection.

use bytes::Bytes;

use crate::connection::handlers::Ctx;
use crate::protocol::{command, Request};
use crate::upstream::Router;
use crate::upstream::NO_UPSTREAM_ID;

/// A client id as Redis reads one: an integer written the way Redis writes it.
fn canonical_id(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| n.to_string().as_bytes() == arg)
}

impl<R: Router> Ctx<R> {
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`, sent upstream (on the shared connections) with
    /// `id` translated: Redis checks the reason and the number and unblocks the client's
    /// pinned connection, whose blocked command then gets its nil or `-UNBLOCKED` reply.
    pub(in crate::connection) async fn client_unblock(&mut self, args: &[Bytes]) {
        let mut args = args.to_vec();
        args[2] = self.upstream_id(&args[2]);
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        match self.ask(command(&refs), 1).await {
            Ok(frames) => self.replies.ready(&frames[0]),
            Err(e) => self.replies.error(&e),
        }
    }

    /// `CLIENT KILL ID id [SKIPME yes|no] ...`: the upstream checks the arguments and the
    /// user's permission (the same filters, with ids none of its connections has), then
    /// the sidecar's client with that id is closed (not this one unless `SKIPME no`, as
    /// Redis); `:1` if one was, `:0` if not.
    pub(in crate::connection) async fn client_kill(&mut self, args: &[Bytes]) {
        let mut checked = args.to_vec();
        let (mut target, mut skip_me) = (None, true);
        for i in (2..args.len()).step_by(2) {
            if args[i].eq_ignore_ascii_case(b"SKIPME") {
                skip_me = !args[i + 1].eq_ignore_ascii_case(b"NO");
            } else if let Some(id) = canonical_id(&args[i + 1]).filter(|&id| id > 0) {
                target = Some(id as u64);
                checked[i + 1] = Bytes::from(NO_UPSTREAM_ID.to_string());
            }
        }
        let refs: Vec<&[u8]> = checked.iter().map(|a| &a[..]).collect();
        match self.ask(command(&refs), 1).await {
            Ok(frames) if frames[0][..] == b":0\r\n"[..] => {
                let killed = target
                    .filter(|&id| !(skip_me && id == self.session.id))
                    .is_some_and(|id| self.services.kills.kill(id));
                self.replies
                    .ready(if killed { b":1\r\n" } else { b":0\r\n" });
            }
            Ok(frames) => self.replies.ready(&frames[0]),
            Err(e) => self.replies.error(&e),
        }
    }

    /// `CLIENT TRACKING ... REDIRECT id ...` with `id` translated (see
    /// [`Connection::upstream_id`]); `None` for any other request.
    pub(in crate::connection) fn with_upstream_ids(&self, req: &Request) -> Option<Bytes> {
        let args = &req.args;
        let tracking = args.len() > 2
            && args[0].eq_ignore_ascii_case(b"CLIENT")
            && args[1].eq_ignore_ascii_case(b"TRACKING");
        if !tracking {
            return None;
        }
        let at = (2..args.len() - 1).find(|&i| args[i].eq_ignore_ascii_case(b"REDIRECT"))?;
        let mut args = args.clone();
        args[at + 1] = self.upstream_id(&args[at + 1]);
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        Some(command(&refs))
    }

    /// A client id as the application gave it, as the upstream knows that client's pinned
    /// connection. A number as Redis writes it is always translated (to an id no
    /// connection has when that client has no pinned connection: Redis then answers as
    /// for an unknown client); anything else is left for Redis to refuse as it does.
    fn upstream_id(&self, arg: &Bytes) -> Bytes {
        let Some(id) = canonical_id(arg) else {
            return arg.clone();
        };
        let upstream = match u64::try_from(id) {
            Ok(id) if id > 0 => self.services.pinned_ids.upstream(id),
            _ => return arg.clone(),
        };
        Bytes::from(upstream.to_string())
    }
}
