//! The bounded warm fetch every warming goes through: `MGET k1..kn` with `PTTL k` for each,
//! pipelined in one call on the warming's route (the sidecar's own: its database, RESP2,
//! user 0; for `NEARCACHE WARM`, the client's database and user, RESP2), filling
//! L1 through the normal fill path (a generation taken before sending, the pool's
//! `may_fill`, so an invalidation or a flush overtaking the fetch keeps its result out).
//! Bounded by `[warm] max_keys` and `max_bytes` (key + encoded value, counted as entries
//! are admitted, one call in flight at a time so the bound is exact) and by the rate limit;
//! what the replies show of the route user's ACL rules is learned as a client's fetch learns it (a
//! `GET` of the batch's first key rides along while GET is not known permitted, so a warmed
//! key is a hit from the first `GET`);
//! it waits (bounded) for the invalidation link, retries a failed call a few times, and
//! stops on shutdown. Each batch's sizes are asked first (`STRLEN` of every key, one
//! pipelined call): a value L1 would not hold (over [`MAX_ENTRY_BYTES`]) or that does not fit
//! what is left of `max_bytes` is never fetched, and one `MGET` carries at most
//! [`CALL_BYTES`] of values, so keys holding 100 MiB values cost the sidecar nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::rate::Rate;
use super::Context;
use crate::acl::Read;
use crate::cache::{CacheKey, MAX_ENTRY_BYTES};
use crate::protocol::decode::{array_elements, integer, is_bulk, is_error};
use crate::protocol::{write_command, Resp};
use crate::upstream::{Lane, OnReply, Pool, Route};

/// The sidecar's own route: its database, RESP2, user 0.
pub fn own_route(cx: &Context) -> Route {
    Route {
        db: cx.db,
        resp: Resp::V2,
        user: 0,
    }
}

/// How long a warming waits for L1 to serve again (the invalidation link) before it gives
/// up.
pub const LINK_WAIT: Duration = Duration::from_secs(30);
/// Attempts of one call before the warming gives up.
const ATTEMPTS: usize = 10;
/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Poll period while waiting for the link.
const POLL: Duration = Duration::from_millis(50);
/// Most value bytes (as `STRLEN` announced them) one `MGET` of a warming fetches.
pub const CALL_BYTES: u64 = 16 << 20;
/// At least what an encoded reply (`$<len>\r\n` and `\r\n`) adds to a value of up to
/// [`MAX_ENTRY_BYTES`], as the budget counts it.
const REPLY_FRAMING: u64 = 16;

/// How a warming stage ended early.
#[derive(Debug)]
pub enum End {
    /// `max_keys` or `max_bytes` reached: the warming is done.
    Full,
    /// Shutdown.
    Stopped,
    /// Given up (the reason is logged and shown).
    Failed(String),
    /// The upstream refused a command of the warming as the route's user (its error reply,
    /// e.g. `-NOPERM`, which the client that asked gets as it is).
    Refused(Bytes),
}

/// What one warming may load, and what it loaded.
struct Budget {
    max_keys: u64,
    max_bytes: u64,
    keys: AtomicU64,
    bytes: AtomicU64,
    /// An entry was refused for the byte bound.
    full: AtomicBool,
}

impl Budget {
    /// Counts an entry of `size` bytes if it fits. Runs on the upstream reader, one call
    /// in flight at a time.
    fn admit(&self, size: u64) -> bool {
        let (keys, bytes) = (self.keys.load(Relaxed), self.bytes.load(Relaxed));
        if keys >= self.max_keys || bytes + size > self.max_bytes {
            self.full.store(true, Relaxed);
            return false;
        }
        self.keys.store(keys + 1, Relaxed);
        self.bytes.store(bytes + size, Relaxed);
        true
    }

    fn is_full(&self) -> bool {
        self.full.load(Relaxed)
            || self.keys.load(Relaxed) >= self.max_keys
            || self.bytes.load(Relaxed) >= self.max_bytes
    }
}

/// One warming's fetcher.
pub struct Fetch {
    cx: Arc<Context>,
    /// The route's database and user key what is loaded.
    route: Route,
    pool: Arc<Pool>,
    lane: Lane,
    rate: Rate,
    batch: usize,
    budget: Arc<Budget>,
    stop: CancellationToken,
}

impl Fetch {
    /// A fetcher loading at most `max_keys` keys (and `[warm] max_bytes`) on `route`: its
    /// user's ACL rules decide what it reads, and what it loads is that user's, in the
    /// route's database.
    pub fn new(cx: Arc<Context>, route: Route, max_keys: u64) -> Fetch {
        let config = &cx.warm.config;
        let pool = cx.upstream.pool(route);
        Fetch {
            rate: Rate::new(config.rate, config.batch),
            batch: config.batch.max(1),
            budget: Arc::new(Budget {
                max_keys: max_keys.min(config.max_keys),
                max_bytes: config.max_bytes,
                keys: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                full: AtomicBool::new(false),
            }),
            stop: cx.warm.stopper(),
            lane: Lane::default(),
            route,
            pool,
            cx,
        }
    }

    /// Keys per `SCAN COUNT` and per `MGET`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Keys and bytes loaded so far.
    pub fn loaded(&self) -> (u64, u64) {
        let b = &self.budget;
        (b.keys.load(Relaxed), b.bytes.load(Relaxed))
    }

    /// Loads `keys` in batches (those of a namespace with `cache = false`, and those outside
    /// every `--tracking bcast` prefix, are left out); `Err` ends the warming.
    pub async fn keys(&mut self, keys: &[Bytes]) -> Result<(), End> {
        let l1 = &self.cx.l1;
        let cached: Vec<Bytes>;
        let mut rest = match l1.namespaces().is_empty() && l1.covers_all() {
            true => keys,
            false => {
                cached = keys.iter().filter(|k| l1.caches(k)).cloned().collect();
                &cached[..]
            }
        };
        while !rest.is_empty() {
            if self.budget.is_full() {
                return Err(End::Full);
            }
            let left = self.budget.max_keys - self.budget.keys.load(Relaxed);
            let n = rest.len().min(self.batch).min(left as usize);
            let (now, later) = rest.split_at(n);
            self.charge(n).await?;
            for group in self.sized(now).await? {
                self.mget(&group).await?;
            }
            rest = later;
        }
        Ok(())
    }

    /// `keys` in groups of at most [`CALL_BYTES`] of values, leaving out those whose value
    /// L1 would not hold or that do not fit the byte budget (which is then full, as when an
    /// entry is refused). A key `STRLEN` cannot size (an ACL refusal) is kept, counted as
    /// empty; one holding another type is left out (`MGET` reads it as nil anyway).
    async fn sized(&mut self, keys: &[Bytes]) -> Result<Vec<Vec<Bytes>>, End> {
        let mut bytes = BytesMut::new();
        for k in keys {
            write_command(&mut bytes, &[b"STRLEN", k]);
        }
        let sizes = self.call_frames(bytes.freeze(), keys.len()).await?;
        let budget = &self.budget;
        let mut room = budget.max_bytes.saturating_sub(budget.bytes.load(Relaxed));
        let (mut groups, mut group, mut in_group) = (Vec::new(), Vec::new(), 0u64);
        for (key, size) in keys.iter().zip(&sizes) {
            let len = match integer(size) {
                Some(n) => n.max(0) as u64,
                None if size.starts_with(b"-WRONGTYPE") => continue,
                None => 0,
            };
            if len > MAX_ENTRY_BYTES as u64 {
                continue;
            }
            let cost = key.len() as u64 + len + REPLY_FRAMING;
            if cost > room {
                budget.full.store(true, Relaxed);
                continue;
            }
            room -= cost;
            if in_group + len > CALL_BYTES && !group.is_empty() {
                groups.push(std::mem::take(&mut group));
                in_group = 0;
            }
            in_group += len;
            group.push(key.clone());
        }
        if !group.is_empty() {
            groups.push(group);
        }
        Ok(groups)
    }

    /// Waits for `tokens` of the rate limit (a `SCAN` call is charged a share of a batch).
    pub async fn charge(&mut self, tokens: usize) -> Result<(), End> {
        let wait = self.rate.wait_for(tokens);
        self.pause(wait).await?;
        self.rate.take(tokens).await;
        Ok(())
    }

    /// One `MGET` + `PTTL`s call, retried.
    async fn mget(&mut self, keys: &[Bytes]) -> Result<(), End> {
        let route = self.route;
        let build = |cx: &Arc<Context>, budget: &Arc<Budget>| {
            let l1 = cx.l1.clone();
            let warm = cx.warm.clone();
            let budget = budget.clone();
            let leads: Vec<_> = keys
                .iter()
                .map(|k| {
                    let key = CacheKey {
                        user: route.user,
                        db: route.db,
                        key: k.clone(),
                    };
                    let taken = l1.generation(&key);
                    (key, taken)
                })
                .collect();
            let acl = cx.acl.clone();
            let marks = acl.marks(route.user);
            let taken_epoch = acl.epoch();
            let teach_get = !acl.permits(&marks, Read::Get);
            let mut mget: Vec<&[u8]> = vec![b"MGET"];
            mget.extend(keys.iter().map(|k| &k[..]));
            let mut bytes = BytesMut::new();
            write_command(&mut bytes, &mget);
            for k in keys {
                write_command(&mut bytes, &[b"PTTL", k]);
            }
            if teach_get {
                write_command(&mut bytes, &[b"GET", &keys[0]]);
            }
            let replies = 1 + keys.len() + usize::from(teach_get);
            let sent_at = Instant::now();
            let on_reply: OnReply = Box::new(
                move |frames: &[Bytes], may_fill: Option<crate::cache::FilledBy>| {
                    if frames.len() != 1 + leads.len() + usize::from(teach_get) {
                        return;
                    }
                    if !is_error(&frames[0]) {
                        acl.learn(&marks, Read::Mget, taken_epoch);
                    }
                    if teach_get && !is_error(&frames[1 + leads.len()]) {
                        acl.learn(&marks, Read::Get, taken_epoch);
                    }
                    let Some(elements) = array_elements(&frames[0]) else {
                        return;
                    };
                    if elements.len() != leads.len() {
                        return;
                    }
                    for (i, (key, taken)) in leads.into_iter().enumerate() {
                        let (reply, pttl) = (&elements[i], &frames[1 + i]);
                        if may_fill.is_none() || !is_bulk(reply) {
                            // Not counted: a missing key (cached as such if enabled) or a key of
                            // another type (not cached).
                            l1.fill(key, taken, sent_at, reply, pttl, false, may_fill);
                            continue;
                        }
                        if !matches!(integer(pttl), Some(-1) | Some(1..)) {
                            continue; // gone or changed between MGET and PTTL
                        }
                        let size = (key.key.len() + reply.len()) as u64;
                        if !budget.admit(size) {
                            continue;
                        }
                        warm.loaded(size);
                        l1.fill(key, taken, sent_at, reply, pttl, false, may_fill);
                    }
                },
            );
            (bytes.freeze(), replies, on_reply)
        };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.pause(RETRY_PAUSE).await?;
            }
            self.ready().await?;
            let (bytes, replies, on_reply) = build(&self.cx, &self.budget);
            match self.send(bytes, replies, Some(on_reply)).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(End::Failed(format!("MGET failed {ATTEMPTS} times: {last}")))
    }

    /// One call of one command (a `SCAN`): its reply, retried on a failed link.
    pub async fn call(&mut self, bytes: Bytes) -> Result<Bytes, End> {
        let mut frames = self.call_frames(bytes, 1).await?;
        frames.pop().ok_or(End::Failed("no reply".into()))
    }

    /// One call of `replies` pipelined commands: their replies, retried on a failed link.
    async fn call_frames(&mut self, bytes: Bytes, replies: usize) -> Result<Vec<Bytes>, End> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.pause(RETRY_PAUSE).await?;
            }
            self.ready().await?;
            match self.send(bytes.clone(), replies, None).await {
                Ok(frames) if frames.len() == replies => return Ok(frames),
                Ok(frames) => last = format!("{} replies to {replies} commands", frames.len()),
                Err(e) => last = e,
            }
        }
        Err(End::Failed(format!("call failed {ATTEMPTS} times: {last}")))
    }

    async fn send(
        &self,
        bytes: Bytes,
        replies: usize,
        on_reply: Option<OnReply>,
    ) -> Result<Vec<Bytes>, String> {
        let pending = self
            .pool
            .send(&self.lane, bytes, replies, on_reply)
            .await
            .map_err(|e| e.to_string())?;
        pending.wait().await.map_err(|e| e.to_string())
    }

    /// Waits (at most [`LINK_WAIT`]) until L1 serves: the invalidation link is up (or not
    /// needed). Fails at once when L1 is disabled.
    async fn ready(&mut self) -> Result<(), End> {
        let deadline = tokio::time::Instant::now() + LINK_WAIT;
        loop {
            if self.stop.is_cancelled() {
                return Err(End::Stopped);
            }
            if !self.cx.l1.enabled() {
                return Err(End::Failed("L1 is disabled".into()));
            }
            if self.cx.control.serving() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let secs = LINK_WAIT.as_secs();
                return Err(End::Failed(format!("invalidation link down for {secs}s")));
            }
            self.pause(POLL).await?;
        }
    }

    /// Sleeps for `d` unless the sidecar shuts down meanwhile.
    pub async fn pause(&mut self, d: Duration) -> Result<(), End> {
        if d.is_zero() {
            return match self.stop.is_cancelled() {
                true => Err(End::Stopped),
                false => Ok(()),
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.stop.cancelled() => Err(End::Stopped),
        }
    }
}
