//! A client's own upstream connection, for the states a shared connection cannot hold: a
//! transaction (MULTI/EXEC, WATCH), subscriptions, a blocking call, MONITOR, the client's
//! own CLIENT TRACKING and the like.
//!
//! From the request that enters such a state on, the client's requests are relayed to a
//! connection opened in its route (database, protocol, user) and every frame that comes
//! back is relayed in arrival order, so replies and pushed messages interleave exactly as
//! Redis sent them. Reads bypass L1 and fill nothing. Each reply is matched to its request
//! (`state`): what the request wrote is evicted before the reply reaches the client (for a
//! transaction, at EXEC, and only if it ran), and SELECT/AUTH/HELLO/CLIENT SETNAME that
//! succeeded move the session. Once nothing is owed and the connection's state is clean,
//! the client goes back to the shared pool and L1, and the connection is kept for the
//! client's next pinned request; it is closed, never shared, when the client goes, RESETs,
//! or leaves it in a state the sidecar cannot follow.

mod apply;
mod effect;
mod pin;
mod state;
mod target;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::local;
use crate::command::{blocks, classify, subscribes, writes, Action, Invalidation, Local};
use crate::connection::{ClientStream, Connection, Flow, MAX_IDLE_BUFFER};
use crate::error::{write_not_supported, write_request_error, write_upstream_error};
use crate::protocol::{command, is, write_error, Request, RequestError, OK};
use crate::upstream::Route;
use crate::upstream::Router;
use effect::{effect, merge};
pub(in crate::connection) use pin::Pin;
use state::{Effect, Frame};

/// Client input read ahead while the pinned connection owes replies (more waits in the
/// client's socket).
const MAX_INPUT_AHEAD: usize = 4 * 1024 * 1024;
/// Client output buffered before it is written mid-relay.
const MAX_OUT: usize = 1024 * 1024;
/// Channel of the no-op PUBLISH sent before WAIT/WAITAOF: it moves the connection's
/// replication offset to the primary's, past every write the client made on any
/// connection, so WAIT waits for those writes (on a fresh connection it would wait for
/// nothing).
const WAIT_CHANNEL: &[u8] = b"__nearcache__:wait";

/// How a relay ended.
enum Relay {
    /// The connection is clean: keep it for the next time.
    Released,
    /// RESET: the session is reset and the connection closed.
    Reset,
    /// The client goes (QUIT, its connection or the upstream's closed, shutdown).
    Close,
}

/// A request that runs once nothing is owed.
enum Waiting {
    Request(Request),
    /// A malformed request: answered after every reply owed, then the connection closes.
    Malformed(RequestError),
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Serves `first` and the requests after it on the client's own upstream connection,
    /// until that connection is clean again (it is then kept for the next time), or the
    /// client goes.
    pub(in crate::connection) async fn pinned(&mut self, first: Request) -> Flow {
        let Some(start) = self.pin_start(first).await else {
            return Flow::Close;
        };
        let mut pin = match self.take_pin(start.slot).await {
            Ok(pin) => pin,
            Err(e) => {
                // Each request held (a MULTI answered here, what followed it) fails alike.
                for _ in 0..start.requests.len() {
                    self.cx.replies.error(&e);
                    self.cx.served_one();
                }
                if let Some(Waiting::Malformed(e)) = start.malformed {
                    self.cx
                        .replies
                        .ready_with(|out| write_request_error(out, &e));
                    return Flow::Close;
                }
                return Flow::Continue;
            }
        };
        if start.multi {
            pin.send_muted(&command(&[b"MULTI"]), Effect::Multi, false, true);
        }
        match self.relay(&mut pin, start.requests, start.malformed).await {
            Relay::Released => {
                self.cx.session.parked = Some(pin);
                Flow::Continue
            }
            Relay::Reset => Flow::Continue,
            Relay::Close => Flow::Close,
        }
    }

    pub(in crate::connection) fn route(&self) -> Route {
        let s = &self.cx.session;
        Route {
            db: s.db,
            resp: s.resp,
            user: s.user,
        }
    }

    async fn relay(
        &mut self,
        pin: &mut Pin<R::Dedicated>,
        mut next: VecDeque<Request>,
        mut malformed: Option<Waiting>,
    ) -> Relay {
        let configured = self.cx.services.config.limits;
        let limits =
            configured.with_upstream_max_bulk(self.cx.services.upstream_max_bulk.load(Relaxed));
        let timeout = self.cx.services.config.upstream_timeout;
        let shutdown = self.stopping.clone();
        let killed = self.killed.signal.clone();
        let mut waiting = None;
        loop {
            pin.state.settle(self.cx.session.db);
            if next.is_empty()
                && malformed.is_none()
                && waiting.is_none()
                && pin.out.is_empty()
                && pin.state.clean()
            {
                return Relay::Released;
            }
            while waiting.is_none() {
                let req = match next.pop_front() {
                    Some(req) => req,
                    None if malformed.is_some() => {
                        waiting = malformed.take();
                        break;
                    }
                    None => match self.io.next_request(&limits) {
                        Ok(Some(req)) => req,
                        Ok(None) => break,
                        Err(e) => {
                            waiting = Some(Waiting::Malformed(e));
                            break;
                        }
                    },
                };
                waiting = self.pin_request(pin, req).map(Waiting::Request);
                if waiting.is_none() {
                    self.cx.served_one();
                }
            }
            if pin.state.idle() {
                if let Some(w) = waiting.take() {
                    let relay = self.run_waiting(pin, w).await;
                    self.cx.served_one();
                    match relay {
                        Some(relay) => {
                            let _ = self.flush().await;
                            return relay;
                        }
                        None => continue,
                    }
                }
            }
            if !pin.out.is_empty() {
                let mut sent = pin.stream.write_all(&pin.out).await;
                if sent.is_ok() {
                    // A TLS session holds written data until flushed.
                    sent = pin.stream.flush().await;
                }
                pin.out.clear();
                if sent.is_err() {
                    return self.upstream_lost(pin).await;
                }
            }
            if self.flush().await.is_err() {
                return Relay::Close;
            }
            if waiting.is_none() && pin.state.clean() {
                return Relay::Released;
            }
            let deadline =
                (!pin.state.idle() && !pin.state.oldest_blocks()).then(|| pin.progress + timeout);
            let read_ahead = waiting.is_none() || self.io.input.len() < MAX_INPUT_AHEAD;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Relay::Close,
                _ = killed.notified() => return Relay::Close,
                // The primary was replaced: the client sees its connection drop, as it would
                // talking to Redis directly when the node goes (its library reconnects).
                _ = self.cx.router.switched(pin.generation) => return Relay::Close,
                read = pin.stream.read_buf(&mut pin.input) => match read {
                    Ok(1..) => {
                        if !self.relay_frames(pin).await {
                            return self.upstream_lost(pin).await;
                        }
                    }
                    _ => return self.upstream_lost(pin).await,
                },
                read = self.io.read(), if read_ahead => {
                    if !matches!(read, Ok(1..)) {
                        return Relay::Close;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let e = crate::error::UpstreamError::Timeout;
                    for _ in 0..pin.state.owed() {
                        write_upstream_error(self.cx.replies.written(), &e);
                    }
                    let _ = self.flush().await;
                    return Relay::Close;
                }
            }
        }
    }

    /// The pinned connection closed or broke: the client's connection is closed too (after
    /// what was relayed), as a direct client's would be; its library reconnects.
    async fn upstream_lost(&mut self, pin: &mut Pin<R::Dedicated>) -> Relay {
        let _ = self.relay_frames(pin).await;
        let _ = self.flush().await;
        Relay::Close
    }

    /// Decides how one request goes: sent on the pinned connection (`None`), or held until
    /// nothing is owed (a reply of the sidecar's own, QUIT, RESET).
    fn pin_request(&mut self, pin: &mut Pin<R::Dedicated>, req: Request) -> Option<Request> {
        self.cx.count(&req);
        let table = self.cx.services.table.get();
        let action = classify(&req, self.cx.session.db, table);
        match action {
            Action::Refuse(_) | Action::Local(Local::Quit | Local::Reset) => return Some(req),
            Action::Local(
                Local::ClientId
                | Local::ClientGetName
                | Local::Info
                | Local::Nearcache
                | Local::ClientReply
                | Local::ClientUnblock
                | Local::ClientKill
                | Local::Kill,
            ) => return Some(req),
            _ => {}
        }
        if subscribes(&req.args) && pin.state.multi_sent() {
            return Some(req);
        }
        let effect = effect(&req.args).unwrap_or_else(|| {
            let dbs = pin.state.dbs().iter();
            Effect::Plain(merge(dbs.map(|&db| writes(&req, db, table))))
        });
        let in_multi = pin.state.multi_sent();
        let blocking = !in_multi && blocks(&req.args);
        if blocking && (is(&req.args[0], b"WAIT") || is(&req.args[0], b"WAITAOF")) {
            pin.send(
                &command(&[b"PUBLISH", WAIT_CHANNEL, b""]),
                Effect::Swallow,
                false,
            );
        }
        let raw = self.cx.with_upstream_ids(&req).unwrap_or(req.raw);
        pin.send_muted(&raw, effect, blocking, self.cx.replies.muting());
        None
    }

    /// Runs a held request now that nothing is owed; `Some` ends the relay.
    async fn run_waiting(
        &mut self,
        pin: &mut Pin<R::Dedicated>,
        waiting: Waiting,
    ) -> Option<Relay> {
        let req = match waiting {
            Waiting::Request(req) => req,
            Waiting::Malformed(e) => {
                self.cx
                    .services
                    .stats
                    .rejected_protocol
                    .fetch_add(1, Relaxed);
                self.cx
                    .replies
                    .ready_with(|out| write_request_error(out, &e));
                return Some(Relay::Close);
            }
        };
        let action = classify(&req, self.cx.session.db, self.cx.services.table.get());
        match action {
            Action::Refuse(name) => {
                self.cx
                    .replies
                    .ready_with(|out| write_not_supported(out, &name));
            }
            Action::Local(Local::Quit) => {
                self.cx.replies.ready(OK);
                return Some(Relay::Close);
            }
            Action::Local(Local::Reset) => {
                local::run(&mut self.cx, Local::Reset, req).await;
                return Some(Relay::Reset);
            }
            Action::Local(Local::ClientReply) if pin.state.in_multi() => {
                let text = "ERR nearcache: CLIENT REPLY inside MULTI is not supported";
                self.cx.replies.ready_with(|out| write_error(out, text));
            }
            _ if subscribes(&req.args) && pin.state.in_multi() => {
                let name = String::from_utf8_lossy(&req.args[0]).to_ascii_uppercase();
                let text = format!("ERR nearcache: {name} inside MULTI is not supported");
                self.cx.replies.ready_with(|out| write_error(out, &text));
            }
            _ if subscribes(&req.args) => {
                self.pin_request(pin, req);
            }
            // The upstream queues these in a transaction, or refuses them in RESP2
            // subscribe mode: it answers them.
            _ if pin.state.in_multi() || pin.state.resp2_subscribed() => {
                let muted = self.cx.replies.muting();
                pin.send_muted(&req.raw, Effect::Plain(Invalidation::None), false, muted);
            }
            Action::Local(local) => {
                if local::run(&mut self.cx, local, req).await == Flow::Close {
                    return Some(Relay::Close);
                }
            }
            _ => {
                self.pin_request(pin, req);
            }
        }
        None
    }

    /// Relays every complete frame the pinned connection sent, applying what each reply
    /// changed before it reaches the client; false when the upstream broke the protocol.
    async fn relay_frames(&mut self, pin: &mut Pin<R::Dedicated>) -> bool {
        loop {
            let len = match pin.scanner.next_frame(&pin.input) {
                Ok(Some(len)) => len,
                Ok(None) => {
                    let needed = pin.scanner.needed();
                    if needed > pin.input.len() {
                        pin.input.reserve(needed - pin.input.len());
                    }
                    return true;
                }
                Err(_) => return false,
            };
            let mut frame = pin.input.split_to(len).freeze();
            if len > MAX_IDLE_BUFFER && pin.input.len() < MAX_IDLE_BUFFER {
                // What is left shares the large reply's allocation: copied out, so that the
                // allocation goes with the reply (not kept while the connection idles).
                let mut rest = BytesMut::with_capacity(pin.input.len().max(4096));
                rest.extend_from_slice(&pin.input);
                pin.input = rest;
            }
            pin.progress = Instant::now();
            match pin.state.receive(&frame) {
                Frame::Message | Frame::Confirmation => {}
                Frame::Reply { applied, swallow } => {
                    for change in applied {
                        if let Some(rewritten) = self.apply(pin, change, &frame) {
                            frame = rewritten;
                        }
                    }
                    if swallow {
                        continue;
                    }
                }
            }
            if self.cx.replies.muted_now() {
                // Wanted whatever the mute state: written before what is dropped.
                self.cx.replies.write_through(&frame);
            } else {
                self.write_frame(&frame).await;
            }
            if self.cx.replies.written().len() >= MAX_OUT && self.flush().await.is_err() {
                return true; // the client is gone: noticed on its next read
            }
        }
    }
}

/// Sleeps until `deadline`; forever without one.
pub(in crate::connection) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
