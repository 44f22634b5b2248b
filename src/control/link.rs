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

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bus::{BATCH_WINDOW, MAX_MESSAGE_BYTES};
use super::{Control, ControlTarget};
use crate::protocol::decode::{array_elements, integer, is_error, is_null, push_elements, text};
use crate::protocol::{write_command, FrameScanner};
use crate::upstream::backoff::Backoff;
use crate::upstream::{redact, Credentials};

/// The control connection's name in the upstream's `CLIENT LIST`.
pub const NAME: &[u8] = b"nearcache-control";
const SETNAME: &[u8] = b"SETNAME";
/// The heartbeat, also the last request of the handshake.
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

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
        let creds = target.credentials.clone().or_else(|| tracking.offered());

        let why = match connect(&tracking, &target, creds.as_ref()).await {
            Ok((stream, buf, id)) => {
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
                let reason = serve(&tracking, &target, stream, buf).await;
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
        if target.credentials.is_none() && refused_for_credentials(&why) {
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
    target.credentials.is_none() && creds.is_none() && why.code() == Some("NOAUTH")
}

/// Whether the upstream refused the control connection for its credentials (none, wrong,
/// or a user that may not subscribe or read its id).
fn refused_for_credentials(why: &Unlinked) -> bool {
    matches!(why.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Why a control connection could not be set up (its text is the log line's reason).
#[derive(Debug)]
enum Unlinked {
    /// Connecting, reading or writing failed, or the server closed the connection.
    Io(String),
    /// Setting up took longer than the connect timeout.
    Timeout,
    /// A handshake step was answered with an error (quoted, credentials redacted): the
    /// upstream refused it, or serves no reads now (`-LOADING`, ...).
    Refused(String),
    /// `CLIENT ID` was answered with something that is not an integer.
    NoId,
    /// The link was up and is lost (a read error, a silent heartbeat, a broken redirect,
    /// a gap on the bus).
    Lost(String),
}

impl Unlinked {
    /// The error code of a refusal (`NOAUTH`, `WRONGPASS`, ...).
    fn code(&self) -> Option<&str> {
        let Unlinked::Refused(reply) = self else {
            return None;
        };
        reply.trim_start_matches('-').split(' ').next()
    }
}

impl std::fmt::Display for Unlinked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlinked::Io(e) => f.write_str(e),
            Unlinked::Timeout => f.write_str("connect timed out"),
            Unlinked::Refused(reply) => f.write_str(reply),
            Unlinked::NoId => f.write_str("CLIENT ID gave no integer"),
            Unlinked::Lost(why) => f.write_str(why),
        }
    }
}

/// The requests of the handshake, in the order they are written (and answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `HELLO 3 [AUTH ..] SETNAME nearcache-control`.
    Hello,
    /// `CLIENT ID`: the redirect target.
    ClientId,
    /// `SUBSCRIBE <bus>` (when the bus is on).
    Subscribe,
    /// `PING`: whether the server serves reads now.
    Ping,
}

/// Connects, authenticates, learns the connection's id and subscribes to the bus (a
/// `-NOPERM` there turns the bus off, logged), then checks with a PING that the server
/// serves: HELLO, CLIENT and SUBSCRIBE work while it loads its dataset or, as a replica
/// with `replica-serve-stale-data no`, has lost its master, but reads get `-LOADING` or
/// `-MASTERDOWN` (and PING too): the link stays down then, so L1 is bypassed, and is tried
/// again with backoff.
async fn connect(
    tracking: &Control,
    target: &ControlTarget,
    credentials: Option<&Credentials>,
) -> Result<(TcpStream, BytesMut, i64), Unlinked> {
    let io = |e: std::io::Error| Unlinked::Io(e.to_string());
    let setup = async {
        let (mut stream, _registered) =
            target.outbound.connect(&target.address).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut out = BytesMut::new();
        let bus = &tracking.bus;
        let mut steps = vec![Step::Hello, Step::ClientId];
        match credentials {
            Some(c) => {
                let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
                let hello: &[&[u8]] = &[b"HELLO", b"3", b"AUTH", user, &c.pass, SETNAME, NAME];
                write_command(&mut out, hello);
            }
            None => write_command(&mut out, &[b"HELLO", b"3", SETNAME, NAME]),
        }
        write_command(&mut out, &[b"CLIENT", b"ID"]);
        if bus.active() {
            write_command(&mut out, &[b"SUBSCRIBE", bus.channel()]);
            steps.push(Step::Subscribe);
        }
        out.extend_from_slice(PING);
        steps.push(Step::Ping);
        stream.write_all(&out).await.map_err(io)?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut scanner = FrameScanner::default();
        let mut id = None;
        for step in steps {
            let frame = read_frame(&mut stream, &mut buf, &mut scanner)
                .await
                .map_err(Unlinked::Io)?;
            // Quoted: a server without HELLO quotes its arguments, the password among them.
            let refused = || {
                let quoted = redact(String::from_utf8_lossy(&frame).trim(), credentials);
                Unlinked::Refused(quoted)
            };
            match step {
                // Any other reply to the PING (a user without PING) shows the server answers.
                Step::Ping if is_state_error(&frame) => return Err(refused()),
                Step::Ping => {}
                Step::Subscribe if is_error(&frame) => {
                    let why = refused();
                    if why.code() != Some("NOPERM") {
                        return Err(why);
                    }
                    bus.set_refused();
                    let channel = String::from_utf8_lossy(bus.channel());
                    tracing::warn!(
                        "upstream refused SUBSCRIBE {channel} ({why}): running without the invalidation bus"
                    );
                }
                Step::Subscribe => {}
                _ if is_error(&frame) => return Err(refused()),
                Step::ClientId => id = integer(&frame),
                Step::Hello => {}
            }
        }
        Ok((stream, buf, id.ok_or(Unlinked::NoId)?))
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or(Err(Unlinked::Timeout))
}

/// An error reply for the state the server is in (a script runs, the dataset loads, a
/// replica lost its master): it serves no reads now, so L1 must not either.
fn is_state_error(frame: &[u8]) -> bool {
    [&b"-BUSY "[..], b"-LOADING ", b"-MASTERDOWN "]
        .iter()
        .any(|code| frame.starts_with(code))
}

/// A reply the control connection waits for, in the order the requests were written.
enum Awaited {
    Pong,
    Published,
}

/// Reads one frame into `buf` (what follows stays there).
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    scanner: &mut FrameScanner,
) -> Result<Bytes, String> {
    loop {
        if let Some(len) = scanner.next_frame(buf).map_err(|e| e.to_string())? {
            *scanner = FrameScanner::default();
            return Ok(buf.split_to(len).freeze());
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed by upstream".into());
        }
    }
}

/// Handles messages and heartbeats until the connection is lost; returns why.
async fn serve(
    tracking: &Arc<Control>,
    target: &ControlTarget,
    stream: TcpStream,
    mut buf: BytesMut,
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
                    let ms = target.heartbeat.as_millis();
                    break format!("no heartbeat reply within {ms}ms");
                }
                if let Err(e) = writer.write_all(PING).await {
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
                if let Err(e) = writer.write_all(&out).await {
                    break format!("write failed: {e}");
                }
            }
            _ = tracking.broken.notified() => break "tracking redirect broken".into(),
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
