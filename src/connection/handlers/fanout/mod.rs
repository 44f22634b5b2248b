//! Keyless commands over a Redis Cluster, answered as one server holding every key would:
//! `SCAN` walks the primaries one after another under one cursor, `KEYS`, `DBSIZE`,
//! `FLUSHALL`/`FLUSHDB`, `SCRIPT LOAD|EXISTS|FLUSH` and `FUNCTION LOAD|DELETE|FLUSH|RESTORE`
//! go to every primary and their replies
//! are merged, `RANDOMKEY` asks the primaries from a random one until one has a key. Only
//! where requests are routed by slot ([`Router::slotted`]); a single upstream answers these
//! commands itself.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

mod merge;

use super::one_node::{self, Cluster};
use super::Ctx;
use crate::connection::{ClientStream, Connection};
use crate::error::UpstreamError;
use crate::protocol::{command, is, write_bulk, Request};
use crate::upstream::{Lanes, Outgoing, Router};
use merge::{all_ok, merge};

/// Bits of a client's `SCAN` cursor that name the primary (by address order): up to 1024
/// primaries; the rest is that primary's own cursor.
const NODE_BITS: u32 = 10;

/// Redis's reply to a cursor it cannot read (here also one naming no primary).
const INVALID_CURSOR: &[u8] = b"-ERR invalid cursor\r\n";

/// The keyless commands fanned out over every primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::connection) enum Fanout {
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: one primary per stretch of the cursor.
    Scan,
    /// `KEYS pattern`: every primary's keys, concatenated.
    Keys,
    /// `DBSIZE`: the sum.
    Dbsize,
    /// `FLUSHALL`/`FLUSHDB [ASYNC|SYNC]`: every primary; `+OK` only if all did.
    Flush,
    /// `RANDOMKEY`: a random primary that has keys.
    RandomKey,
    /// `SCRIPT LOAD script`: loaded on every primary, its sha.
    ScriptLoad,
    /// `SCRIPT EXISTS sha...`: per position, whether every primary has it.
    ScriptExists,
    /// `SCRIPT FLUSH [ASYNC|SYNC]`: every primary.
    ScriptFlush,
    /// `FUNCTION LOAD|DELETE|FLUSH|RESTORE ...`: every primary (an `FCALL` runs on the node
    /// of its keys, which must have the library); the first error, else the first reply.
    Function,
}

impl Fanout {
    /// The fanned-out command `args` is, if it is one with the arguments it needs (any
    /// other form goes upstream as it is, where the node words the error).
    pub(in crate::connection) fn of(args: &[Bytes]) -> Option<Fanout> {
        let name = &args[0][..];
        let sub = args.get(1).map_or(&b""[..], |s| &s[..]);
        let script = is(name, b"SCRIPT");
        Some(match args.len() {
            n if is(name, b"SCAN") && n >= 2 => Fanout::Scan,
            2 if is(name, b"KEYS") => Fanout::Keys,
            1 if is(name, b"DBSIZE") => Fanout::Dbsize,
            1 if is(name, b"RANDOMKEY") => Fanout::RandomKey,
            _ if is(name, b"FLUSHALL") || is(name, b"FLUSHDB") => Fanout::Flush,
            3 if script && is(sub, b"LOAD") => Fanout::ScriptLoad,
            n if script && is(sub, b"EXISTS") && n >= 3 => Fanout::ScriptExists,
            _ if script && is(sub, b"FLUSH") => Fanout::ScriptFlush,
            n if is(name, b"FUNCTION") && n >= 2 && is(sub, b"FLUSH") => Fanout::Function,
            n if is(name, b"FUNCTION")
                && n >= 3
                && [&b"LOAD"[..], b"DELETE", b"RESTORE"]
                    .iter()
                    .any(|s| is(sub, s)) =>
            {
                Fanout::Function
            }
            _ => return None,
        })
    }
}

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// In a Redis Cluster: answers a fanned-out command (after every reply owed before it
    /// is written) or a `CLUSTER` subcommand the sidecar answers as one node; false for
    /// any other request.
    pub(in crate::connection) async fn keyless(&mut self, req: &Request) -> bool {
        if let Some(fanout) = Fanout::of(&req.args) {
            self.cx.count(req);
            self.drain().await;
            run(&mut self.cx, fanout, req).await;
            return true;
        }
        let Some(cluster) = Cluster::of(&req.args) else {
            return false;
        };
        self.cx.count(req);
        let local = self.cx.addrs.map(|(_, local)| local);
        let reply = one_node::reply(cluster, &req.args, self.cx.session.resp, local);
        self.cx.replies.ready_bytes(reply);
        true
    }
}

/// Answers `req`, a [`Fanout`] command, from every primary (after every reply owed before
/// it is written).
pub(in crate::connection) async fn run<R: Router>(cx: &mut Ctx<R>, fanout: Fanout, req: &Request) {
    let pools = cx.router.primaries(cx.session.route());
    if pools.is_empty() {
        let e = UpstreamError::unavailable("no Redis Cluster primary known yet");
        return cx.replies.error(&e);
    }
    let args: Vec<&[u8]> = req.args.iter().map(|a| &a[..]).collect();
    let reply = match fanout {
        Fanout::Scan => scan(cx, &pools, args).await,
        Fanout::RandomKey => random_key(cx, &pools, &command(&args)).await,
        Fanout::Flush => {
            let table = cx.services.table.get();
            let mut inv = crate::command::writes(req, cx.session.db, table);
            cx.invalidate(&mut inv);
            let frames = every(cx, &pools, &command(&args), true).await;
            cx.invalidate_after(&mut inv);
            frames.map(|f| all_ok(&f))
        }
        _ => {
            let frames = every(cx, &pools, &command(&args), false).await;
            frames.map(|f| merge(fanout, f))
        }
    };
    match reply {
        Ok(frame) => cx.replies.ready_bytes(frame),
        Err(e) => cx.replies.error(&e),
    }
}

/// Sends `bytes` (one command) to each of `pools` at once, then waits for every reply.
async fn every<R: Router>(
    cx: &mut Ctx<R>,
    pools: &[Arc<R::Pool>],
    bytes: &Bytes,
    writes: bool,
) -> Result<Vec<Bytes>, UpstreamError> {
    let mut sent = Vec::with_capacity(pools.len());
    for pool in pools {
        sent.push(
            pool.send_on(&cx.session.lane, outgoing(bytes, writes))
                .await,
        );
    }
    let mut frames = Vec::with_capacity(sent.len());
    for one in sent {
        frames.push(cx.await_reply(one).await?.swap_remove(0));
    }
    Ok(frames)
}

/// Sends `bytes` (one command) to `pool` and waits for its reply.
async fn one<R: Router>(
    cx: &mut Ctx<R>,
    pool: &R::Pool,
    bytes: &Bytes,
) -> Result<Bytes, UpstreamError> {
    let sent = pool.send_on(&cx.session.lane, outgoing(bytes, false)).await;
    Ok(cx.await_reply(sent).await?.swap_remove(0))
}

fn outgoing(bytes: &Bytes, writes: bool) -> Outgoing {
    let name = crate::metrics::commands::first_command(bytes);
    Outgoing {
        bytes: bytes.clone(),
        replies: 1,
        on_reply: None,
        label: crate::metrics::commands::index(name) as u16,
        frames: Vec::new(),
        writes,
        retryable: false,
    }
}

/// `SCAN` on the primary the cursor names, with that primary's own cursor; the cursor
/// given back names the next primary once this one is done, `0` after the last. A primary
/// done with an empty page hands over to the next at once (an empty cluster scans as an
/// empty server: `0` and no keys).
async fn scan<R: Router>(
    cx: &mut Ctx<R>,
    pools: &[Arc<R::Pool>],
    args: Vec<&[u8]>,
) -> Result<Bytes, UpstreamError> {
    let Some((mut node, mut cursor)) = decode_cursor(args[1]).filter(|(n, _)| *n < pools.len())
    else {
        return Ok(Bytes::from_static(INVALID_CURSOR));
    };
    loop {
        let own = cursor.to_string();
        let mut these = args.clone();
        these[1] = own.as_bytes();
        let frame = one(cx, &pools[node], &command(&these)).await?;
        let Some((next, keys)) = scan_reply(&frame) else {
            return Ok(frame);
        };
        let next = match next {
            0 if node + 1 == pools.len() => 0,
            0 if keys == b"*0\r\n" => {
                (node, cursor) = (node + 1, 0);
                continue;
            }
            0 => (node + 1) as u64,
            more => encode_cursor(node, more).ok_or_else(|| {
                UpstreamError::unavailable("a node's SCAN cursor is too large to carry")
            })?,
        };
        let mut out = BytesMut::with_capacity(frame.len() + 16);
        out.extend_from_slice(b"*2\r\n");
        write_bulk(&mut out, next.to_string().as_bytes());
        out.extend_from_slice(keys);
        return Ok(out.freeze());
    }
}

/// The primary's index and its own cursor in a client's cursor (`None`: not a cursor).
fn decode_cursor(cursor: &[u8]) -> Option<(usize, u64)> {
    if cursor.is_empty() || !cursor.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let c: u64 = std::str::from_utf8(cursor).ok()?.parse().ok()?;
    Some(((c & ((1 << NODE_BITS) - 1)) as usize, c >> NODE_BITS))
}

/// The client's cursor for `cursor` on the primary `node` (`None` when it does not fit).
fn encode_cursor(node: usize, cursor: u64) -> Option<u64> {
    (cursor >> (64 - NODE_BITS) == 0).then_some(cursor << NODE_BITS | node as u64)
}

/// A `SCAN` reply's cursor and the frame of its keys (`None` for anything else: an error).
fn scan_reply(frame: &[u8]) -> Option<(u64, &[u8])> {
    let rest = frame.strip_prefix(b"*2\r\n$")?;
    let (len, rest) = line(rest)?;
    let len = usize::try_from(len).ok()?;
    let cursor = rest.get(..len)?;
    let keys = rest.get(len..)?.strip_prefix(b"\r\n")?;
    let cursor = std::str::from_utf8(cursor).ok()?.parse().ok()?;
    Some((cursor, keys))
}

/// The number ending the first line of `bytes` (after its type byte) and what follows.
fn line(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let n = std::str::from_utf8(&bytes[..end]).ok()?.parse().ok()?;
    Some((n, &bytes[end + 2..]))
}

/// `RANDOMKEY` on each primary from a random one, until one has a key.
async fn random_key<R: Router>(
    cx: &mut Ctx<R>,
    pools: &[Arc<R::Pool>],
    bytes: &Bytes,
) -> Result<Bytes, UpstreamError> {
    let start = random_below(pools.len());
    let mut frame = Bytes::new();
    for i in 0..pools.len() {
        frame = one(cx, &pools[(start + i) % pools.len()], bytes).await?;
        if !(frame.starts_with(b"$-1") || frame.starts_with(b"_")) {
            break;
        }
    }
    Ok(frame)
}

/// A number below `n` (> 0), different from call to call.
fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_a_primary_and_its_own_cursor() {
        assert_eq!(decode_cursor(b"0"), Some((0, 0)));
        assert_eq!(decode_cursor(b"2"), Some((2, 0)));
        let c = encode_cursor(1, 12345).unwrap();
        assert_eq!(decode_cursor(c.to_string().as_bytes()), Some((1, 12345)));
        for bad in [&b""[..], b"x", b"-1", b"+1", b" 1", b"99999999999999999999"] {
            assert_eq!(decode_cursor(bad), None, "{}", bad.escape_ascii());
        }
        assert_eq!(encode_cursor(0, u64::MAX >> 9), None);
    }

    #[test]
    fn a_scan_reply_gives_its_cursor_and_keys() {
        let (c, keys) = scan_reply(b"*2\r\n$3\r\n176\r\n*1\r\n$1\r\na\r\n").unwrap();
        assert_eq!((c, keys), (176, &b"*1\r\n$1\r\na\r\n"[..]));
        assert_eq!(scan_reply(b"-ERR invalid cursor\r\n"), None);
    }
}
