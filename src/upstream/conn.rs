//! One established upstream connection (see `handshake` for opening it): a writer that
//! batches queued calls into one write, a reader that matches reply frames to calls in
//! order, a watchdog, and the connection's server-assisted tracking.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::endpoint::Endpoint;
use super::gate::{FillGate, Redirect};
use super::handshake::one_off;
use super::pool::{Call, Health};
use super::stream::{ReadHalf as OwnedReadHalf, UpstreamStream, WriteHalf as OwnedWriteHalf};
use super::Target;
use crate::cache::{ConnFence, FilledBy};
use crate::error::UpstreamError;
use crate::lifecycle::Rare;
use crate::metrics::Stats;
use crate::protocol::decode::{array_elements, integer, text};
use crate::protocol::{command, FrameScanner, Resp};

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
/// A call this many upstream timeouts old while the server still answers other
/// connections: the connection is closed (not a loss: L1 keeps its entries) and replaced.
const STUCK_TIMEOUTS: u32 = 4;

/// A call whose request is written and whose replies are being collected.
struct InFlight {
    call: Call,
    frames: Vec<Bytes>,
}

/// Why a connection ended.
pub(super) enum Ended {
    /// The server went away or stopped answering: updates may have been missed.
    Lost(Arc<str>),
    /// Closed by the sidecar while the server still answered (a call stuck for too long).
    Closed(Arc<str>),
    /// The server stopped answering: a call and a probe went unanswered past the timeout
    /// (lost like [`Ended::Lost`], told apart for the fault it reports).
    Silent(Arc<str>),
}

/// A connection's server-assisted tracking: the epoch its `CLIENT TRACKING` took effect in
/// ([`super::gate::NO_EPOCH`] until then) and the redirect it follows.
pub(super) struct Tracked {
    pub tracking: Arc<dyn FillGate>,
    pub epoch: Arc<AtomicU64>,
    pub redirect: watch::Receiver<Redirect>,
    /// Where the connection was opened, and in which of its generations: after a switch
    /// its replies come from a node that is no longer the primary.
    pub endpoint: Arc<Endpoint>,
    pub generation: u64,
    /// The upstream's own count of calls answered (see [`super::link::Calls`]).
    pub calls: Arc<super::link::Calls>,
    /// This connection's fence: bumped when it ends, which ends what it filled.
    pub fence: ConnFence,
}

impl Tracked {
    /// Whether replies read now may fill L1, and what they fill with.
    fn may_fill(&self) -> Option<FilledBy> {
        let may = self.endpoint.generation() == self.generation
            && self.tracking.may_fill(self.epoch.load(SeqCst));
        may.then(|| match self.tracking.broadcast() {
            // Invalidations reach the control connection whichever connection read the key.
            true => FilledBy::LOCAL,
            false => self.fence.filled_by(),
        })
    }
}

/// The call that turns tracking on with `redirect` (none while there is no control
/// connection), in `OPTOUT` mode: every read is tracked but those the sidecar sends behind
/// `CLIENT CACHING no` (reads that fill nothing); when it succeeds, replies read after it
/// may fill L1 in the redirect's epoch.
/// With broadcast tracking the control connection tracks for every connection: the call is
/// a `PING` that marks where replies start to be covered by its epoch.
/// A refusal (an old or managed Redis, an ACL without CLIENT) leaves the connection
/// unable to fill L1, logged once.
pub(super) fn tracking_call(
    redirect: Redirect,
    epoch: &Arc<AtomicU64>,
    tracking: &Arc<dyn FillGate>,
) -> Option<Call> {
    let id = redirect.id.filter(|_| tracking.enabled())?;
    let id = id.to_string();
    let bytes = match tracking.broadcast() {
        true => command(&[b"PING"]),
        // OPTOUT: reads that fill nothing go behind `CLIENT CACHING no` and leave no state.
        false => command(&[
            b"CLIENT",
            b"TRACKING",
            b"on",
            b"REDIRECT",
            id.as_bytes(),
            b"OPTOUT",
        ]),
    };
    let (epoch, tracking) = (epoch.clone(), tracking.clone());
    let on_reply = Box::new(
        move |frames: &[Bytes], _: Option<FilledBy>| match frames.first() {
            Some(ok) if ok.starts_with(b"+OK") || ok.starts_with(b"+PONG") => {
                epoch.store(redirect.epoch, SeqCst)
            }
            // The control connection went away meanwhile: a new redirect follows.
            Some(e) if e.windows(14).any(|w| w == b"does not exist") => {}
            Some(e) => tracking.refused(e),
            None => {}
        },
    );
    let (tx, _) = oneshot::channel();
    Some(Call {
        bytes,
        replies: 1,
        tx,
        on_reply: Some(on_reply),
        sent_at: Instant::now(),
        health_check: true,
        command: crate::metrics::commands::index(b"client") as u16,
        _counted: None,
        frames: Vec::new(),
        writes: false,
        retryable: false,
    })
}

/// Turns tracking on again each time the redirect changes (a new control connection).
/// Queued like any call: replies to calls sent before it do not fill L1.
async fn retrack(
    mut redirect: watch::Receiver<Redirect>,
    calls: mpsc::WeakSender<Call>,
    epoch: Arc<AtomicU64>,
    tracking: Arc<dyn FillGate>,
) {
    while redirect.changed().await.is_ok() {
        let now = *redirect.borrow_and_update();
        let Some(call) = tracking_call(now, &epoch, &tracking) else {
            continue;
        };
        let Some(tx) = calls.upgrade() else {
            break;
        };
        let _ = tx.send(call).await;
    }
    std::future::pending::<()>().await;
}

/// Serves calls until the connection breaks, is given up, or the pool is dropped. The
/// calls it leaves unanswered (written or still queued) get the reason as an error, except
/// the retryable ones still within their deadline (see [`Call::retryable`]): those are
/// returned in order, no longer retryable, to be sent once more.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    stream: UpstreamStream,
    mut calls: mpsc::Receiver<Call>,
    pings: mpsc::WeakSender<Call>,
    resp: Resp,
    target: &Target,
    health: &Health,
    stats: &Stats,
    tracked: Tracked,
) -> (Ended, Vec<Call>) {
    let (reader, writer) = stream.into_split();
    let in_flight = Mutex::new(VecDeque::new());
    let retracking = retrack(
        tracked.redirect.clone(),
        pings.clone(),
        tracked.epoch.clone(),
        tracked.tracking.clone(),
    );
    let (endpoint, generation) = (tracked.endpoint.clone(), tracked.generation);
    // Polled only when they fire, not on every call and reply (see `Rare`).
    let switched = Rare::new(endpoint.switched(generation));
    let watched = Rare::new(watchdog(pings, &in_flight, target));
    let retracking = Rare::new(retracking);
    let ended = tokio::select! {
        r = write_calls(writer, &mut calls, &in_flight, health) => Ended::Lost(r.into()),
        r = read_replies(reader, &in_flight, resp, health, stats, &tracked) => Ended::Lost(r.into()),
        // Replaced at once by a connection to the new primary (L1 is flushed by the switch).
        _ = switched => Ended::Closed("the primary switched".into()),
        e = watched => e,
        _ = retracking => Ended::Lost("tracking stopped".into()),
    };
    let reason = match &ended {
        Ended::Lost(r) | Ended::Closed(r) | Ended::Silent(r) => r.clone(),
    };
    let left: Vec<Call> = {
        let mut queue = in_flight.lock();
        health.set_oldest(None);
        for _ in queue.iter().filter(|f| f.call.writes) {
            health.write_done();
        }
        queue.drain(..).map(InFlight::unanswered).collect()
    };
    // Then the calls queued and never written, in order.
    calls.close();
    let queued = std::iter::from_fn(|| calls.try_recv().ok());
    let mut retries = Vec::new();
    for mut call in left.into_iter().chain(queued) {
        if call.retryable && call.sent_at.elapsed() < target.timeout {
            call.retryable = false;
            retries.push(call);
        } else {
            let _ = call
                .tx
                .send(Err(UpstreamError::Unavailable(reason.clone())));
        }
    }
    (ended, retries)
}

impl InFlight {
    /// The call again, as it was before it was written (its request bytes are kept for a
    /// retryable call, see [`Batch::queue`]), with the frames read so far dropped.
    fn unanswered(self) -> Call {
        let InFlight {
            mut call,
            mut frames,
        } = self;
        frames.clear();
        call.frames = frames;
        call
    }
}

/// Watches the oldest call. Past the upstream timeout the server is probed on a fresh
/// connection: if it does not answer either, the connection is lost (a hung or unreachable
/// upstream is seen as down and L1 is flushed instead of looking connected while nothing
/// gets through); if it answers, the command is merely slow (a paused write, a long
/// script) and the connection stays, until the call is [`STUCK_TIMEOUTS`] timeouts old.
/// An idle connection is checked with a PING, which is then the oldest call.
async fn watchdog(
    pings: mpsc::WeakSender<Call>,
    in_flight: &Mutex<VecDeque<InFlight>>,
    target: &Target,
) -> Ended {
    let timeout = target.timeout;
    let mut tick = tokio::time::interval(HEALTH_INTERVAL.min(timeout / 2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let oldest = {
            let queue = in_flight.lock();
            queue.front().map(|f| f.call.sent_at.elapsed())
        };
        match oldest {
            Some(age) if age > timeout => {
                if !answers(target).await {
                    return Ended::Silent(
                        format!("no reply within {}ms", timeout.as_millis()).into(),
                    );
                }
                if age > timeout * STUCK_TIMEOUTS {
                    let waited = age.as_millis();
                    return Ended::Closed(format!("a call waited {waited}ms").into());
                }
            }
            Some(_) => {}
            None => {
                if let Some(calls) = pings.upgrade() {
                    let (tx, _) = oneshot::channel();
                    let ping = Call {
                        bytes: Bytes::from_static(PING),
                        replies: 1,
                        tx,
                        on_reply: None,
                        sent_at: Instant::now(),
                        health_check: true,
                        command: crate::metrics::commands::index(b"ping") as u16,
                        _counted: None,
                        frames: Vec::new(),
                        writes: false,
                        retryable: false,
                    };
                    let _ = calls.try_send(ping);
                }
            }
        }
    }
}

/// Whether the server answers a PING on a fresh connection within the upstream timeout
/// (any reply counts: `-NOAUTH`, `-BUSY` and `-LOADING` come from a live server).
async fn answers(target: &Target) -> bool {
    let probe = one_off(target, Bytes::from_static(PING), 1);
    matches!(tokio::time::timeout(target.timeout, probe).await, Ok(Ok(_)))
}

async fn write_calls(
    mut writer: OwnedWriteHalf,
    calls: &mut mpsc::Receiver<Call>,
    in_flight: &Mutex<VecDeque<InFlight>>,
    health: &Health,
) -> String {
    let mut batch = Batch::default();
    loop {
        let Some(first) = calls.recv().await else {
            return "pool closed".into();
        };
        // Replies still awaited when the first call was queued: the connection is busy,
        // and other clients are likely runnable with calls of their own.
        let busy = batch.queue(first, in_flight, health);
        batch.take_queued(calls, in_flight, health);
        if busy {
            // Let the clients that are runnable now queue their calls too: one write then
            // carries many clients' requests (fewer syscalls under load). An idle
            // connection writes at once: the scheduler turn would only add latency.
            tokio::task::yield_now().await;
            batch.take_queued(calls, in_flight, health);
        }
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
    /// are kept with the call only if it is retryable: a large value is freed once written.
    /// Returns whether other calls were awaiting replies (the connection was busy).
    fn queue(
        &mut self,
        mut call: Call,
        in_flight: &Mutex<VecDeque<InFlight>>,
        health: &Health,
    ) -> bool {
        self.len += call.bytes.len();
        if call.bytes.len() >= LARGE_CALL {
            if !self.buf.is_empty() {
                self.chunks.push(self.buf.split().freeze());
            }
            let bytes = match call.retryable {
                true => call.bytes.clone(),
                false => std::mem::take(&mut call.bytes),
            };
            self.chunks.push(bytes);
        } else {
            self.buf.extend_from_slice(&call.bytes);
            if !call.retryable {
                call.bytes = Bytes::new();
            }
        }
        let mut frames = std::mem::take(&mut call.frames);
        frames.reserve(call.replies);
        let mut queue = in_flight.lock();
        let busy = !queue.is_empty();
        if !busy {
            health.set_oldest(Some(call.sent_at));
        }
        if call.writes {
            health.write_sent();
        }
        queue.push_back(InFlight { call, frames });
        busy
    }

    /// Takes every call already queued, up to [`WRITE_BATCH`] bytes.
    fn take_queued(
        &mut self,
        calls: &mut mpsc::Receiver<Call>,
        in_flight: &Mutex<VecDeque<InFlight>>,
        health: &Health,
    ) {
        while self.len < WRITE_BATCH {
            let Ok(call) = calls.try_recv() else {
                return;
            };
            self.queue(call, in_flight, health);
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
        // A TLS session holds written data until flushed (nothing to do on a plain socket).
        writer.flush().await?;
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
    health: &Health,
    stats: &Stats,
    tracked: &Tracked,
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
                // Out-of-band push: never a reply to a call.
                if let Some(id) = redirect_broken(&frame) {
                    tracked.tracking.redirect_broken(id);
                }
                continue;
            }
            if frame.starts_with(b"-READONLY") {
                // A replica answered a write: the primary may have been replaced.
                tracked.endpoint.doubt("a -READONLY reply");
            }
            let done = {
                let mut queue = in_flight.lock();
                let Some(front) = queue.front_mut() else {
                    return "reply without a request".into();
                };
                front.frames.push(frame);
                if front.frames.len() == front.call.replies {
                    let done = queue.pop_front();
                    health.set_oldest(queue.front().map(|f| f.call.sent_at));
                    if done.as_ref().is_some_and(|d| d.call.writes) {
                        health.write_done();
                    }
                    done
                } else {
                    None
                }
            };
            if let Some(done) = done {
                complete(done, arrived, stats, tracked);
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

/// The redirect id of a `tracking-redir-broken` push (`>2 $21 tracking-redir-broken :id`):
/// Redis sends it (to RESP3 connections only) when it cannot deliver an invalidation to the
/// redirect target because that client is gone.
fn redirect_broken(push: &Bytes) -> Option<i64> {
    let mut array = BytesMut::from(&push[..]);
    array[0] = b'*';
    let parts = array_elements(&array.freeze())?;
    let (kind, _) = text(parts.first()?)?;
    if kind != b"tracking-redir-broken" {
        return None;
    }
    integer(parts.get(1)?)
}

fn complete(done: InFlight, arrived: Instant, stats: &Stats, tracked: &Tracked) {
    let may_fill = tracked.may_fill();
    if !done.call.health_check {
        let latency = arrived.saturating_duration_since(done.call.sent_at);
        stats.record_upstream(latency, usize::from(done.call.command));
        tracked.calls.record(latency);
    }
    if let Some(on_reply) = done.call.on_reply {
        on_reply(&done.frames, may_fill);
    }
    let _ = done.call.tx.send(Ok(done.frames));
}
