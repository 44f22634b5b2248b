//! Commands that read or change per-client state: SELECT, AUTH, HELLO, RESET, QUIT,
//! CLIENT SETNAME/GETNAME, and INFO (which adds the sidecar's own section).
//! Each runs after every earlier reply of the batch is written.

use bytes::{Bytes, BytesMut};

use super::pinned::credentials;
use super::Ctx;
use crate::command::Local;
use crate::connection::Flow;
use crate::error::UpstreamError;
use crate::info;
use crate::protocol::decode::{is_error, text};
use crate::protocol::{
    command, null, write_bulk, write_command, write_decimal, write_error, Request, Resp, OK, RESET,
};
use crate::upstream::Router;
use crate::upstream::{Credentials, Route};

impl<R: Router> Ctx<R> {
    pub(in crate::connection) async fn local(&mut self, local: Local, req: Request) -> Flow {
        match local {
            Local::Select => self.select(req).await,
            Local::Auth => self.auth(req).await,
            Local::Hello => self.hello(req).await,
            Local::Info => self.info(req).await,
            Local::Reset => {
                // As Redis: the client becomes `default` (unauthenticated unless `nopass`).
                let user = self.services.upstream.default_identity();
                if let Err(e) = self.set_route(self.services.config.upstream.db, Resp::V2, user) {
                    self.replies.error(&e);
                    return Flow::Continue;
                }
                self.session.name = None;
                self.reset_reply();
                self.replies.ready(RESET);
            }
            Local::Kill => self.kill(req).await,
            Local::Nearcache => self.nearcache(req).await,
            Local::Quit => {
                self.replies.ready(OK);
                return Flow::Close;
            }
            Local::ClientSetName => self.set_name(&req.args[2]),
            Local::ClientReply => self.client_reply(&req.args[2]),
            Local::ClientUnblock => self.client_unblock(&req.args).await,
            Local::ClientKill => self.client_kill(&req.args).await,
            Local::ClientId => {
                let mut out = BytesMut::new();
                out.extend_from_slice(b":");
                write_decimal(&mut out, self.session.id as i64);
                self.replies.ready_bytes(out.freeze());
            }
            Local::ClientGetName => {
                let mut out = BytesMut::new();
                match &self.session.name {
                    Some(name) => write_bulk(&mut out, name),
                    None => out.extend_from_slice(null(self.session.resp)),
                }
                self.replies.ready_bytes(out.freeze());
            }
        }
        Flow::Continue
    }

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
    async fn select(&mut self, req: Request) {
        let db = (req.args.len() == 2)
            .then(|| std::str::from_utf8(&req.args[1]).ok()?.parse::<u32>().ok())
            .flatten();
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
    async fn auth(&mut self, req: Request) {
        let reply = match self.services.upstream.one_off(req.raw.clone()).await {
            Ok(reply) => reply,
            Err(e) => return self.replies.error(&e),
        };
        if !is_error(&reply) {
            if let Some(creds) = credentials(&req.args[1..]) {
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

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    async fn hello(&mut self, req: Request) {
        let args = &req.args;
        let resp = match args.get(1).map(|v| &v[..]) {
            None => Some(self.session.resp),
            Some(b"2") => Some(Resp::V2),
            Some(b"3") => Some(Resp::V3),
            Some(_) => None,
        };
        let Some(resp) = resp else {
            // Let the upstream word its own error; the shared connection does not change.
            let raw = command(&[b"HELLO", &args[1]]);
            if let Some(frames) = self.call(raw, 1).await {
                self.replies.ready(&frames[0]);
            }
            return;
        };
        let mut user = self.session.user;
        let mut name = self.session.name.clone();
        if args.len() > 2 {
            // Options (AUTH, SETNAME) are checked by the upstream on a fresh connection.
            let mut check = BytesMut::new();
            let authenticates = args.iter().any(|a| a.eq_ignore_ascii_case(b"AUTH"));
            if let (false, Some(c)) = (authenticates, &self.services.config.upstream.password) {
                let u = self
                    .services
                    .config
                    .upstream
                    .username
                    .as_deref()
                    .unwrap_or("default");
                write_command(&mut check, &[b"AUTH", u.as_bytes(), c.as_bytes()]);
            }
            let prelude = !check.is_empty();
            check.extend_from_slice(&req.raw);
            let reply = match self
                .services
                .upstream
                .one_off_many(check.freeze(), 1 + prelude as usize)
                .await
            {
                Ok(reply) => reply,
                Err(e) => return self.replies.error(&e),
            };
            if is_error(&reply) {
                if let (true, Some(pass)) = (prelude, &self.services.config.upstream.password) {
                    return self.replies.ready(&without_password(&reply, pass));
                }
                return self.replies.ready(&reply);
            }
            let mut i = 2;
            while i < args.len() {
                if args[i].eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
                    let creds = credentials(&args[i + 1..i + 3]).expect("two arguments");
                    self.offer_to_control(&creds);
                    user = match self.services.upstream.identity(creds) {
                        Ok(user) => user,
                        Err(e) => return self.replies.error(&e),
                    };
                    i += 3;
                } else if args[i].eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
                    name = Some(args[i + 1].clone()).filter(|n| !n.is_empty());
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }
        let previous = (self.session.db, self.session.resp, self.session.user);
        if let Err(e) = self.set_route(self.session.db, resp, user) {
            return self.replies.error(&e);
        }
        let hello: &[&[u8]] = match resp {
            Resp::V2 => &[b"HELLO", b"2"],
            Resp::V3 => &[b"HELLO", b"3"],
        };
        match self.call(command(hello), 1).await {
            Some(frames) => {
                if user != previous.2 {
                    self.load_table_as_client();
                }
                self.session.name = name;
                let reply = with_client_id(&frames[0], self.session.id);
                self.replies.ready(&reply);
            }
            None => {
                // Back to the pool held until just now: it still exists.
                let _ = self.set_route(previous.0, previous.1, previous.2);
            }
        }
    }

    /// Credentials a client authenticated with, offered to the control connection when the
    /// sidecar has none of its own (a password-protected upstream): the invalidation link
    /// then comes up with the first client that authenticates, as the command table loads.
    pub(in crate::connection) fn offer_to_control(&self, creds: &Credentials) {
        if self.services.config.upstream.password.is_none() {
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
        tokio::spawn(async move {
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

    /// `INFO`: the upstream's sections, plus the sidecar's own when asked for (or by
    /// default): `nearcache` names them all, `nearcache_l1` (etc.) one of them.
    pub(in crate::connection) async fn info(&mut self, req: Request) {
        let sections = &req.args[1..];
        let named = |names: &[&[u8]]| {
            sections
                .iter()
                .any(|s| names.iter().any(|n| s.eq_ignore_ascii_case(n)))
        };
        let all: &[&[u8]] = &[b"nearcache", b"all", b"everything", b"default"];
        let every_one = sections.is_empty() || named(all);
        let ours = |s: &&Bytes| {
            s.eq_ignore_ascii_case(b"nearcache") || info::named(&self.services, s).is_some()
        };
        let picked: Vec<String> = if every_one {
            vec![info::sections(&self.services)]
        } else {
            sections
                .iter()
                .filter_map(|s| info::named(&self.services, s))
                .collect()
        };
        let theirs: Vec<&[u8]> = std::iter::once(&b"INFO"[..])
            .chain(sections.iter().filter(|s| !ours(s)).map(|s| &s[..]))
            .collect();
        let mut body = Vec::new();
        let mut verbatim = self.session.resp == Resp::V3;
        let asks_upstream = theirs.len() > 1 || sections.is_empty();
        // Only the sidecar's sections: no upstream reply says whether the client may ask.
        if !asks_upstream && !self.may_talk().await {
            return;
        }
        if asks_upstream {
            let Some(frames) = self.call(command(&theirs), 1).await else {
                return;
            };
            let Some((upstream_text, v)) = text(&frames[0]) else {
                return self.replies.ready(&frames[0]);
            };
            body.extend_from_slice(upstream_text);
            verbatim = v;
            if !picked.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
        }
        body.extend_from_slice(picked.join("\r\n").as_bytes());
        let mut out = BytesMut::new();
        if verbatim {
            out.extend_from_slice(format!("={}\r\ntxt:", body.len() + 4).as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n");
        } else {
            write_bulk(&mut out, &body);
        }
        self.replies.ready(&out);
    }
}

/// The HELLO reply with its `id` field set to the client's own connection id (as
/// `CLIENT ID` answers) instead of the shared upstream connection's.
/// An error reply to a request sent after the sidecar's own `AUTH` (the HELLO prelude),
/// as it is, or, when it quotes the sidecar's password (a server that words errors with
/// the arguments), as a simple error with the password taken out.
fn without_password(reply: &[u8], pass: &str) -> Bytes {
    let text = String::from_utf8_lossy(reply);
    let own = Credentials {
        user: None,
        pass: Bytes::copy_from_slice(pass.as_bytes()),
    };
    let redacted = own.redact(&text);
    if redacted == text {
        return Bytes::copy_from_slice(reply);
    }
    // `-ERR ...\r\n`, or a RESP3 `!<len>\r\nERR ...\r\n`: the message alone, one line.
    let message = match redacted.strip_prefix('!') {
        Some(blob) => blob.split_once("\r\n").map_or(blob, |(_, m)| m),
        None => redacted.strip_prefix('-').unwrap_or(&redacted),
    };
    let mut out = BytesMut::new();
    write_error(
        &mut out,
        message.trim_end().replace(['\r', '\n'], " ").as_str(),
    );
    out.freeze()
}

pub(in crate::connection) fn with_client_id(reply: &Bytes, id: u64) -> Bytes {
    const FIELD: &[u8] = b"$2\r\nid\r\n:";
    let Some(at) = reply.windows(FIELD.len()).position(|w| w == FIELD) else {
        return reply.clone();
    };
    let start = at + FIELD.len();
    let Some(len) = reply[start..].iter().position(|&b| b == b'\r') else {
        return reply.clone();
    };
    let mut out = BytesMut::with_capacity(reply.len() + 8);
    out.extend_from_slice(&reply[..start]);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(&reply[start + len..]);
    out.freeze()
}

#[cfg(test)]
mod password_tests {
    use super::without_password;

    #[test]
    fn an_error_quoting_the_sidecars_password_loses_it() {
        let pass = "s3cret-upstream-pass";
        let plain = b"-WRONGPASS invalid username-password pair\r\n";
        assert_eq!(&without_password(plain, pass)[..], plain);
        for reply in [
            &b"-ERR unknown command 'AUTH', with args beginning with: 'svc' 's3cret-upstream-pass' \r\n"[..],
            b"!35\r\nERR oops s3cret-upstream-pass here\r\n",
        ] {
            let got = without_password(reply, pass);
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("-ERR ") && text.ends_with("\r\n"), "{text:?}");
            assert!(!text.contains("s3cret"), "{text:?}");
            assert_eq!(text.matches("\r\n").count(), 1, "{text:?}");
        }
    }
}
