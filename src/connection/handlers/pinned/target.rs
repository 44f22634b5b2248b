//! Where a pinned connection goes in a Redis Cluster: to the node that owns the slot of the
//! first key of the command that pins (WATCH, a blocking call, SSUBSCRIBE by its channel,
//! XREAD by its first stream). MULTI names no key: it is answered here and the connection
//! is opened at the first keyed command of the transaction (MULTI is then sent before it),
//! so the transaction runs where its keys live; a transaction without a key runs on any
//! node, as does one whose client waits for the reply of a keyless command (nothing more
//! is pipelined behind it). A connection kept from the client's last pinned request is taken again only when
//! it is on the node wanted.

use std::collections::VecDeque;

use bytes::Bytes;

use std::sync::atomic::Ordering::Relaxed;

use super::{Pin, Waiting};
use crate::command::CommandTable;
use crate::connection::{ClientStream, Connection};
use crate::protocol::{is, Request, OK};
use crate::upstream::Router;

/// Requests held after a MULTI answered here, at most: a transaction this long without a
/// key runs on any node.
const MAX_HELD: usize = 64;

/// Redis's reply to a MULTI inside a transaction.
const NESTED_MULTI: &[u8] = b"-ERR MULTI calls can not be nested\r\n";

/// What a pinned connection starts with.
pub(super) struct Start {
    /// The slot whose node the connection is opened on (`None`: any node).
    pub(super) slot: Option<u16>,
    /// The requests to relay first, in order.
    pub(super) requests: VecDeque<Request>,
    /// MULTI was answered here: it is sent (its reply dropped) before `requests`.
    pub(super) multi: bool,
    /// A malformed request read after them: answered once they are, then the client goes.
    pub(super) malformed: Option<Waiting>,
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Where the pinned connection for `first` goes and what it starts with; `None` when
    /// the client went (or the sidecar stops) while a MULTI waited for its first key.
    pub(super) async fn pin_start(&mut self, first: Request) -> Option<Start> {
        let services = self.cx.services.clone();
        let table = services.table.get();
        let mut start = Start {
            slot: None,
            requests: VecDeque::new(),
            multi: false,
            malformed: None,
        };
        if !self.cx.router.slotted() {
            start.requests.push_back(first);
            return Some(start);
        }
        if !(is(&first.args[0], b"MULTI") && first.args.len() == 1) {
            start.slot = pin_key(&first, table).map(crate::upstream::cluster::slot);
            start.requests.push_back(first);
            return Some(start);
        }
        self.cx.count(&first);
        self.cx.replies.ready(OK);
        self.cx.served_one();
        start.multi = true;
        let configured = self.cx.services.config.limits;
        let limits =
            configured.with_upstream_max_bulk((self.cx.services.upstream_max_bulk).load(Relaxed));
        loop {
            let req = match self.io.next_request(&limits) {
                Ok(Some(req)) => req,
                // The client waits for the reply of a keyless command held here: the
                // transaction opens on any node rather than keep it waiting.
                Ok(None) if !start.requests.is_empty() => return Some(start),
                Ok(None) => {
                    self.flush().await.ok()?;
                    tokio::select! {
                        biased;
                        _ = self.stopping.cancelled() => return None,
                        _ = self.killed.signal.notified() => return None,
                        read = self.io.read() => if !matches!(read, Ok(1..)) {
                            return None;
                        },
                    }
                    continue;
                }
                Err(e) => {
                    start.malformed = Some(Waiting::Malformed(e));
                    return Some(start);
                }
            };
            if is(&req.args[0], b"MULTI") && req.args.len() == 1 {
                // Nested: Redis's error, the transaction goes on (nothing is flagged).
                self.cx.count(&req);
                self.cx.replies.ready(NESTED_MULTI);
                self.cx.served_one();
                continue;
            }
            let slot = pin_key(&req, table).map(crate::upstream::cluster::slot);
            let ends = [&b"EXEC"[..], b"DISCARD", b"QUIT", b"RESET"]
                .iter()
                .any(|name| is(&req.args[0], name));
            start.requests.push_back(req);
            if slot.is_some() || ends || start.requests.len() >= MAX_HELD {
                start.slot = slot;
                return Some(start);
            }
        }
    }

    /// The connection kept from the last time when it is still usable, else a new one.
    /// In a Redis Cluster, on the node that owns `slot` (any node for `None`).
    pub(super) async fn take_pin(
        &mut self,
        slot: Option<u16>,
    ) -> Result<Pin<R::Dedicated>, crate::error::UpstreamError> {
        let route = self.route();
        let name = self.cx.session.name.clone();
        if let Some(mut pin) = self.cx.session.parked.take() {
            let router = &self.cx.router;
            let placed = match (slot, pin.slot) {
                (None, _) => true,
                (Some(slot), Some(on)) => router.node_of(slot) == router.node_of(on),
                (Some(_), None) => !router.slotted(),
            };
            if pin.route == route
                && placed
                && pin.alive()
                && pin.generation == self.cx.router.generation()
            {
                if pin.name != name {
                    pin.name_as(name);
                }
                return Ok(pin);
            }
        }
        // At `--max-pinned`, the command that would pin is refused as Redis refuses a client
        // at its `maxclients`; the session and the pooled connections go on.
        let permit = (self.cx.services.pinned_slots.clone())
            .try_acquire_owned()
            .map_err(|_| {
                self.cx.services.stats.pinned_refused.fetch_add(1, Relaxed);
                crate::error::UpstreamError::MaxPinned
            })?;
        let timeout = self.cx.services.config.upstream_timeout;
        // Read before connecting: a switch while connecting closes the new connection too.
        let generation = self.cx.router.generation();
        let (stream, upstream_id) = self.cx.router.dedicated(route, slot, timeout).await?;
        let keep = self.cx.services.config.upstream_idle_timeout;
        let mut pin = Pin::new(stream, route, keep, self.cx.services.stats.clone(), permit);
        pin.generation = generation;
        pin.slot = slot;
        pin.register(
            &self.cx.services.pinned_ids,
            self.cx.session.id,
            upstream_id,
        );
        if name.is_some() {
            pin.name_as(name);
        }
        Ok(pin)
    }
}

/// The key whose slot places a pinned connection: the command's first key (a SSUBSCRIBE's
/// first channel), or for commands whose keys move, the first one they name.
pub(super) fn pin_key<'a>(req: &'a Request, table: &CommandTable) -> Option<&'a [u8]> {
    let args = &req.args;
    let at = |i: usize| args.get(i).map(|k: &Bytes| &k[..]);
    if let Some(first) = table.lookup(args).and_then(|s| s.first_key) {
        return at(usize::from(first));
    }
    let name = &args[0][..];
    let named = |names: &[&[u8]]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
    if named(&[b"XREAD", b"XREADGROUP"]) {
        let streams = args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
        return at(streams + 1);
    }
    // `<timeout> numkeys key ...` and `script numkeys key ...`.
    let numkeys_at = if named(&[
        b"BLMPOP",
        b"BZMPOP",
        b"EVAL",
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ]) {
        2
    } else if named(&[b"LMPOP", b"ZMPOP", b"SINTERCARD", b"ZINTERCARD", b"ZUNION"]) {
        1
    } else {
        return None;
    };
    let numkeys: usize = std::str::from_utf8(at(numkeys_at)?).ok()?.parse().ok()?;
    (numkeys > 0).then(|| at(numkeys_at + 1)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(a: &[&str]) -> Option<String> {
        let args: Vec<&[u8]> = a.iter().map(|s| s.as_bytes()).collect();
        let req = Request::from_args(&args);
        pin_key(&req, CommandTable::builtin()).map(|k| String::from_utf8_lossy(k).into_owned())
    }

    #[test]
    fn the_key_that_places_a_pinned_connection_is_the_first_one_named() {
        let some = |k: &str| Some(k.to_owned());
        assert_eq!(key_of(&["WATCH", "a", "b"]), some("a"));
        assert_eq!(key_of(&["blpop", "l1", "l2", "0"]), some("l1"));
        assert_eq!(key_of(&["SSUBSCRIBE", "ch", "ch2"]), some("ch"));
        assert_eq!(
            key_of(&["XREAD", "BLOCK", "0", "streams", "s1", "s2", "$", "$"]),
            some("s1")
        );
        let group = ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"];
        assert_eq!(key_of(&group), some("s"));
        assert_eq!(key_of(&["BLMPOP", "0", "2", "x", "y", "LEFT"]), some("x"));
        assert_eq!(key_of(&["EVAL", "return 1", "1", "k"]), some("k"));
        // No key: any node.
        for keyless in [
            &["MULTI"][..],
            &["SUBSCRIBE", "ch"],
            &["PSUBSCRIBE", "c*"],
            &["EVAL", "return 1", "0"],
            &["XREAD", "STREAMS"],
            &["BLMPOP", "0", "x"],
            &["MONITOR"],
        ] {
            assert_eq!(key_of(keyless), None, "{keyless:?}");
        }
    }
}
