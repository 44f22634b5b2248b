//! Who may run which `NEARCACHE` subcommand. The client's own Redis rights decide, and the
//! upstream is asked for them as that client (on its route: its user), never the
//! sidecar's own rights (which may be an admin's):
//!
//! 1. A client Redis would not serve yet gets Redis's `-NOAUTH Authentication required.`
//!    for every subcommand, `HELP` included (Redis serves only `AUTH` and `HELLO` before
//!    authentication). A client that authenticated, or that runs as the sidecar's own
//!    credentials, is served; so is one that did not, on a sidecar without credentials,
//!    while the upstream serves the route's connections (their handshake's PING was not
//!    answered `-NOAUTH`, see `Upstream::serves_anonymous`: what its forwarded commands
//!    get, known without a round trip, so `STATS` answers while the upstream hangs);
//!    otherwise a `PING` on its route asks (a `-NOAUTH` reply, or the handshake's, is the
//!    client's reply).
//! 2. `STATS`, `HELP`, `NAMESPACES`, `FLUSH` (this L1 only: a cost, never a wrong answer)
//!    and `SLOWLOG HELP` need nothing more.
//! 3. `HOTKEYS` and `SLOWLOG GET`/`LEN` show what the client's user may see (see
//!    `profile`); `SLOWLOG RESET` needs Redis's `SLOWLOG RESET`.
//! 4. What acts on every sidecar needs the Redis right for what it causes: `INVALIDATE`,
//!    `DELPATTERN` and `FLUSH ALL` publish on the invalidation channel, so they need
//!    `PUBLISH` on it; `INVALIDATE`'s patterns reach keys as `SCAN MATCH` does, so it also
//!    needs `SCAN` (`DELPATTERN` runs its `SCAN` and `UNLINK` as the client, so Redis checks
//!    those as they run). `WARM` runs its `SCAN` and reads as the client (see `crate::warm`).
//!
//! Rights of rule 4 and `SLOWLOG RESET` are asked with [`Upstream::queued`]: on a fresh
//! connection of the client's route, `MULTI`, the command, `DISCARD`. Redis checks ACL rules
//! when it queues a command, so `+QUEUED` or its `-NOPERM` is the answer running it would
//! get, and nothing runs (no subscriber sees the `PUBLISH`). A refusal is the client's reply
//! as Redis words it, and nothing is evicted anywhere; a user Redis refuses `MULTI` gets
//! that refusal. There is no side-effect-free way without `MULTI`: `ACL DRYRUN` and
//! `ACL GETUSER` need admin rights, and a real `PUBLISH` would need the bus's message.
//! A right granted is kept per identity like the ACL marks of L1 reads (`crate::acl`), until
//! the rules change through the sidecar or `--acl-recheck` passes.
//!
//! [`Upstream::queued`]: crate::upstream::Upstream::queued

use bytes::Bytes;

use super::Sub;
use crate::acl::Right;
use crate::connection::handlers::Ctx;
use crate::protocol::decode::is_error;
use crate::protocol::{command, Resp};
use crate::upstream::Router;
use crate::upstream::{Queued, Route};

/// What the `PUBLISH` of a permission check carries (it is discarded, never published).
const PROBE_MESSAGE: &[u8] = b"nearcache permission check (discarded)";

impl<R: Router> Ctx<R> {
    /// Whether the client may run `sub` with `params` (after its arity was checked); when
    /// not, its refusal is the queued reply.
    pub(in crate::connection) async fn admit(&mut self, sub: Sub, params: &[Bytes]) -> bool {
        if !self.may_talk().await {
            return false;
        }
        let first_is = |word: &[u8]| params.first().is_some_and(|p| p.eq_ignore_ascii_case(word));
        let needs: &[Right] = match sub {
            Sub::Invalidate => &[Right::Scan, Right::Publish],
            Sub::DelPattern => &[Right::Publish],
            Sub::Flush if first_is(b"ALL") => &[Right::Publish],
            Sub::Slowlog if params.len() == 1 && first_is(b"RESET") => &[Right::SlowlogReset],
            _ => &[],
        };
        self.require(needs).await
    }

    /// Rule 1: whether Redis would serve this client now; when not, its `-NOAUTH` is the
    /// queued reply. (Also for `INFO` of the sidecar's own sections only, which holds what
    /// `STATS` does.)
    pub(in crate::connection) async fn may_talk(&mut self) -> bool {
        let own = self.services.upstream.own_credentials().current();
        if self.session.user != 0 || own.is_some() {
            return true; // authenticated, by the client or with the sidecar's credentials
        }
        if self.services.upstream.serves_anonymous() == Some(true) {
            return true; // as the route's own connections are served
        }
        match self.ask(command(&[b"PING"]), 1).await {
            Ok(frames) if frames[0].starts_with(b"-NOAUTH") => {
                self.replies.ready(&frames[0]);
                false
            }
            Ok(_) => true,
            Err(e) => {
                self.replies.error(&e);
                false
            }
        }
    }

    /// Whether the client's user has every one of `rights`: those not known in this ACL
    /// epoch are asked in one queued check; the first refusal is the queued reply.
    async fn require(&mut self, rights: &[Right]) -> bool {
        let acl = self.services.acl.clone();
        let marks = self.session.marks.clone();
        let unknown: Vec<Right> = rights
            .iter()
            .copied()
            .filter(|&r| !acl.has(&marks, r))
            .collect();
        if unknown.is_empty() {
            return true;
        }
        let taken = acl.epoch();
        let checks: Vec<Bytes> = unknown.iter().map(|&r| self.check_of(r)).collect();
        let route = Route {
            db: self.session.db,
            resp: Resp::V2,
            user: self.session.user,
        };
        match self.services.upstream.queued(route, &checks).await {
            Ok(Queued::Replies(replies)) => {
                for (&right, reply) in unknown.iter().zip(&replies) {
                    if is_error(reply) {
                        self.replies.ready(reply);
                        return false;
                    }
                    acl.grant(&marks, right, taken);
                }
                true
            }
            Ok(Queued::MultiRefused(reply)) => {
                self.replies.ready(&reply);
                false
            }
            Err(e) => {
                self.replies.error(&e);
                false
            }
        }
    }

    /// The command whose queueing tells whether the user has `right`.
    fn check_of(&self, right: Right) -> Bytes {
        match right {
            Right::Publish => {
                let channel = self.services.config.invalidation_channel.as_bytes();
                command(&[b"PUBLISH", channel, PROBE_MESSAGE])
            }
            Right::Scan => command(&[b"SCAN", b"0"]),
            Right::SlowlogGet => command(&[b"SLOWLOG", b"GET", b"0"]),
            Right::SlowlogReset => command(&[b"SLOWLOG", b"RESET"]),
        }
    }

    /// Whether the client's user may run Redis's own `SLOWLOG GET` (an admin, who sees
    /// every user's entries): asked with `SLOWLOG GET 0` on its route (no side effect, an
    /// empty reply), kept like the other rights. An upstream that cannot be asked counts
    /// as a refusal.
    pub(in crate::connection) async fn sees_every_slow_call(&mut self) -> bool {
        let acl = self.services.acl.clone();
        let marks = self.session.marks.clone();
        if acl.has(&marks, Right::SlowlogGet) {
            return true;
        }
        let taken = acl.epoch();
        match self.ask(self.check_of(Right::SlowlogGet), 1).await {
            Ok(frames) if !is_error(&frames[0]) => {
                acl.grant(&marks, Right::SlowlogGet, taken);
                true
            }
            _ => false,
        }
    }

    /// The ACL user this client's calls run as; `None` for an identity dropped meanwhile.
    pub(in crate::connection) fn user_name(&self) -> Option<Bytes> {
        self.services.upstream.user_name(self.session.user)
    }
}
