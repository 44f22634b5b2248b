//! What a pinned upstream connection is doing, learned from the requests sent on it and the
//! frames it sends back: which frame answers which request (the rest are pushed messages),
//! what each answered request changed, and whether the connection is clean again.
//!
//! Nothing here is predicted from requests alone where a reply can tell: a command is
//! queued by a transaction when its reply is `+QUEUED`, a subscription exists when its
//! confirmation says so. Only the database a request's keys are in is predicted (a SELECT
//! may still be on its way), and then every candidate database is evicted.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use crate::command::Invalidation;
use crate::protocol::decode::{array_elements, is_error, push_elements};
use crate::protocol::Resp;
use crate::upstream::Credentials;

/// A per-connection switch of the upstream's that must be off before the connection is
/// given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::connection) enum Flag {
    /// `CLIENT TRACKING on`: the application's own client-side cache.
    Tracking = 1,
    /// `CLIENT NO-EVICT on`.
    NoEvict = 2,
    /// `CLIENT NO-TOUCH on`.
    NoTouch = 4,
    /// `READONLY` (a cluster replica's reads).
    ReadOnly = 8,
}

/// The subscription families (each has its own set and its own confirmations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::connection) enum Family {
    Channel,
    Pattern,
    Shard,
}

/// What a request sent on the pinned connection does once its reply arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::connection) enum Effect {
    /// May write these keys: evicted when the reply arrives (or at EXEC when queued).
    Plain(Invalidation),
    /// A reply the sidecar asked for itself: not written to the client.
    Swallow,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Monitor,
    /// `SELECT db`.
    Select(u32),
    /// `AUTH [user] pass`.
    Auth(Credentials),
    /// `HELLO ver [AUTH user pass] [SETNAME name]`.
    Hello {
        resp: Resp,
        creds: Option<Credentials>,
        name: Option<Option<Bytes>>,
    },
    /// `CLIENT SETNAME name` (empty clears it).
    SetName(Option<Bytes>),
    /// A subscribe-family command: `count` channels named, or `None` for an UNSUBSCRIBE
    /// form without arguments (one confirmation per subscription, at least one).
    Subscribe {
        family: Family,
        subscribe: bool,
        count: Option<usize>,
    },
    /// Turns a [`Flag`] on or off.
    Set(Flag, bool),
}

/// A request sent on the pinned connection and not answered yet.
#[derive(Debug)]
pub(in crate::connection) struct Expect {
    pub(in crate::connection) effect: Effect,
    /// Confirmations still owed by a subscribe-family command (known once it is the oldest).
    left: Option<usize>,
    /// May wait on the server for its own timeout (no upstream timeout applies).
    pub(in crate::connection) blocking: bool,
    /// The client asked not to get this reply (`CLIENT REPLY OFF|SKIP`).
    muted: bool,
}

/// What a reply changed for the session, applied before the reply reaches the client.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::connection) enum Applied {
    Evict(Invalidation),
    Select(u32),
    Auth(Credentials),
    Hello {
        resp: Resp,
        creds: Option<Credentials>,
        name: Option<Option<Bytes>>,
        /// The HELLO's own reply (not an element of EXEC's): its `id` is rewritten.
        direct: bool,
    },
    SetName(Option<Bytes>),
}

/// How one frame from the pinned connection is handled.
#[derive(Debug)]
pub(in crate::connection) enum Frame {
    /// A pushed message (pub/sub, tracking invalidation, MONITOR line): relayed as is.
    Message,
    /// A subscribe-family confirmation of the oldest request.
    Confirmation,
    /// The reply to the oldest request; `swallow` when the sidecar sent that request.
    Reply {
        applied: Vec<Applied>,
        swallow: bool,
    },
}

/// The state of one pinned connection.
#[derive(Debug)]
pub(in crate::connection) struct PinState {
    expect: VecDeque<Expect>,
    /// Effects of the commands queued by MULTI (present while a transaction is open).
    queued: Option<Vec<Effect>>,
    watching: bool,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shards: HashSet<Bytes>,
    monitor: bool,
    flags: u8,
    /// MULTI was sent and no EXEC/DISCARD after it: requests sent now are probably queued.
    sent_multi: bool,
    /// Databases the keys of a request sent now may be in (more than one while a SELECT
    /// is unanswered or queued).
    dbs: Vec<u32>,
    /// The connection's protocol (RESP2 pub/sub messages are arrays, RESP3's are pushes).
    resp: Resp,
    /// Something changed that the session could not follow: never give the connection back.
    pub(in crate::connection) sticky: bool,
}

impl PinState {
    /// A clean connection in database `db`, speaking `resp`.
    pub(in crate::connection) fn new(db: u32, resp: Resp) -> PinState {
        PinState {
            expect: VecDeque::new(),
            queued: None,
            watching: false,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shards: HashSet::new(),
            monitor: false,
            flags: 0,
            sent_multi: false,
            dbs: vec![db],
            resp,
            sticky: false,
        }
    }

    /// Nothing owed and nothing set: the connection may go back to being idle.
    pub(in crate::connection) fn clean(&self) -> bool {
        self.expect.is_empty()
            && self.queued.is_none()
            && !self.sent_multi
            && !self.watching
            && !self.subscribed()
            && !self.monitor
            && self.flags == 0
            && !self.sticky
    }

    /// No reply is owed.
    pub(in crate::connection) fn idle(&self) -> bool {
        self.expect.is_empty()
    }

    /// The oldest request owed a reply waits only as long as its own timeout says.
    pub(in crate::connection) fn oldest_blocks(&self) -> bool {
        self.expect.front().is_some_and(|e| e.blocking)
    }

    /// Replies owed.
    pub(in crate::connection) fn owed(&self) -> usize {
        self.expect.len()
    }

    /// A transaction is open (as far as replies tell; only meaningful when [`idle`]).
    pub(in crate::connection) fn in_multi(&self) -> bool {
        self.queued.is_some() || self.sent_multi
    }

    /// MULTI was sent and not closed by EXEC/DISCARD yet.
    pub(in crate::connection) fn multi_sent(&self) -> bool {
        self.sent_multi
    }

    /// In RESP2 subscribe mode only the subscribe family, PING, QUIT and RESET are
    /// accepted: the upstream answers everything else.
    pub(in crate::connection) fn resp2_subscribed(&self) -> bool {
        self.resp == Resp::V2 && self.subscribed()
    }

    fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shards.is_empty())
    }

    /// Databases the keys of a request sent now may be in.
    pub(in crate::connection) fn dbs(&self) -> &[u32] {
        &self.dbs
    }

    /// Back to one database once nothing is owed (called with the session's).
    pub(in crate::connection) fn settle(&mut self, db: u32) {
        if self.expect.is_empty() && self.queued.is_none() && !self.sent_multi {
            self.dbs.clear();
            self.dbs.push(db);
        }
    }

    /// Records a request sent now.
    #[cfg(test)]
    pub(in crate::connection) fn sent(&mut self, effect: Effect, blocking: bool) {
        self.sent_muted(effect, blocking, false);
    }

    /// Records a request sent now, whose reply is not written to the client when `muted`
    /// (what it changed is applied all the same).
    pub(in crate::connection) fn sent_muted(
        &mut self,
        effect: Effect,
        blocking: bool,
        muted: bool,
    ) {
        match &effect {
            Effect::Multi => self.sent_multi = true,
            Effect::Exec | Effect::Discard => self.sent_multi = false,
            Effect::Select(db) if !self.dbs.contains(db) => self.dbs.push(*db),
            _ => {}
        }
        if self.monitor {
            // Replies and MONITOR lines cannot be told apart: everything is relayed.
            return;
        }
        self.expect.push_back(Expect {
            effect,
            left: None,
            blocking,
            muted,
        });
    }

    /// Decides what `frame` is and, for a reply, what it changed.
    pub(in crate::connection) fn receive(&mut self, frame: &Bytes) -> Frame {
        if self.monitor {
            return Frame::Message;
        }
        let oldest_subscribes = matches!(
            self.expect.front(),
            Some(Expect {
                effect: Effect::Subscribe { .. },
                ..
            })
        );
        let kind = frame.first().copied();
        let pubsub = match kind {
            Some(b'>') => true,
            Some(b'*') => self.resp == Resp::V2 && (self.subscribed() || oldest_subscribes),
            _ => false,
        };
        if pubsub {
            if let Some((head, elements)) = pubsub_frame(frame) {
                if let Some((family, subscribe)) = confirmation(&head) {
                    if oldest_subscribes {
                        self.confirm(family, subscribe, elements.get(1));
                        return Frame::Confirmation;
                    }
                } else if is_message(&head) {
                    return Frame::Message;
                }
            }
            if kind == Some(b'>') {
                return Frame::Message;
            }
        }
        let Some(expect) = self.expect.pop_front() else {
            // Nothing owed: a frame the sidecar cannot place is relayed as it came.
            return Frame::Message;
        };
        let swallow = expect.effect == Effect::Swallow || expect.muted;
        let mut applied = Vec::new();
        self.reply(expect.effect, frame, true, &mut applied);
        Frame::Reply { applied, swallow }
    }

    /// A confirmation for the oldest (subscribe-family) request.
    fn confirm(&mut self, family: Family, subscribe: bool, name: Option<&Bytes>) {
        let front = self
            .expect
            .front_mut()
            .expect("a subscribe request is owed");
        let Effect::Subscribe { count, .. } = front.effect else {
            unreachable!("checked by the caller")
        };
        let set = match family {
            Family::Channel => &mut self.channels,
            Family::Pattern => &mut self.patterns,
            Family::Shard => &mut self.shards,
        };
        let left = front
            .left
            .get_or_insert_with(|| count.unwrap_or(set.len()).max(1));
        *left -= 1;
        if let Some(name) = name.and_then(bulk_payload) {
            if subscribe {
                set.insert(name);
            } else {
                set.remove(&name);
            }
        }
        if *left == 0 {
            self.expect.pop_front();
        }
    }

    /// Applies the reply `frame` of a request with `effect`; `direct` when it is not an
    /// element of EXEC's reply.
    fn reply(&mut self, effect: Effect, frame: &Bytes, direct: bool, out: &mut Vec<Applied>) {
        let error = is_error(frame);
        if let (true, Some(queued)) = (direct && &frame[..] == b"+QUEUED\r\n", &mut self.queued) {
            queued.push(effect);
            return;
        }
        match effect {
            // Even an error may follow writes (a script that failed half way).
            Effect::Plain(inv) if inv != Invalidation::None => out.push(Applied::Evict(inv)),
            Effect::Swallow => {}
            Effect::Multi if !error => self.queued = Some(Vec::new()),
            Effect::Exec => {
                if let Some(queued) = self.queued.take() {
                    self.watching = false;
                    self.exec(queued, frame, out);
                }
            }
            Effect::Discard if self.queued.take().is_some() => self.watching = false,
            Effect::Watch if !error => self.watching = true,
            Effect::Unwatch if !error => self.watching = false,
            Effect::Monitor if !error => self.monitor = true,
            Effect::Set(flag, on) if !error => {
                if on {
                    self.flags |= flag as u8;
                } else {
                    self.flags &= !(flag as u8);
                }
            }
            Effect::Select(db) if !error => out.push(Applied::Select(db)),
            Effect::Auth(creds) if !error => out.push(Applied::Auth(creds)),
            Effect::Hello { resp, creds, name } if !error => {
                self.resp = resp;
                out.push(Applied::Hello {
                    resp,
                    creds,
                    name,
                    direct,
                });
            }
            Effect::SetName(name) if !error => out.push(Applied::SetName(name)),
            _ => {}
        }
    }

    /// EXEC's reply: an array runs every queued effect (its writes are evicted even where
    /// an element is an error); a nil or an error (EXECABORT) ran nothing.
    fn exec(&mut self, queued: Vec<Effect>, frame: &Bytes, out: &mut Vec<Applied>) {
        if frame.first() != Some(&b'*') || frame.starts_with(b"*-1") {
            return;
        }
        let elements = array_elements(frame).filter(|e| e.len() == queued.len());
        if elements.is_none() {
            // Replies cannot be matched to commands: evict what any may have written and
            // keep the connection (the session cannot follow its state).
            self.sticky = true;
        }
        for (i, effect) in queued.into_iter().enumerate() {
            match (&elements, effect) {
                (Some(elements), effect) => self.reply(effect, &elements[i], false, out),
                (None, Effect::Plain(inv)) => out.push(Applied::Evict(inv)),
                (None, _) => {}
            }
        }
    }
}

/// The head (first element) and elements of an array or push frame whose first element is
/// a bulk string.
fn pubsub_frame(frame: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    let elements = match frame.first()? {
        b'>' => push_elements(frame)?,
        b'*' => array_elements(frame)?,
        _ => return None,
    };
    let head = bulk_payload(elements.first()?)?;
    Some((head, elements))
}

/// The payload of a bulk string frame.
fn bulk_payload(frame: &Bytes) -> Option<Bytes> {
    if frame.first() != Some(&b'$') || frame.starts_with(b"$-1") {
        return None;
    }
    let nl = frame.iter().position(|&b| b == b'\n')?;
    Some(frame.slice(nl + 1..frame.len().checked_sub(2)?))
}

fn confirmation(head: &[u8]) -> Option<(Family, bool)> {
    let lower = head.to_ascii_lowercase();
    Some(match &lower[..] {
        b"subscribe" => (Family::Channel, true),
        b"unsubscribe" => (Family::Channel, false),
        b"psubscribe" => (Family::Pattern, true),
        b"punsubscribe" => (Family::Pattern, false),
        b"ssubscribe" => (Family::Shard, true),
        b"sunsubscribe" => (Family::Shard, false),
        _ => return None,
    })
}

fn is_message(head: &[u8]) -> bool {
    [&b"message"[..], b"pmessage", b"smessage"]
        .iter()
        .any(|m| head.eq_ignore_ascii_case(m))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
