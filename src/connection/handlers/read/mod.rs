//! GET and MGET: answered from L1 where possible; misses join another client's fetch of the
//! same key or lead their own (GET + PTTL pipelined, so the entry never outlives the key).
//! `mget` has MGET itself: its parts, its own fetch and its reply.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::acl::Read;
use crate::cache::{CacheKey, Cached, Fetched, Flight, Generation, Join, KeyRef};
use crate::connection::group::{Segment, CACHING_NO};
use crate::connection::handlers::split::Own;
use crate::connection::handlers::Ctx;
use crate::connection::replies::{How, Pending};
use crate::error::UpstreamError;
use crate::protocol::decode::{array_elements, is_error};
use crate::protocol::{command, null, write_command};
use crate::upstream::{OnReply, Router};

mod mget;
pub(in crate::connection) use mget::mget;

/// One element of an MGET reply.
enum Part {
    /// From L1, or already known.
    Known(Bytes),
    /// Element `i` of this connection's own upstream MGET.
    Own(usize),
    /// Another client's fetch of this key.
    Follow(oneshot::Receiver<Fetched>, Bytes),
}

/// An MGET waiting for some of its elements.
pub(in crate::connection) struct MgetReply {
    parts: Vec<Part>,
    /// This connection's own fetch of the misses.
    own: Option<Own>,
}

/// How a miss is answered.
enum Miss {
    /// By another client's fetch.
    Follow(oneshot::Receiver<Fetched>),
    /// By this connection's own fetch.
    Lead(Lead),
}

/// A key this connection fetches itself.
pub(in crate::connection) struct Lead {
    pub(in crate::connection) key: CacheKey,
    taken: Generation,
    flight: Flight,
    /// Fetched with its `PTTL` to fill L1; false for a key L1 does not admit (see
    /// [`crate::cache::L1::admits`]): its element is only passed on.
    fills: bool,
}

impl<R: Router> Ctx<R> {
    fn cache_key(&self, key: Bytes) -> CacheKey {
        CacheKey {
            user: self.session.user,
            db: self.session.db,
            key,
        }
    }

    /// L1 lookup, unless this client has writes in flight or the upstream is down (and
    /// serving stale hits is not enabled).
    pub(in crate::connection) fn lookup(&self, key: &[u8]) -> Option<(Cached, usize)> {
        if !self.may_read_l1() {
            return None;
        }
        let s = &self.session;
        self.services.l1.get_in(&KeyRef {
            user: s.user,
            db: s.db,
            key,
        })
    }

    /// Whether L1 may answer this client now: it has no writes in flight, and either the
    /// upstream is reachable and the invalidation link is up (or tracking is off), or the
    /// upstream is down and serving stale hits is enabled.
    #[inline]
    pub(in crate::connection) fn may_read_l1(&self) -> bool {
        let shared = &self.services;
        self.unacked_writes == 0
            && shared.l1.enabled()
            && if self.router.link_up() {
                self.router.coherent()
            } else {
                shared.config.serve_stale_when_down
            }
    }

    /// A GET off the hit path, followed for N+1 detection (reported once per shape and
    /// window); `now`: the request's clock reading, if it took one.
    fn follow_get(&mut self, key: &[u8], now: Option<Instant>) {
        if let Some(found) = self.observers.single_get(&self.services, key, now) {
            let name = self.session.name.as_deref();
            let profiler = &self.services.profiler;
            profiler.report_n_plus_one(&found, &self.client_addr(), name);
        }
    }

    /// The client's `ip:port`, as the slow log and the N+1 report show it.
    pub(in crate::connection) fn client_addr(&self) -> String {
        match self.addrs {
            Some((addr, _)) => addr.to_string(),
            None => "?:0".to_owned(),
        }
    }

    /// Has the upstream asked for `key` in the background and compared with the reply L1
    /// just served (see [`crate::audit`]).
    #[cold]
    pub(in crate::connection) fn audit_hit(&self, key: Bytes, served: Bytes) {
        let key = self.cache_key(key);
        // (The audit asks the services' own upstream, whatever routes this client.)
        let pool = self.services.upstream.pool(self.session.route());
        self.services.audit.start(key, served, pool);
    }

    fn cached_reply(&self, cached: Cached) -> Bytes {
        match cached {
            Cached::Value(bulk) => bulk,
            Cached::Missing => Bytes::from_static(null(self.session.resp)),
        }
    }

    /// Joins another client's fetch of `key` or registers this connection's own (when
    /// `read` is not known to be permitted, only a fetch by that same command will do).
    fn join(&self, key: CacheKey, read: Read) -> Miss {
        let taken = self.services.l1.generation(&key);
        if self.unacked_writes > 0 {
            return Miss::Lead(Lead {
                flight: Flight::detached(),
                key,
                taken,
                fills: true,
            });
        }
        let fills = match self.permitted(read) {
            true => &self.services.coalescer,
            false => self.services.acl.unchecked_fills(read),
        };
        match fills.join(key.clone(), taken) {
            Join::Follow(rx) => Miss::Follow(rx),
            Join::Lead(flight) => Miss::Lead(Lead {
                key,
                taken,
                flight,
                fills: true,
            }),
        }
    }

    /// Writes `MGET k1..kn` and `PTTL k` for each that fills L1 into `bytes`; returns how
    /// many replies they get, the MGET's among them, and what fills L1 from those replies.
    /// When no key fills and `may_untrack`, the MGET goes behind `CLIENT CACHING no` (see
    /// [`Ctx::untracks`]) and its reply is the second.
    pub(in crate::connection) fn write_mget_fetch(
        &self,
        leads: Vec<Lead>,
        bytes: &mut BytesMut,
        may_untrack: bool,
    ) -> (usize, usize, OnReply) {
        // Sized once: each key is written at most twice (its MGET argument and its PTTL),
        // with at most 16 bytes of framing each time.
        let keys: usize = leads.iter().map(|l| l.key.key.len() + 16).sum();
        bytes.reserve(2 * keys + 16 * (leads.len() + 2) + CACHING_NO.len());
        let at = (may_untrack && !leads.iter().any(|l| l.fills) && self.untracks()) as usize;
        if at == 1 {
            bytes.extend_from_slice(CACHING_NO);
        }
        let mut mget: Vec<&[u8]> = Vec::with_capacity(1 + leads.len());
        mget.push(b"MGET");
        mget.extend(leads.iter().map(|l| &l.key.key[..]));
        write_command(bytes, &mget);
        for l in leads.iter().filter(|l| l.fills) {
            write_command(bytes, &[b"PTTL", &l.key.key]);
        }
        let replies = at + 1 + leads.iter().filter(|l| l.fills).count();
        let shared = self.services.clone();
        let learn = self.learning(Read::Mget);
        let sent_at = Instant::now();
        let on_reply = Box::new(
            move |frames: &[Bytes], may_fill: Option<crate::cache::FilledBy>| {
                let frames = &frames[at..];
                learn.reply(&frames[0]);
                let elements = array_elements(&frames[0]).filter(|e| e.len() == leads.len());
                // The PTTL replies follow the MGET's, one per lead that fills.
                let mut pttls = frames[1..].iter();
                for (i, lead) in leads.into_iter().enumerate() {
                    let pttl = if lead.fills { pttls.next() } else { None };
                    let fetched = match (&elements, pttl) {
                        (Some(e), Some(pttl)) => {
                            let reply = &e[i];
                            let l1 = &shared.l1;
                            l1.fill(lead.key, lead.taken, sent_at, reply, pttl, false, may_fill)
                        }
                        _ => Fetched::Unknown,
                    };
                    lead.flight.complete(fetched);
                }
            },
        );
        (replies, at, on_reply)
    }

    /// Sends `MGET k1..kn` and `PTTL k` for each, filling L1 when the replies arrive (in a
    /// Redis Cluster, to the keys' slot: see `split` for keys of more than one); returns
    /// the pending reply and the request.
    pub(in crate::connection) async fn send_mget(&mut self, leads: Vec<Lead>) -> Own {
        let first = leads.first().map(|l| &l.key.key[..]);
        let slot = self.target_of(first).map(|(slot, _)| slot);
        let mut bytes = BytesMut::new();
        let (replies, at, on_reply) = self.write_mget_fetch(leads, &mut bytes, true);
        // Nothing but reads: retried once if its connection is lost.
        let bytes = bytes.freeze();
        let how = How {
            on_reply: Some(on_reply),
            writes: false,
            retryable: true,
        };
        let via = crate::connection::drain::via(&*self.router, &self.session);
        let sent = (self.replies)
            .call(&via, slot, bytes.clone(), replies, how)
            .await;
        Own::One(sent, bytes, at)
    }

    /// `GET key` forwarded as it is (a miss L1 does not admit), untracked: nothing filled;
    /// the reply still tells whether this identity may GET (see [`Ctx::learning`]).
    async fn get_plain(&mut self, key: &[u8]) {
        let get = crate::metrics::commands::GET as u16;
        let learn = self.learning(Read::Get);
        let on_reply: OnReply = Box::new(move |frames: &[Bytes], _| learn.reply(&frames[0]));
        let target = self.target_of(Some(key));
        let write = |out: &mut BytesMut| write_command(out, &[b"GET", key]);
        // Nothing is filled: Redis need not track the key either.
        let segment = match self.untracks() {
            true => Segment::Untracked,
            false => Segment::Read,
        };
        let group = self.replies.open_group_for(target);
        if group.add_with(write, segment, Some(on_reply), get) {
            self.send_unsent().await;
        }
    }

    /// `MGET key` on this connection's own upstream slot: the element for one key, or the
    /// error the whole MGET gets (e.g. `-NOPERM`).
    async fn mget_one(&mut self, key: &Bytes) -> Result<Bytes, UpstreamError> {
        let frames = (self.ask_about(command(&[b"MGET", key]), 1, Some(key))).await?;
        if is_error(&frames[0]) {
            return Ok(frames[0].clone());
        }
        Ok(array_elements(&frames[0])
            .and_then(|mut e| e.pop())
            .unwrap_or_else(|| Bytes::from_static(null(self.session.resp))))
    }
}

/// `GET key`: a hit or another client's fetch answers after everything grouped before
/// it is sent; this connection's own fetch joins the group.
pub(in crate::connection) async fn get<R: Router>(cx: &mut Ctx<R>, key: Bytes) {
    let cached = cx.permitted(Read::Get).then(|| cx.lookup(&key));
    if let Some((cached, namespace)) = cached.flatten() {
        let audit = cx.observers.on_hit(&cx.services, namespace, &key);
        cx.follow_get(&key, None);
        let reply = cx.cached_reply(cached);
        if audit {
            cx.audit_hit(key, reply.clone());
        }
        return cx.replies.ready_bytes(reply);
    }
    fetch_missing(cx, key).await;
}

/// A `GET` whose key L1 does not hold: follow another client's fetch or fetch it.
pub(in crate::connection) async fn fetch_missing<R: Router>(cx: &mut Ctx<R>, key: Bytes) {
    let namespace = cx.services.l1.namespaces().of(&key);
    cx.observers.on_miss(&cx.services, namespace, &key);
    // One reading of the clock: the N+1 window's and the fetch's send time (its entry's
    // expiry is counted from it: read before the request is sent, never after).
    let now = Instant::now();
    cx.follow_get(&key, Some(now));
    let ck = cx.cache_key(key.clone());
    cx.replies.budget.expect(1);
    if !cx.services.l1.admits(&ck, namespace) {
        // L1 is crowded and this is the key's first miss: the GET alone, nothing filled.
        return cx.get_plain(&key).await;
    }
    match cx.join(ck, Read::Get) {
        Miss::Follow(rx) => cx.replies.wait_for(Pending::Follow(rx, key)),
        Miss::Lead(lead) => {
            let shared = cx.services.clone();
            let learn = cx.learning(Read::Get);
            let sent_at = now;
            let on_reply = Box::new(
                move |frames: &[Bytes], may_fill: Option<crate::cache::FilledBy>| {
                    learn.reply(&frames[0]);
                    let (reply, pttl) = (&frames[0], &frames[1]);
                    let fetched = shared
                        .l1
                        .fill(lead.key, lead.taken, sent_at, reply, pttl, true, may_fill);
                    lead.flight.complete(fetched);
                },
            );
            cx.fetch(&key, on_reply).await;
        }
    }
}
