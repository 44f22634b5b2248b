//! Redis Cluster redirects followed inside the sidecar: a command answered `-MOVED slot
//! host:port` is sent again to that node (and the topology refreshed), one answered `-ASK
//! slot host:port` is sent to that node behind `ASKING`; the client gets the final reply,
//! never the redirect. At most [`MAX_REDIRECTS`] hops, then the last reply is the client's.
//! A `MOVED` shows the slot changed owner: its L1 epoch is bumped, so nothing L1 holds of
//! it is served again. An `ASK` shows it is moving: its epoch is bumped on the first `ASK`
//! of the migration (see [`crate::cache::fences`]), not on every one.
//! A `-TRYAGAIN` (a multi-key command while its slot migrates) is sent again to the same
//! node after each wait of [`TRYAGAIN_BACKOFF`], then relayed; a `-CLUSTERDOWN` asks a
//! topology refresh and is relayed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::BytesFrame;

use crate::connection::handlers::Ctx;
use crate::error::write_upstream_error;
use crate::protocol::write_command;
use crate::upstream::cluster::Reason;
use crate::upstream::{Lanes, Outgoing, Router};

/// Most redirects followed for one command (a slot moving while it is asked for).
pub const MAX_REDIRECTS: usize = 5;

/// The waits before each retry of a command answered `-TRYAGAIN` (its slot's keys are
/// being migrated): the last `-TRYAGAIN` is the client's.
pub const TRYAGAIN_BACKOFF: [Duration; 5] = [
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(40),
    Duration::from_millis(80),
    Duration::from_millis(160),
];

/// The kinds of redirect followed, in the order of the figures' counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// `-MOVED`.
    Moved = 0,
    /// `-ASK`.
    Ask = 1,
    /// `-TRYAGAIN`, retried.
    TryAgain = 2,
}

/// A redirect reply: whether it is an `ASK` (else a `MOVED`), the slot and the node's
/// `host:port`.
pub(in crate::connection) fn redirect(frame: &[u8]) -> Option<(bool, u16, String)> {
    let (ask, rest) = if let Some(rest) = frame.strip_prefix(b"-MOVED ") {
        (false, rest)
    } else {
        (true, frame.strip_prefix(b"-ASK ")?)
    };
    let line = rest.strip_suffix(b"\r\n")?;
    let mut parts = line.split(|&b| b == b' ');
    let (slot, address) = (parts.next()?, parts.next()?);
    let slot = std::str::from_utf8(slot).ok()?.parse::<u16>().ok()?;
    let address = std::str::from_utf8(address).ok()?;
    let valid = !address.is_empty() && usize::from(slot) < crate::cache::fences::SLOTS;
    valid.then(|| (ask, slot, address.to_owned()))
}

/// The bytes of the `n` commands from the `at`-th in `request` (RESP commands one after
/// another); `None` when they cannot be found (an inline command).
fn commands(request: &Bytes, at: usize, n: usize) -> Option<Bytes> {
    let mut start = 0;
    let mut index = 0;
    let mut from = None;
    while index < at + n {
        if index == at {
            from = Some(start);
        }
        let (_, len) = decode(&request[start..]).ok()??;
        start += len;
        index += 1;
    }
    Some(request.slice(from?..start))
}

impl<R: Router> Ctx<R> {
    /// Follows `frame` when it is a redirect: the `n` commands from the `at`-th of
    /// `request` go to the node it names; returns the reply the client gets (the first
    /// command's). `writes`: the commands may write keys.
    ///
    /// Its state is boxed: it runs only in a Redis Cluster, and unboxed it would size every
    /// future that may call it (the drain of each batch, moved once per request).
    pub(in crate::connection) async fn follow(
        &mut self,
        request: &Bytes,
        at: (usize, usize),
        frame: Bytes,
        writes: bool,
    ) -> Bytes {
        Box::pin(self.follow_redirects(request, at, frame, writes)).await
    }

    /// [`Ctx::follow`], unboxed.
    async fn follow_redirects(
        &mut self,
        request: &Bytes,
        (at, n): (usize, usize),
        mut frame: Bytes,
        writes: bool,
    ) -> Bytes {
        let Some(cmd) = commands(request, at, n) else {
            return frame;
        };
        let route = self.session.route();
        // Where the last try went (and whether behind ASKING): a TRYAGAIN is retried there.
        let mut last: Option<(Arc<R::Pool>, bool)> = None;
        let (mut hops, mut tries) = (0, 0);
        loop {
            let (pool, ask) = if let Some((ask, slot, address)) = redirect(&frame) {
                hops += 1;
                let l1 = &self.services.l1;
                match ask {
                    // Migrating: what a MIGRATE moves is invalidated by the old owner;
                    // only cached missing keys need ending (see `SlotEpochs::asked`).
                    true => l1.slot_asked(slot),
                    false => l1.bump_slots([slot], crate::cache::SlotCause::Moved),
                }
                if hops > MAX_REDIRECTS {
                    break;
                }
                let Some(pool) = self.router.redirected(route, &address, !ask).await else {
                    break;
                };
                let kind = if ask { Redirect::Ask } else { Redirect::Moved };
                self.services.stats.redirects[kind as usize].fetch_add(1, Relaxed);
                (pool, ask)
            } else if frame.starts_with(b"-TRYAGAIN") && tries < TRYAGAIN_BACKOFF.len() {
                let to = match last.clone() {
                    Some(to) => to,
                    None => match self.slot_of(&cmd) {
                        Some(slot) => (self.router.pool_for(route, slot), false),
                        None => break,
                    },
                };
                tokio::time::sleep(TRYAGAIN_BACKOFF[tries]).await;
                tries += 1;
                let stats = &self.services.stats;
                stats.redirects[Redirect::TryAgain as usize].fetch_add(1, Relaxed);
                self.router.refresh_topology(Reason::TryAgain);
                to
            } else {
                if frame.starts_with(b"-CLUSTERDOWN") {
                    self.router.refresh_topology(Reason::ClusterDown);
                }
                break;
            };
            last = Some((pool.clone(), ask));
            let mut bytes = BytesMut::new();
            if ask {
                write_command(&mut bytes, &[b"ASKING"]);
            }
            bytes.extend_from_slice(&cmd);
            let first = usize::from(ask);
            let label =
                crate::metrics::commands::index(crate::metrics::commands::first_command(&cmd));
            let call = Outgoing {
                bytes: bytes.freeze(),
                replies: n + first,
                on_reply: None,
                label: label as u16,
                frames: Vec::new(),
                writes,
                retryable: false,
            };
            let sent = pool.send_on(&self.session.lane, call).await;
            frame = match self.await_reply(sent).await {
                Ok(frames) => frames[first].clone(),
                Err(e) => {
                    let mut out = BytesMut::new();
                    write_upstream_error(&mut out, &e);
                    return out.freeze();
                }
            };
        }
        frame
    }

    /// The slot of the first key of the first command in `cmd`.
    fn slot_of(&self, cmd: &Bytes) -> Option<u16> {
        let (BytesFrame::Array(parts), _) = decode_bytes(cmd)? else {
            return None;
        };
        let args: Vec<Bytes> = parts
            .into_iter()
            .map(|p| match p {
                BytesFrame::BulkString(b) => Some(b),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let spec = self.services.table.get().lookup(&args)?;
        let key = args.get(usize::from(spec.first_key?))?;
        Some(crate::upstream::cluster::slot(key))
    }
}

/// The first frame of `bytes`, its payloads sharing `bytes`.
fn decode_bytes(bytes: &Bytes) -> Option<(BytesFrame, usize)> {
    redis_protocol::resp2::decode::decode_bytes(bytes).ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_read_and_other_errors_are_not() {
        let moved = redirect(b"-MOVED 3999 127.0.0.1:6381\r\n");
        assert_eq!(moved, Some((false, 3999, "127.0.0.1:6381".to_owned())));
        let ask = redirect(b"-ASK 12 node-2.example:7000\r\n");
        assert_eq!(ask, Some((true, 12, "node-2.example:7000".to_owned())));
        for other in [
            &b"-ERR MOVED 1 a:1\r\n"[..],
            b"-MOVED 3999\r\n",
            b"-MOVED 3999 \r\n",
            b"-MOVED 16384 a:1\r\n",
            b"-MOVED x a:1\r\n",
            b"+MOVED 1 a:1\r\n",
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        ] {
            assert_eq!(redirect(other), None, "{}", other.escape_ascii());
        }
    }

    #[test]
    fn the_commands_of_a_segment_are_cut_out_of_the_group() {
        let mut group = BytesMut::new();
        write_command(&mut group, &[b"SET", b"a", b"1"]);
        write_command(&mut group, &[b"GET", b"b"]);
        write_command(&mut group, &[b"PTTL", b"b"]);
        let group = group.freeze();
        let one = |args: &[&[u8]]| {
            let mut b = BytesMut::new();
            write_command(&mut b, args);
            b.freeze()
        };
        assert_eq!(commands(&group, 0, 1), Some(one(&[b"SET", b"a", b"1"])));
        let mut fetch = BytesMut::from(&one(&[b"GET", b"b"])[..]);
        fetch.extend_from_slice(&one(&[b"PTTL", b"b"]));
        assert_eq!(commands(&group, 1, 2), Some(fetch.freeze()));
        assert_eq!(commands(&group, 2, 2), None);
        assert_eq!(commands(&Bytes::from_static(b"GET a\r\n"), 0, 1), None);
    }
}
