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
/// The most bytes of replies handed on to the general MGET in one copy: larger values are
/// looked up again there (and copied one by one, as they always were) rather than held
/// twice, in the client's output and in the copy, while the output is cut back.
const HAND_ON_BYTES: usize = 64 * 1024;

/// The replies of an MGET's first keys found in L1 (each with its key's namespace), read
/// before its first key that was not: the general MGET takes them as they are instead of
/// looking those keys up again.
pub(in crate::connection) type Leading = Vec<(Bytes, usize)>;

/// Answers `MGET keys...` from L1 when every key is held and the client is owed nothing.
/// At the first key that is not, nothing is written or counted, and the replies read
/// until then are handed back (none when this path does not apply).
pub(in crate::connection) fn all_hits<R: Router>(
    cx: &mut Ctx<R>,
    keys: &[Bytes],
) -> Result<(), Leading> {
    if keys.len() > MAX_KEYS || !cx.may_read_l1() || !cx.permitted(Read::Mget) {
        return Err(Leading::new());
    }
    let s = &cx.session;
    let (user, db, nil) = (s.user, s.db, null(s.resp));
    let Some(out) = cx.replies.idle_out() else {
        return Err(Leading::new());
    };
    let start = out.len();
    write_array_header(out, keys.len());
    // Where each key's reply starts in `out`, and its namespace.
    let mut hits = [(0usize, 0usize); MAX_KEYS];
    for (i, key) in keys.iter().enumerate() {
        let at = out.len();
        let key = KeyRef { user, db, key };
        let read = cx.services.l1.read(&key, |value, namespace| {
            out.extend_from_slice(value.unwrap_or(nil));
            namespace
        });
        let Some(namespace) = read else {
            let leading = leading(out, &hits[..i], at);
            out.truncate(start);
            return Err(leading);
        };
        hits[i] = (at, namespace);
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
    Ok(())
}

/// The replies of `read` (where each starts in `out`, the last ending at `end`, and its
/// namespace) in one copy, sliced per key; none past [`HAND_ON_BYTES`].
fn leading(out: &[u8], read: &[(usize, usize)], end: usize) -> Leading {
    let Some(&(first, _)) = read.first() else {
        return Leading::new();
    };
    if end - first > HAND_ON_BYTES {
        return Leading::new();
    }
    let block = Bytes::copy_from_slice(&out[first..end]);
    let ends = read.iter().skip(1).map(|&(at, _)| at).chain([end]);
    (read.iter().zip(ends))
        .map(|(&(at, namespace), end)| (block.slice(at - first..end - first), namespace))
        .collect()
}
