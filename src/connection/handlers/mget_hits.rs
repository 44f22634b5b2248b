//! An MGET whose keys are all in L1, written into the client's output straight from L1's
//! segments: no copy of each value on the way and no list of parts (the general MGET in
//! `read` copies each hit out of L1, as it may have to wait for misses).

use bytes::Bytes;

use crate::acl::Read;
use crate::cache::KeyRef;
use crate::connection::handlers::Ctx;
use crate::protocol::{null, write_array_header};
use crate::upstream::Router;

/// Keys an MGET may have for this path (the positions of the hits are kept on the stack).
const MAX_KEYS: usize = 32;

/// Answers `MGET keys...` from L1 when every key is held and the client is owed nothing;
/// false, with nothing written or counted, at the first key that is not.
pub(in crate::connection) fn all_hits<R: Router>(cx: &mut Ctx<R>, keys: &[Bytes]) -> bool {
    if keys.len() > MAX_KEYS || !cx.may_read_l1() || !cx.permitted(Read::Mget) {
        return false;
    }
    let s = &cx.session;
    let (user, db, nil) = (s.user, s.db, null(s.resp));
    let Some(out) = cx.replies.idle_out() else {
        return false;
    };
    let start = out.len();
    write_array_header(out, keys.len());
    // Where each key's reply starts in `out`, and its namespace.
    let mut hits = [(0usize, 0usize); MAX_KEYS];
    for (key, hit) in keys.iter().zip(&mut hits) {
        let at = out.len();
        let key = KeyRef { user, db, key };
        let read = cx.services.l1.read(&key, |value, namespace| {
            out.extend_from_slice(value.unwrap_or(nil));
            namespace
        });
        let Some(namespace) = read else {
            out.truncate(start);
            return false;
        };
        *hit = (at, namespace);
    }
    let end = out.len();
    for (i, (key, &(at, namespace))) in keys.iter().zip(&hits).enumerate() {
        if cx.observers.on_hit(&cx.services, namespace, key) {
            let until = if i + 1 < keys.len() {
                hits[i + 1].0
            } else {
                end
            };
            let served = Bytes::copy_from_slice(&cx.replies.written()[at..until]);
            cx.audit_hit(key.clone(), served);
        }
    }
    true
}
