//! The control connection: `HELLO 3` (with `AUTH`), `CLIENT ID`, `SUBSCRIBE` to the
//! invalidation bus, then invalidation and bus push messages in, and bus messages
//! (`PUBLISH`) and a PING every heartbeat out. It speaks RESP3 so that Redis sends a
//! redirect target its invalidations as `invalidate` push messages (no channel permission
//! needed for tracking) and so that a subscribed connection still runs commands. An upstream
//! that refuses the `SUBSCRIBE` (`-NOPERM`) gets no bus (logged once); tracking still works.
//! A PING still unanswered when the next is due or answered with the server's state
//! (`-BUSY`, `-LOADING`, `-MASTERDOWN`: it serves no reads), a read error or a close, a
//! reported broken redirect or a gap in a peer's bus sequence all mean the link is lost: L1
//! is flushed and bypassed, and the connection is made again with backoff (a new
//! subscription).

use std::collections::VecDeque;
use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use crate::upstream::stream::UpstreamStream;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;

mod handshake;

use super::bus::{BATCH_WINDOW, MAX_MESSAGE_BYTES};
use super::{Control, ControlTarget};
use crate::protocol::decode::{array_elements, is_error, is_null, push_elements, text};
use crate::protocol::{write_command, FrameScanner};
use crate::upstream::backoff::Backoff;
use crate::upstream::Credentials;
use handshake::{connect, is_state_error, Unlinked, PING};

/// How long a control connection refused for lack of credentials waits for a client to
/// offer some before it tries again without (the upstream's password may be removed).
const OFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the control connection up for as long as the process runs.
///
/// Credentials: those of `--upstream`; without any, and when the upstream refuses the
/// connection for that, those of the first client that authenticated (see
/// [`Control::offer`]), as the command table is loaded.
pub async fn run(tracking: Arc<Control>, target: ControlTarget) {
    let mut backoff = Backoff::new(Arc::as_ptr(&tracking) as u64);
    let mut down_logged = false;
    // Whether the link was ever up: a first connection after waiting is not "up again".
    let mut ever_up = false;
    // Entries kept through an outage of the upstream (`--serve-stale-when-down`): no
    // tracking covers them any more, so they go before L1 serves again.
    let mut kept = false;
    loop {
        // The current ones at each attempt: a rotated password file is used by the next.
        let creds = target.credentials.current().or_else(|| tracking.offered());

        let why = match connect(&tracking, &target, creds.as_ref()).await {
            Ok((stream, buf, id, generation)) => {
                backoff.reset();
                if !tracking.link_needed() {
                    // Tracking off and the bus refused: nothing for this connection to do.
                    return;
                }
                // Without tracking, fills went on while the bus was down: what they hold may
                // have been invalidated by messages missed meanwhile.
                if std::mem::take(&mut kept) || (!tracking.enabled() && down_logged) {
                    tracking.flush_for_loss();
                }
                let bus = &tracking.bus;
                bus.set_subscribed(bus.active());
                tracking.connected(id);
                tracking.awaiting_credentials.store(false, Relaxed);
                if down_logged {
                    match ever_up {
                        true => tracing::info!("invalidation link up again"),
                        false => tracing::info!("invalidation link up"),
                    }
                    down_logged = false;
                }
                ever_up = true;
                let reason = serve(&tracking, &target, stream, buf, generation).await;
                tracking.bus.set_subscribed(false);
                Unlinked::Lost(reason)
            }
            Err(e) => e,
        };
        let reason = why.to_string();
        // `down` logs a link that was up; a link that never came up is logged once.
        if tracking.down(&reason) {
            // With `--serve-stale-when-down` the flush waits for the reconnect: L1 serves
            // nothing meanwhile unless the upstream itself is down (then stale hits are what
            // the option asks for), and it fills nothing until tracking is back.
            kept = target.keep_when_down;
            if !kept {
                tracking.flush_for_loss();
            }
        } else if !down_logged {
            if awaits_client(&target, creds.as_ref(), &why) {
                tracing::info!(
                    "invalidation link waits for a client to authenticate: the upstream \
                     requires authentication and --upstream has no credentials (L1 is \
                     bypassed until then)"
                );
            } else {
                tracing::warn!("invalidation link not established: {reason}");
            }
        }
        down_logged = true;
        if !target.credentials.is_some() && refused_for_credentials(&why) {
            if let Some(c) = &creds {
                tracking.refuse_offer(c);
            }
            let awaiting = tracking.offered().is_none();
            tracking.awaiting_credentials.store(awaiting, Relaxed);
            if awaiting {
                let offer = tracking.offer_arrived.notified();
                let _ = tokio::time::timeout(OFFER_WAIT, offer).await;
                continue;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Whether the control connection, without credentials of its own or offered, was refused
/// for want of them: it waits for a client to authenticate (no error of the sidecar's).
fn awaits_client(target: &ControlTarget, creds: Option<&Credentials>, why: &Unlinked) -> bool {
    !target.credentials.is_some() && creds.is_none() && why.code() == Some("NOAUTH")
}

/// Whether the upstream refused the control connection for its credentials (none, wrong,
/// or a user that may not subscribe or read its id).
fn refused_for_credentials(why: &Unlinked) -> bool {
    matches!(why.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// A reply the control connection waits for, in the order the requests were written.
enum Awaited {
    Pong,
    Published,
}

/// Handles messages and heartbeats until the connection is lost; returns why.
async fn serve(
    tracking: &Arc<Control>,
    target: &ControlTarget,
    stream: UpstreamStream,
    mut buf: BytesMut,
    generation: u64,
) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let mut scanner = FrameScanner::default();
    let mut tick = tokio::time::interval(target.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut awaiting_pong = false;
    // PUBLISH replies still owed: if the connection goes before they arrive, the messages
    // may be lost, and a flush follows on the next connection (peers see the gap).
    let mut unacked = 0u64;
    // What each reply still owed answers (replies come in request order).
    let mut awaited = VecDeque::new();
    let bus = &tracking.bus;
    // Bytes of an oversized bus message still to be dropped as they arrive.
    let mut skipping = 0usize;
    let reason = 'serve: loop {
        if skipping > 0 {
            let n = skipping.min(buf.len());
            buf.advance(n);
            skipping -= n;
        }
        if skipping == 0 {
            if let Some(len) = oversized_message(&buf, bus.channel()) {
                bus.counters.oversized.fetch_add(1, Relaxed);
                skipping = len;
                continue;
            }
        }
        // Frames already read (the first may have come with the CLIENT ID reply).
        'frames: loop {
            match scanner.next_frame(&buf) {
                Ok(Some(len)) => {
                    scanner = FrameScanner::default();
                    let frame = buf.split_to(len).freeze();
                    if frame.first() == Some(&b'>') {
                        if let Err(reason) = handle(tracking, &frame) {
                            break 'serve reason;
                        }
                        continue;
                    }
                    match awaited.pop_front() {
                        Some(Awaited::Pong) => {
                            // The server answers; a state error means it serves no reads.
                            if is_state_error(&frame) {
                                let reply = String::from_utf8_lossy(&frame);
                                break 'serve format!("heartbeat answered {}", reply.trim());
                            }
                            awaiting_pong = false;
                        }
                        Some(Awaited::Published) => {
                            unacked = unacked.saturating_sub(1);
                            if is_error(&frame) {
                                published_refused(&frame);
                            }
                        }
                        None => {}
                    }
                }
                Ok(None) => break 'frames,
                Err(e) => break 'serve e.to_string(),
            }
        }
        // A large message grew the buffer: give the memory back once it is consumed.
        if buf.capacity() > SHRINK_ABOVE && buf.len() < SHRINK_ABOVE / 4 {
            let mut smaller = BytesMut::with_capacity(buf.len().max(4096));
            smaller.extend_from_slice(&buf);
            buf = smaller;
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break "connection closed by upstream".into(),
                Ok(_) => {}
                Err(e) => break format!("read failed: {e}"),
            },
            _ = tick.tick() => {
                if awaiting_pong {
                    // The node's lease is up: its entries are not served past this.
                    tracking.silent.store(true, Relaxed);
                    let ms = target.heartbeat.as_millis();
                    break format!("no heartbeat reply within {ms}ms");
                }
                if let Err(e) = writer.send(PING).await {
                    break format!("write failed: {e}");
                }
                awaiting_pong = true;
                awaited.push_back(Awaited::Pong);
            }
            _ = bus.queued.notified(), if bus.subscribed() => {
                if !bus.batch_full() {
                    tokio::time::sleep(BATCH_WINDOW).await;
                }
                let mut out = BytesMut::new();
                for message in bus.take() {
                    write_command(&mut out, &[b"PUBLISH", bus.channel(), &message]);
                    unacked += 1;
                    awaited.push_back(Awaited::Published);
                }
                if let Err(e) = writer.send(&out).await {
                    break format!("write failed: {e}");
                }
            }
            _ = tracking.broken.notified() => break "tracking redirect broken".into(),
            _ = target.endpoint.switched(generation) => break "the primary switched".into(),
        }
    };
    if unacked > 0 {
        bus.flush();
    }
    reason
}

/// A `PUBLISH` refused (the control connection's user may subscribe but not publish):
/// logged once.
fn published_refused(frame: &[u8]) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let text = String::from_utf8_lossy(frame);
        tracing::warn!(
            "upstream refused PUBLISH on the invalidation bus ({})",
            text.trim()
        );
    }
}

/// A read buffer larger than this is replaced by a smaller one once drained.
const SHRINK_ABOVE: usize = 4 << 20;

/// When `buf` starts with a bus message (`>3 message <channel> <payload>`) whose payload is
/// over [`MAX_MESSAGE_BYTES`], the length of the whole frame: it is dropped as it arrives,
/// never buffered whole. `None` for anything else (or a header not read yet).
fn oversized_message(buf: &[u8], channel: &[u8]) -> Option<usize> {
    let mut rest = buf.strip_prefix(b">3\r\n$7\r\nmessage\r\n$")?;
    let mut header = buf.len() - rest.len();
    let line = |rest: &[u8]| -> Option<(usize, usize)> {
        let end = rest.iter().take(21).position(|&b| b == b'\r')?;
        let n: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        (rest.get(end + 1) == Some(&b'\n')).then_some((n, end + 2))
    };
    let (n, used) = line(rest)?;
    rest = &rest[used..];
    let name = rest.get(..n)?;
    if name != channel || rest.get(n..n + 3)? != b"\r\n$" {
        return None;
    }
    rest = &rest[n + 3..];
    header += used + n + 3;
    let (payload, used) = line(rest)?;
    if payload <= MAX_MESSAGE_BYTES {
        return None;
    }
    Some(header + used + payload + 2)
}

/// A push message: a bus message (see [`handle_bus`]) or a tracking invalidation.
fn handle(tracking: &Arc<Control>, frame: &Bytes) -> Result<(), String> {
    let Some(parts) = push_elements(frame) else {
        return Ok(());
    };
    match &parts[..] {
        [kind, channel, payload]
            if text(kind).is_some_and(|(t, _)| t == b"message")
                && text(channel).is_some_and(|(c, _)| c == &tracking.bus.channel()[..]) =>
        {
            handle_bus(tracking, payload)
        }
        [kind, payload] if text(kind).is_some_and(|(t, _)| t == b"invalidate") => {
            handle_invalidate(tracking, payload);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `>3 message <channel> <payload>`: applies a peer's message; a gap in its sequence is
/// returned as the reason the link is lost.
fn handle_bus(tracking: &Arc<Control>, payload: &Bytes) -> Result<(), String> {
    let Some((text, _)) = text(payload) else {
        return Ok(());
    };
    if let Some(body) = tracking.bus.receive(&payload.slice_ref(text))? {
        tracking.apply(body);
    }
    Ok(())
}

/// `>2 invalidate <keys array | null>`: evicts the keys, or flushes L1 (the upstream was
/// flushed).
fn handle_invalidate(tracking: &Control, payload: &Bytes) {
    if is_null(payload) {
        return tracking.flushed();
    }
    match array_elements(payload) {
        Some(keys) if keys.is_empty() => tracking.flushed(),
        Some(keys) => {
            let keys: Vec<Bytes> = keys
                .iter()
                .filter_map(|k| text(k).map(|(t, _)| payload.slice_ref(t)))
                .collect();
            tracking.invalidate(&keys);
        }
        // A single key as a bulk string (not sent by Redis 6+, harmless to accept).
        None => match text(payload) {
            Some((key, _)) => tracking.invalidate(&[payload.slice_ref(key)]),
            None => tracking.flushed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pongs_and_invalidation_messages() {
        assert!(is_state_error(
            b"-LOADING Redis is loading the dataset in memory\r\n"
        ));
        assert!(is_state_error(b"-MASTERDOWN Link with MASTER is down\r\n"));
        assert!(!is_state_error(b"-NOPERM no permission\r\n"));
        let push = |s: &'static [u8]| push_elements(&Bytes::from_static(s));
        let keys = push(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(array_elements(&keys[1]).unwrap().len(), 2);
        let flush = push(b">2\r\n$10\r\ninvalidate\r\n_\r\n").unwrap();
        assert!(is_null(&flush[1]));
    }

    #[test]
    fn oversized_bus_messages_are_known_from_their_header() {
        let big = MAX_MESSAGE_BYTES + 1;
        let head = format!(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n${big}\r\n");
        let frame = head.len() + big + 2;
        assert_eq!(oversized_message(head.as_bytes(), b"ch"), Some(frame));
        assert_eq!(oversized_message(head.as_bytes(), b"other"), None);
        assert_eq!(
            oversized_message(&head.as_bytes()[..head.len() - 3], b"ch"),
            None
        );
        let small = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        assert_eq!(oversized_message(small.as_bytes(), b"ch"), None);
        assert_eq!(
            oversized_message(b">2\r\n$10\r\ninvalidate\r\n", b"ch"),
            None
        );
    }
}
