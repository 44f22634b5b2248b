//! MGET: hits from L1, misses joined to other clients' fetches or fetched in one upstream
//! `MGET` (with a `PTTL` for each key that fills L1), the reply assembled in order.

use bytes::{Bytes, BytesMut};

use super::{Lead, MgetReply, Miss, Part};
use crate::acl::Read;
use crate::cache::{Fetched, Flight};
use crate::connection::handlers::split::Own;
use crate::connection::handlers::Ctx;
use crate::connection::replies::Pending;
use crate::connection::{ClientStream, Connection};
use crate::error::write_upstream_error;
use crate::protocol::decode::{array_elements, is_error};
use crate::protocol::{null, write_array_header};
use crate::upstream::Router;

/// `MGET key...`: hits from L1, misses joined to other clients' fetches or fetched in one
/// upstream `MGET` (with a `PTTL` each), the reply assembled in order once all are known.
pub(in crate::connection) async fn mget<R: Router>(cx: &mut Ctx<R>, keys: &[Bytes]) {
    let Err(leading) = super::super::mget_hits::all_hits(cx, keys) else {
        return;
    };
    let mut leading = leading.into_iter();
    let mut parts = Vec::with_capacity(keys.len());
    let mut leads = Vec::with_capacity(keys.len());
    // Hits picked for an audit (position, reply served).
    let mut audits = Vec::new();
    for key in keys {
        // A hit first (one of the leading hits already read, or looked up now): L1 names
        // the key's namespace, matched at most once.
        let hit = match leading.next() {
            Some(read) => Some(read),
            None => {
                (cx.lookup(key)).map(|(cached, namespace)| (cx.cached_reply(cached), namespace))
            }
        };
        if let Some((reply, namespace)) = hit {
            let audit = cx.observers.on_hit(&cx.services, namespace, key);
            if audit {
                audits.push((parts.len(), reply.clone()));
            }
            parts.push(Part::Known(reply));
            continue;
        }
        let l1 = &cx.services.l1;
        let namespaces = l1.namespaces();
        let namespace = namespaces.of(key);
        cx.observers.on_miss(&cx.services, namespace, key);
        if !namespaces.policy(namespace).cache {
            // A key of a namespace with `cache = false` (never in L1): fetched alone,
            // filling nothing.
            let key = cx.cache_key(key.clone());
            let taken = l1.generation(&key);
            let flight = Flight::detached();
            parts.push(Part::Own(leads.len()));
            leads.push(Lead {
                key,
                taken,
                flight,
                fills: true,
            });
            continue;
        }
        let ck = cx.cache_key(key.clone());
        if !l1.admits(&ck, namespace) {
            // L1 is crowded and this is the key's first miss: in the MGET, without a PTTL.
            let taken = l1.generation(&ck);
            parts.push(Part::Own(leads.len()));
            leads.push(Lead {
                key: ck,
                taken,
                flight: Flight::detached(),
                fills: false,
            });
            continue;
        }
        match cx.join(ck, Read::Mget) {
            Miss::Follow(rx) => parts.push(Part::Follow(rx, key.clone())),
            Miss::Lead(lead) => {
                parts.push(Part::Own(leads.len()));
                leads.push(lead);
            }
        }
    }
    if leads.is_empty() && !cx.permitted(Read::Mget) {
        // Hits are answered only if the upstream runs this MGET for this identity.
        if let Some(i) = parts.iter().position(|p| matches!(p, Part::Known(_))) {
            let key = cx.cache_key(keys[i].clone());
            let taken = cx.services.l1.generation(&key);
            parts[i] = Part::Own(0);
            let namespace = cx.services.l1.namespaces().of(&keys[i]);
            cx.observers.hit_was_miss(&cx.services, namespace);
            let flight = Flight::detached();
            leads.push(Lead {
                key,
                taken,
                flight,
                fills: true,
            });
        }
    }
    for (i, served) in audits {
        // Not a hit that was turned into a fetch just above.
        if matches!(parts[i], Part::Known(_)) {
            cx.audit_hit(keys[i].clone(), served);
        }
    }
    if leads.is_empty() && parts.iter().all(|p| matches!(p, Part::Known(_))) {
        return cx.replies.ready_with(|out| {
            write_array_header(out, parts.len());
            for p in parts {
                if let Part::Known(b) = p {
                    out.extend_from_slice(&b);
                }
            }
        });
    }
    let budget = &mut cx.replies.budget;
    for part in &parts {
        match part {
            Part::Known(b) => budget.hold(b.len()),
            _ => budget.expect(1),
        }
    }
    let own = match leads.is_empty() {
        true => None,
        false if cx.router.slotted() => Some(cx.send_mget_split(leads).await),
        false => Some(cx.send_mget(leads).await),
    };
    cx.replies.wait_for(Pending::Mget(MgetReply { parts, own }));
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// The elements of this connection's own upstream `MGET` reply (the `at`-th command of
    /// `request`), a redirect followed; the reply the whole MGET gets when it failed.
    async fn mget_elements(
        &mut self,
        frame: &Bytes,
        request: &Bytes,
        at: usize,
    ) -> Result<Option<Vec<Bytes>>, Bytes> {
        if !is_error(frame) {
            return Ok(array_elements(frame));
        }
        if !self.cx.router.slotted() {
            return Err(frame.clone());
        }
        // A redirect: the MGET alone goes to the node named (nothing fills L1).
        let reply = self.cx.follow(request, (at, 1), frame.clone(), false).await;
        match is_error(&reply) {
            true => Err(reply),
            false => Ok(array_elements(&reply)),
        }
    }

    pub(in crate::connection) async fn write_mget(&mut self, m: MgetReply) {
        let own = match m.own {
            None => None,
            Some(Own::Split(split)) => match self.cx.split_elements(split).await {
                Ok(elements) => Some(elements),
                Err(reply) => return self.cx.replies.oldest_out().extend_from_slice(&reply),
            },
            Some(Own::One(sent, request, at)) => match self.cx.await_reply(sent).await {
                Ok(frames) => {
                    if at > 0 {
                        // `CLIENT CACHING no`'s reply: learned from, then dropped.
                        self.cx.session.marks.caching_reply(&frames[0]);
                    }
                    match self.mget_elements(&frames[at], &request, at).await {
                        Ok(elements) => elements,
                        Err(reply) => {
                            return self.cx.replies.oldest_out().extend_from_slice(&reply)
                        }
                    }
                }
                Err(e) => return write_upstream_error(self.cx.replies.oldest_out(), &e),
            },
        };
        let m_parts = m.parts.len();
        // Sized for what is known now: the hits' replies and the fetched elements.
        let known: usize = (m.parts.iter())
            .map(|p| match p {
                Part::Known(b) => b.len(),
                _ => 0,
            })
            .sum();
        let fetched: usize = own.as_ref().map_or(0, |e| e.iter().map(|b| b.len()).sum());
        let mut body = BytesMut::with_capacity(16 + known + fetched);
        write_array_header(&mut body, m_parts);
        for part in m.parts {
            match part {
                Part::Known(b) => body.extend_from_slice(&b),
                Part::Own(i) => match own.as_ref().and_then(|e| e.get(i)) {
                    Some(element) => body.extend_from_slice(element),
                    None => body.extend_from_slice(null(self.cx.session.resp)),
                },
                Part::Follow(rx, key) => match self.cx.await_follow(rx).await {
                    Fetched::Value(b) => body.extend_from_slice(&b),
                    Fetched::Missing => body.extend_from_slice(null(self.cx.session.resp)),
                    Fetched::Unknown => match self.cx.mget_one(&key).await {
                        Ok(error) if is_error(&error) => {
                            return self.cx.replies.oldest_out().extend_from_slice(&error)
                        }
                        Ok(element) => body.extend_from_slice(&element),
                        Err(e) => return write_upstream_error(self.cx.replies.oldest_out(), &e),
                    },
                },
            }
        }
        // Taught as the reply of each key (what the next MGETs' keys are estimated at).
        let budget = &mut self.cx.replies.budget;
        budget.learn(body.len() / m_parts.max(1));
        self.write_frame(&body.freeze()).await;
    }
}
