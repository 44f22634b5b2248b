//! `INFO`: the upstream's sections with the sidecar's own added.

use bytes::{Bytes, BytesMut};

use crate::admin::info;
use crate::connection::handlers::Ctx;
use crate::protocol::decode::text;
use crate::protocol::{command, write_bulk, Request, Resp};
use crate::upstream::Router;

impl<R: Router> Ctx<R> {
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
        let ours = |s: &&Bytes| s.eq_ignore_ascii_case(b"nearcache") || info::is_section(s);
        let picked: Vec<String> = if every_one {
            vec![info::sections(&self.services)]
        } else {
            info::named(&self.services, sections)
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
