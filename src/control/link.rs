//! The control connection: `HELLO 3` (with `AUTH`), `CLIENT ID`, then invalidation push
//! messages in and a PING every heartbeat out. It speaks RESP3 so that Redis sends a
//! redirect target its invalidations as `invalidate` push messages: no `SUBSCRIBE`, so no
//! pub/sub channel permission is needed from the ACL user it runs as. A PING still
//! unanswered when the next is due, a read error or a close, or a reported broken redirect
//! all mean the link is lost: L1 is flushed and bypassed, and the connection is made again
//! with backoff.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ControlTarget, Tracking};
use crate::protocol::{write_command, FrameScanner};
use crate::upstream::backoff::Backoff;
use crate::upstream::reply::{array_elements, integer, is_error, is_null, push_elements, text};
use crate::upstream::Credentials;

/// The control connection's name in the upstream's `CLIENT LIST`.
pub const NAME: &[u8] = b"nearcache-control";
const SETNAME: &[u8] = b"SETNAME";

/// How long a control connection refused for lack of credentials waits for a client to
/// offer some before it tries again without (the upstream's password may be removed).
const OFFER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the control connection up for as long as the process runs.
///
/// Credentials: those of `--upstream`; without any, and when the upstream refuses the
/// connection for that, those of the first client that authenticated (see
/// [`Tracking::offer`]), as the command table is loaded.
pub async fn run(tracking: Arc<Tracking>, target: ControlTarget) {
    let mut backoff = Backoff::new(Arc::as_ptr(&tracking) as u64);
    let mut down_logged = false;
    // Entries kept through an outage of the upstream (`--serve-stale-when-down`): no
    // tracking covers them any more, so they go before L1 serves again.
    let mut kept = false;
    loop {
        let creds = target.credentials.clone().or_else(|| tracking.offered());

        let reason = match connect(&target, creds.as_ref()).await {
            Ok((stream, buf, id)) => {
                backoff.reset();
                if std::mem::take(&mut kept) {
                    tracking.flush_for_loss();
                }
                tracking.connected(id);
                if down_logged {
                    eprintln!("nearcache: invalidation link up again");
                    down_logged = false;
                }
                serve(&tracking, &target, stream, buf).await
            }
            Err(e) => e,
        };
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
            eprintln!("nearcache: invalidation link not established: {reason}");
        }
        down_logged = true;
        if target.credentials.is_none() && refused_for_credentials(&reason) {
            if let Some(c) = &creds {
                tracking.refuse_offer(c);
            }
            if tracking.offered().is_none() {
                let offer = tracking.offer_arrived.notified();
                let _ = tokio::time::timeout(OFFER_WAIT, offer).await;
                continue;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Whether the upstream refused the control connection for its credentials (none, wrong,
/// or a user that may not subscribe or read its id).
fn refused_for_credentials(reason: &str) -> bool {
    let code = reason.trim_start_matches('-');
    ["NOAUTH", "WRONGPASS", "NOPERM"]
        .iter()
        .any(|c| code.starts_with(c))
}

/// Connects, authenticates, learns the connection's id and subscribes.
async fn connect(
    target: &ControlTarget,
    credentials: Option<&Credentials>,
) -> Result<(TcpStream, BytesMut, i64), String> {
    let setup = async {
        let mut stream = TcpStream::connect(&target.address)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut out = BytesMut::new();
        let replies = 2;
        match credentials {
            Some(c) => {
                let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
                let hello: &[&[u8]] = &[b"HELLO", b"3", b"AUTH", user, &c.pass, SETNAME, NAME];
                write_command(&mut out, hello);
            }
            None => write_command(&mut out, &[b"HELLO", b"3", SETNAME, NAME]),
        }
        write_command(&mut out, &[b"CLIENT", b"ID"]);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut scanner = FrameScanner::default();
        let mut id = None;
        for i in 0..replies {
            let frame = read_frame(&mut stream, &mut buf, &mut scanner).await?;
            if is_error(&frame) {
                return Err(String::from_utf8_lossy(&frame).trim().to_owned());
            }
            if i == replies - 1 {
                id = integer(&frame);
            }
        }
        let id = id.ok_or("CLIENT ID gave no integer")?;
        Ok((stream, buf, id))
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or_else(|_| Err("connect timed out".into()))
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
    tracking: &Tracking,
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
    loop {
        // Frames already read (the first may have come with the CLIENT ID reply).
        loop {
            match scanner.next_frame(&buf) {
                Ok(Some(len)) => {
                    scanner = FrameScanner::default();
                    let frame = buf.split_to(len).freeze();
                    if is_pong(&frame) {
                        awaiting_pong = false;
                    } else {
                        handle(tracking, &frame);
                    }
                }
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => return "connection closed by upstream".into(),
                Ok(_) => {}
                Err(e) => return format!("read failed: {e}"),
            },
            _ = tick.tick() => {
                if awaiting_pong {
                    let ms = target.heartbeat.as_millis();
                    return format!("no heartbeat reply within {ms}ms");
                }
                if let Err(e) = writer.write_all(b"*1\r\n$4\r\nPING\r\n").await {
                    return format!("write failed: {e}");
                }
                awaiting_pong = true;
            }
            _ = tracking.broken.notified() => return "tracking redirect broken".into(),
        }
    }
}

/// The heartbeat's reply.
fn is_pong(frame: &Bytes) -> bool {
    &frame[..] == b"+PONG\r\n"
}

/// `>2 invalidate <keys array | null>`: evicts the keys, or flushes L1 (the upstream was
/// flushed).
fn handle(tracking: &Tracking, frame: &Bytes) {
    let Some(parts) = push_elements(frame) else {
        return;
    };
    let [kind, payload] = &parts[..] else {
        return;
    };
    if text(kind).is_none_or(|(t, _)| t != b"invalidate") {
        return;
    }
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
        assert!(is_pong(&Bytes::from_static(b"+PONG\r\n")));
        assert!(!is_pong(&Bytes::from_static(b"$4\r\nPONG\r\n")));
        let push = |s: &'static [u8]| push_elements(&Bytes::from_static(s));
        let keys = push(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(array_elements(&keys[1]).unwrap().len(), 2);
        let flush = push(b">2\r\n$10\r\ninvalidate\r\n_\r\n").unwrap();
        assert!(is_null(&flush[1]));
    }
}
