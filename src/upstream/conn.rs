//! One upstream connection: connect and handshake (HELLO/AUTH/SELECT), then a writer that
//! batches queued calls into one write and a reader that matches reply frames to calls in
//! order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::pool::Call;
use super::reply::is_error;
use super::{Credentials, Route, Target};
use crate::error::UpstreamError;
use crate::metrics::Stats;
use crate::protocol::{write_command, FrameScanner, Resp};

/// Bytes gathered from queued calls before one write.
const WRITE_BATCH: usize = 64 * 1024;
/// A request at least this big is written from its own bytes, not copied into a batch.
const LARGE_CALL: usize = 64 * 1024;
/// Initial read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// A read buffer grown past this by a large reply is replaced once it is empty.
const MAX_IDLE_READ_BUFFER: usize = 1024 * 1024;
/// How often an idle connection is checked with a PING.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// The health check request.
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Connects and brings the connection into the route's state.
pub(super) async fn connect(
    target: &Target,
    route: Route,
    creds: Option<&Credentials>,
) -> Result<TcpStream, UpstreamError> {
    let (handshake, replies) = handshake(route, creds);
    let setup = async {
        let mut stream = TcpStream::connect(&target.address)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .set_nodelay(true)
            .map_err(UpstreamError::unavailable)?;
        stream
            .write_all(&handshake)
            .await
            .map_err(UpstreamError::unavailable)?;
        let mut buf = BytesMut::with_capacity(1024);
        for _ in 0..replies {
            let reply = read_frame(&mut stream, &mut buf).await?;
            if is_error(&reply) {
                let text = String::from_utf8_lossy(&reply);
                let text = text.trim_start_matches('-').trim_end();
                // NOAUTH: the client must authenticate itself, and its library expects
                // Redis's own reply for that. Anything else is the sidecar's problem.
                return Err(if text.starts_with("NOAUTH") {
                    UpstreamError::Refused(text.into())
                } else {
                    UpstreamError::unavailable(text)
                });
            }
        }
        Ok(stream)
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or_else(|_| Err(UpstreamError::unavailable("connect timed out")))
}

/// The requests that bring a new connection into the route's state, and how many there are.
fn handshake(route: Route, creds: Option<&Credentials>) -> (BytesMut, usize) {
    let mut out = BytesMut::new();
    let mut count = 0;
    let mut push = |args: &[&[u8]]| {
        write_command(&mut out, args);
        count += 1;
    };
    match (route.resp, creds) {
        (Resp::V3, Some(c)) => {
            let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
            push(&[b"HELLO", b"3", b"AUTH", user, &c.pass]);
        }
        (Resp::V3, None) => push(&[b"HELLO", b"3"]),
        (
            Resp::V2,
            Some(Credentials {
                user: Some(u),
                pass,
            }),
        ) => push(&[b"AUTH", u, pass]),
        (Resp::V2, Some(Credentials { user: None, pass })) => push(&[b"AUTH", pass]),
        (Resp::V2, None) => {}
    }
    if route.db != 0 {
        push(&[b"SELECT", route.db.to_string().as_bytes()]);
    }
    // A connection counts as up only once the server answers (a hung server accepts TCP).
    push(&[b"PING"]);
    (out, count)
}

/// Reads exactly one reply frame (handshake and one-off requests only).
async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes, UpstreamError> {
    let mut scanner = FrameScanner::default();
    loop {
        if let Some(len) = scanner
            .next_frame(buf)
            .map_err(UpstreamError::unavailable)?
        {
            return Ok(buf.split_to(len).freeze());
        }
        if stream
            .read_buf(buf)
            .await
            .map_err(UpstreamError::unavailable)?
            == 0
        {
            return Err(UpstreamError::unavailable("connection closed"));
        }
    }
}

/// Sends `replies` requests on a new connection (RESP2, no credentials) and returns the
/// first error reply, or else the last reply.
pub(super) async fn one_off(
    target: &Target,
    requests: Bytes,
    replies: usize,
) -> Result<Bytes, UpstreamError> {
    let exchange = async {
        let mut stream = TcpStream::connect(&target.address)
            .await
            .map_err(UpstreamError::unavailable)?;
        stream
            .write_all(&requests)
            .await
            .map_err(UpstreamError::unavailable)?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut last = Bytes::new();
        for _ in 0..replies {
            last = read_frame(&mut stream, &mut buf).await?;
            if is_error(&last) {
                break;
            }
        }
        Ok(last)
    };
    tokio::time::timeout(target.connect_timeout + target.timeout, exchange)
        .await
        .unwrap_or(Err(UpstreamError::Timeout))
}

/// A call whose request is written and whose replies are being collected.
struct InFlight {
    call: Call,
    frames: Vec<Bytes>,
}

/// Serves calls until the connection breaks or the pool is dropped; returns why it ended.
pub(super) async fn run(
    stream: TcpStream,
    calls: mpsc::Receiver<Call>,
    pings: mpsc::WeakSender<Call>,
    resp: Resp,
    timeout: Duration,
    stats: &Stats,
) -> Arc<str> {
    let (reader, writer) = stream.into_split();
    let in_flight = Mutex::new(VecDeque::new());
    let reason: Arc<str> = tokio::select! {
        r = write_calls(writer, calls, &in_flight) => r.into(),
        r = read_replies(reader, &in_flight, resp, stats) => r.into(),
        r = watchdog(pings, &in_flight, timeout) => r.into(),
    };
    let failed: Vec<InFlight> = in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect();
    for f in failed {
        let _ = f
            .call
            .tx
            .send(Err(UpstreamError::Unavailable(reason.clone())));
    }
    reason
}

/// Ends the connection when the upstream stops answering: the oldest call has waited longer
/// than `timeout`, or a PING sent while idle has. A hung or unreachable upstream is then
/// seen as down (L1 is flushed) instead of looking connected while nothing gets through.
async fn watchdog(
    pings: mpsc::WeakSender<Call>,
    in_flight: &Mutex<VecDeque<InFlight>>,
    timeout: Duration,
) -> String {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL.min(timeout / 2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (idle, overdue) = {
            let queue = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = queue.front().map(|f| f.call.sent_at.elapsed());
            (oldest.is_none(), oldest.is_some_and(|age| age > timeout))
        };
        if overdue {
            return format!("no reply within {}ms", timeout.as_millis());
        }
        if let (true, Some(calls)) = (idle, pings.upgrade()) {
            let (tx, _) = oneshot::channel();
            let bytes = Bytes::from_static(PING);
            let sent_at = Instant::now();
            let ping = Call {
                bytes,
                replies: 1,
                tx,
                on_reply: None,
                sent_at,
                health_check: true,
            };
            let _ = calls.try_send(ping);
        }
    }
}

async fn write_calls(
    mut writer: OwnedWriteHalf,
    mut calls: mpsc::Receiver<Call>,
    in_flight: &Mutex<VecDeque<InFlight>>,
) -> String {
    let mut batch = Batch::default();
    loop {
        let Some(first) = calls.recv().await else {
            return "pool closed".into();
        };
        batch.queue(first, in_flight);
        batch.take_queued(&mut calls, in_flight);
        // Let the clients that are runnable now queue their calls too: one write then
        // carries many clients' requests (fewer syscalls under load, one scheduler turn of
        // latency when idle).
        tokio::task::yield_now().await;
        batch.take_queued(&mut calls, in_flight);
        if let Err(e) = batch.write(&mut writer).await {
            return format!("write failed: {e}");
        }
    }
}

/// Requests gathered for one write: small ones copied together, large ones kept as the
/// bytes they came in (never copied), in call order.
struct Batch {
    /// Small requests not yet moved to `chunks`.
    buf: BytesMut,
    /// What goes before `buf`, in order.
    chunks: Vec<Bytes>,
    /// Bytes gathered in all.
    len: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            buf: BytesMut::with_capacity(WRITE_BATCH),
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl Batch {
    /// Takes a call's request and registers the call for its replies. The request bytes
    /// are not kept with the call: a large value is freed once written.
    fn queue(&mut self, mut call: Call, in_flight: &Mutex<VecDeque<InFlight>>) {
        let bytes = std::mem::take(&mut call.bytes);
        self.len += bytes.len();
        if bytes.len() >= LARGE_CALL {
            if !self.buf.is_empty() {
                self.chunks.push(self.buf.split().freeze());
            }
            self.chunks.push(bytes);
        } else {
            self.buf.extend_from_slice(&bytes);
        }
        let frames = Vec::with_capacity(call.replies);
        let mut queue = in_flight.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(InFlight { call, frames });
    }

    /// Takes every call already queued, up to [`WRITE_BATCH`] bytes.
    fn take_queued(
        &mut self,
        calls: &mut mpsc::Receiver<Call>,
        in_flight: &Mutex<VecDeque<InFlight>>,
    ) {
        while self.len < WRITE_BATCH {
            let Ok(call) = calls.try_recv() else {
                return;
            };
            self.queue(call, in_flight);
        }
    }

    /// Writes everything gathered, in order, and gives back a grown buffer.
    async fn write(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        for chunk in self.chunks.drain(..) {
            writer.write_all(&chunk).await?;
        }
        if !self.buf.is_empty() {
            writer.write_all(&self.buf).await?;
        }
        self.buf.clear();
        self.len = 0;
        if self.buf.capacity() < WRITE_BATCH || self.buf.capacity() > 2 * WRITE_BATCH {
            self.buf = BytesMut::with_capacity(WRITE_BATCH);
        }
        Ok(())
    }
}

async fn read_replies(
    mut reader: OwnedReadHalf,
    in_flight: &Mutex<VecDeque<InFlight>>,
    resp: Resp,
    stats: &Stats,
) -> String {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut scanner = FrameScanner::default();
    loop {
        match reader.read_buf(&mut buf).await {
            Ok(0) => return "connection closed by upstream".into(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
        let arrived = Instant::now();
        let mut large = false;
        loop {
            let len = match scanner.next_frame(&buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return e.to_string(),
            };
            large |= len > MAX_IDLE_READ_BUFFER;
            let frame = buf.split_to(len).freeze();
            if resp == Resp::V3 && frame.first() == Some(&b'>') {
                continue; // out-of-band push: never a reply to a call
            }
            let done = {
                let mut queue = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let Some(front) = queue.front_mut() else {
                    return "reply without a request".into();
                };
                front.frames.push(frame);
                if front.frames.len() == front.call.replies {
                    queue.pop_front()
                } else {
                    None
                }
            };
            if let Some(done) = done {
                complete(done, arrived, stats);
            }
        }
        size_read_buffer(&mut buf, &scanner, large);
    }
}

/// Makes room for the next read: what a large frame still needs at once (not by doubling),
/// else a small buffer again once a large reply has left (the rest of its allocation would
/// otherwise stay alive as long as this buffer).
fn size_read_buffer(buf: &mut BytesMut, scanner: &FrameScanner, large_left: bool) {
    let missing = scanner.needed().saturating_sub(buf.len());
    let oversized = missing == 0 && buf.capacity() > MAX_IDLE_READ_BUFFER;
    if (large_left || oversized) && buf.len() < READ_BUFFER {
        let mut fresh = BytesMut::with_capacity(READ_BUFFER.max(buf.len() + missing));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
    if missing > 0 {
        buf.reserve(missing);
    } else if buf.capacity() - buf.len() < 4096 {
        buf.reserve(READ_BUFFER);
    }
}

fn complete(done: InFlight, arrived: Instant, stats: &Stats) {
    if !done.call.health_check {
        stats.record_upstream(arrived.saturating_duration_since(done.call.sent_at));
    }
    if let Some(on_reply) = done.call.on_reply {
        on_reply(&done.frames);
    }
    let _ = done.call.tx.send(Ok(done.frames));
}
