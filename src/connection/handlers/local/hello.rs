//! `HELLO`: the protocol version, credentials and name a client asks for, checked by the
//! upstream and then kept in the session; the reply carries the client's own id.

use bytes::{Bytes, BytesMut};

use super::command::{Hello, HelloError};
use crate::connection::handlers::Ctx;
use crate::protocol::decode::is_error;
use crate::protocol::{command, write_command, write_error, Request, Resp};
use crate::upstream::{Credentials, Router};

impl<R: Router> Ctx<R> {
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`, read by [`Hello::parse`]: an
    /// unknown option is refused as Redis 7 refuses it, a bad version is worded by the
    /// upstream, options are checked by the upstream on a fresh connection before they
    /// apply to the session.
    pub(in crate::connection) async fn hello(
        &mut self,
        hello: Result<Hello, HelloError>,
        req: Request,
    ) {
        let hello = match hello {
            Ok(hello) => hello,
            Err(HelloError::Syntax(token)) => {
                let message = HelloError::syntax_message(&token);
                return self.replies.ready_with(|out| write_error(out, &message));
            }
            Err(HelloError::Protover) => {
                // Let the upstream word its own error; the shared connection does not change.
                let raw = command(&[b"HELLO", &req.args[1]]);
                if let Some(frames) = self.call(raw, 1).await {
                    self.replies.ready(&frames[0]);
                }
                return;
            }
        };
        let resp = hello.protover.unwrap_or(self.session.resp);
        let mut user = self.session.user;
        let mut name = self.session.name.clone();
        if hello.has_options() {
            // Options (AUTH, SETNAME) are checked by the upstream on a fresh connection.
            let mut check = BytesMut::new();
            let authenticates = hello.auth.is_some();
            // The sidecar's own credentials now (the URL's, or its files' as they are now).
            let own = self.services.upstream.own_credentials().current();
            if let (false, Some(c)) = (authenticates, &own) {
                let u: &[u8] = c.user.as_deref().unwrap_or(b"default");
                write_command(&mut check, &[b"AUTH", u, &c.pass]);
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
                if let (true, Some(own)) = (prelude, &own) {
                    return self.replies.ready(&without_password(&reply, own));
                }
                return self.replies.ready(&reply);
            }
            if let Some(creds) = hello.auth {
                self.offer_to_control(&creds);
                user = match self.services.upstream.identity(creds) {
                    Ok(user) => user,
                    Err(e) => return self.replies.error(&e),
                };
            }
            if let Some(setname) = hello.setname {
                name = setname;
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
}

/// The HELLO reply with its `id` field set to the client's own connection id (as
/// `CLIENT ID` answers) instead of the shared upstream connection's.
/// An error reply to a request sent after the sidecar's own `AUTH` (the HELLO prelude),
/// as it is, or, when it quotes the sidecar's password (a server that words errors with
/// the arguments), as a simple error with the password taken out.
fn without_password(reply: &[u8], own: &Credentials) -> Bytes {
    let text = String::from_utf8_lossy(reply);
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
    use crate::upstream::Credentials;

    #[test]
    fn an_error_quoting_the_sidecars_password_loses_it() {
        let pass = &Credentials {
            user: Some("svc".into()),
            pass: "s3cret-upstream-pass".into(),
        };
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
