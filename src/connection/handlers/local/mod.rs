//! Commands that read or change per-client state: SELECT, AUTH, HELLO, RESET, QUIT,
//! CLIENT SETNAME/GETNAME, and INFO (which adds the sidecar's own section), parsed once
//! into a [`Command`]. Each runs after every earlier reply of the batch is written.

pub(in crate::connection) mod command;
mod hello;
mod info;

use bytes::{Bytes, BytesMut};

use super::Ctx;
use crate::command::Local;
use crate::connection::Flow;
use crate::error::UpstreamError;
use crate::protocol::decode::is_error;
use crate::protocol::{
    null, write_bulk, write_command, write_decimal, write_error, Request, Resp, OK, RESET,
};
use crate::upstream::Router;
use crate::upstream::{Credentials, Route};
pub(in crate::connection) use command::Command;
pub(in crate::connection) use hello::with_client_id;

impl<R: Router> Ctx<R> {
    /// Moves the session to the route's pool; unchanged when the route cannot get one.
    pub(in crate::connection) fn set_route(
        &mut self,
        db: u32,
        resp: Resp,
        user: u32,
    ) -> Result<(), UpstreamError> {
        let pool = self.router.try_pool(Route { db, resp, user })?;
        let s = &mut self.session;
        if user != s.user {
            s.marks = self.services.acl.marks(user);
        }
        (s.db, s.resp, s.user, s.pool) = (db, resp, user, pool);
        Ok(())
    }

    /// `SCRIPT KILL` / `FUNCTION KILL` go on a fresh connection as the client's user: on
    /// the shared ones they would queue behind the very script they are meant to stop.
    pub(in crate::connection) async fn kill(&mut self, req: Request) {
        match self
            .services
            .upstream
            .one_off_as(self.session.user, &req.raw)
            .await
        {
            Ok(reply) => self.replies.ready(&reply),
            Err(e) => self.replies.error(&e),
        }
    }

    /// Sends `bytes` (holding `replies` commands) on the session's slot; returns the frames.
    pub(in crate::connection) async fn call(
        &mut self,
        bytes: Bytes,
        replies: usize,
    ) -> Option<Vec<Bytes>> {
        match self.ask(bytes, replies).await {
            Ok(frames) => Some(frames),
            Err(e) => {
                self.replies.error(&e);
                None
            }
        }
    }

    /// `SELECT n` is checked by the upstream on the shared connection, which is switched
    /// back in the same write; the session then routes to database `n`.
    async fn select(&mut self, db: Option<u32>, req: Request) {
        let mut bytes = BytesMut::from(&req.raw[..]);
        let current = self.session.db.to_string();
        write_command(&mut bytes, &[b"SELECT", current.as_bytes()]);
        let Some(frames) = self.call(bytes.freeze(), 2).await else {
            return;
        };
        if let (Some(db), false) = (db, is_error(&frames[0])) {
            if let Err(e) = self.set_route(db, self.session.resp, self.session.user) {
                return self.replies.error(&e);
            }
        }
        self.replies.ready(&frames[0]);
    }

    /// `AUTH` is checked on a fresh upstream connection; on success the session's commands
    /// go through connections authenticated as that user.
    async fn auth(&mut self, creds: Option<Credentials>, req: Request) {
        let reply = match self.services.upstream.one_off(req.raw.clone()).await {
            Ok(reply) => reply,
            Err(e) => return self.replies.error(&e),
        };
        if !is_error(&reply) {
            if let Some(creds) = creds {
                self.offer_to_control(&creds);
                let routed = self
                    .services
                    .upstream
                    .identity(creds)
                    .and_then(|user| self.set_route(self.session.db, self.session.resp, user));
                if let Err(e) = routed {
                    return self.replies.error(&e);
                }
                self.load_table_as_client();
            }
        }
        self.replies.ready(&reply);
    }

    /// Credentials a client authenticated with, offered to the control connection when the
    /// sidecar has none of its own (a password-protected upstream): the invalidation link
    /// then comes up with the first client that authenticates, as the command table loads.
    pub(in crate::connection) fn offer_to_control(&self, creds: &Credentials) {
        if self.services.upstream.own_credentials().current().is_none() {
            self.services.control.offer(creds);
        }
    }

    /// After a client authenticated: when the upstream's command table is not loaded yet
    /// (it refused the sidecar's own connection), load it over this client's route, once
    /// per identity, without delaying the client's reply.
    pub(in crate::connection) fn load_table_as_client(&self) {
        let user = self.session.user;
        if !self.services.table.claim(user) {
            return;
        }
        let route = Route {
            db: self.session.db,
            resp: Resp::V2,
            user,
        };
        let pool = self.services.upstream.pool(route);
        let shared = self.services.clone();
        crate::lifecycle::spawn(async move {
            if shared.table.load_for_client(&pool, user).await {
                crate::services::learn_max_bulk(&shared, &pool).await;
            }
        });
    }

    fn set_name(&mut self, name: &Bytes) {
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            let mut out = BytesMut::new();
            write_error(
                &mut out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
            return self.replies.ready_bytes(out.freeze());
        }
        self.session.name = Some(name.clone()).filter(|n| !n.is_empty());
        self.replies.ready(OK);
    }
}

/// Runs a local command (after every reply owed before it is written).
pub(in crate::connection) async fn run<R: Router>(
    cx: &mut Ctx<R>,
    local: Local,
    req: Request,
) -> Flow {
    match Command::parse(local, &req) {
        Command::Select(_) if cx.router.slotted() && cx.select_in_cluster(&req.args) => {}
        Command::Select(db) => cx.select(db, req).await,
        Command::Auth(creds) => cx.auth(creds, req).await,
        Command::Hello(hello) => cx.hello(hello, req).await,
        Command::Info => cx.info(req).await,
        Command::Reset => {
            // As Redis: the client becomes `default` (unauthenticated unless `nopass`).
            let user = cx.services.upstream.default_identity();
            if let Err(e) = cx.set_route(cx.services.config.upstream.db, Resp::V2, user) {
                cx.replies.error(&e);
                return Flow::Continue;
            }
            cx.session.name = None;
            cx.reset_reply();
            cx.replies.ready(RESET);
        }
        Command::Kill => cx.kill(req).await,
        Command::Nearcache => super::nearcache::run(cx, req).await,
        Command::Quit => {
            cx.replies.ready(OK);
            return Flow::Close;
        }
        Command::ClientSetName(name) => cx.set_name(&name),
        Command::ClientReply(mode) => cx.client_reply(&mode),
        Command::ClientUnblock => cx.client_unblock(&req.args).await,
        Command::ClientKill => cx.client_kill(&req.args).await,
        Command::ClientId => {
            let mut out = BytesMut::new();
            out.extend_from_slice(b":");
            write_decimal(&mut out, cx.session.id as i64);
            cx.replies.ready_bytes(out.freeze());
        }
        Command::ClientGetName => {
            let mut out = BytesMut::new();
            match &cx.session.name {
                Some(name) => write_bulk(&mut out, name),
                None => out.extend_from_slice(null(cx.session.resp)),
            }
            cx.replies.ready_bytes(out.freeze());
        }
    }
    Flow::Continue
}
