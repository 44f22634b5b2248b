//! A fake upstream for the handler tests: one in-memory Redis (strings only) behind a
//! [`Router`], reached by pooled calls and by clients' own connections (in-memory pipes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::error::UpstreamError;
use crate::protocol::{Limits, RequestParser};
use crate::upstream::{Dedicated, Lane, Lanes, Outgoing, PendingReply, Route, Router};

/// Called with each command's arguments as the fake receives it, before it runs.
pub(super) type Hook = Box<dyn FnMut(&[Bytes]) + Send>;

/// The fake Redis: its keys, what it was sent, and a hook run on each command.
#[derive(Default)]
pub(super) struct Redis {
    data: Mutex<HashMap<Bytes, Bytes>>,
    log: Mutex<Vec<String>>,
    hook: Mutex<Option<Hook>>,
}

impl Redis {
    /// Sets a key as another client would (no invalidation reaches the sidecar).
    pub(super) fn set(&self, key: &str, value: &str) {
        let (k, v) = (Bytes::copy_from_slice(key.as_bytes()), value.as_bytes());
        self.data.lock().insert(k, Bytes::copy_from_slice(v));
    }

    /// The commands received, each as its arguments joined by spaces.
    pub(super) fn log(&self) -> Vec<String> {
        self.log.lock().clone()
    }

    /// Runs `hook` on each command from now on, as it arrives.
    pub(super) fn on_command(&self, hook: Hook) {
        *self.hook.lock() = Some(hook);
    }

    /// Runs the commands in `bytes`, returning one reply frame each; `queued` holds a
    /// transaction's commands while one is open on a client's own connection.
    fn run(&self, bytes: &[u8], mut queued: Option<&mut Option<Vec<Vec<Bytes>>>>) -> Vec<Bytes> {
        let mut input = BytesMut::from(bytes);
        let mut parser = RequestParser::default();
        let limits = Limits {
            max_bulk_bytes: 1 << 20,
            max_array_len: 1024,
            max_inline_bytes: 64 * 1024,
        };
        let mut frames = Vec::new();
        while let Ok(Some(req)) = parser.next(&mut input, &limits) {
            let args = req.args;
            let text: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            self.log.lock().push(text.join(" "));
            if let Some(hook) = self.hook.lock().as_mut() {
                hook(&args);
            }
            let name = args[0].to_ascii_uppercase();
            let frame = match (&name[..], queued.as_deref_mut()) {
                (b"MULTI", Some(q)) => {
                    *q = Some(Vec::new());
                    Bytes::from_static(b"+OK\r\n")
                }
                (b"EXEC", Some(q)) => {
                    let commands = q.take().unwrap_or_default();
                    let mut out = BytesMut::new();
                    out.extend_from_slice(format!("*{}\r\n", commands.len()).as_bytes());
                    for c in commands {
                        out.extend_from_slice(&self.apply(&c));
                    }
                    out.freeze()
                }
                (_, Some(Some(q))) => {
                    q.push(args.to_vec());
                    Bytes::from_static(b"+QUEUED\r\n")
                }
                _ => self.apply(&args),
            };
            frames.push(frame);
        }
        frames
    }

    /// One command's reply.
    fn apply(&self, args: &[Bytes]) -> Bytes {
        let mut data = self.data.lock();
        let bulk = |v: Option<&Bytes>| match v {
            Some(v) => {
                let mut out = BytesMut::new();
                out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
                out.freeze()
            }
            None => Bytes::from_static(b"$-1\r\n"),
        };
        match &args[0].to_ascii_uppercase()[..] {
            b"GET" => bulk(data.get(&args[1])),
            b"PTTL" => match data.contains_key(&args[1]) {
                true => Bytes::from_static(b":-1\r\n"),
                false => Bytes::from_static(b":-2\r\n"),
            },
            b"MGET" => {
                let mut out = BytesMut::new();
                out.extend_from_slice(format!("*{}\r\n", args.len() - 1).as_bytes());
                for k in &args[1..] {
                    out.extend_from_slice(&bulk(data.get(k)));
                }
                out.freeze()
            }
            b"SET" => {
                data.insert(args[1].clone(), args[2].clone());
                Bytes::from_static(b"+OK\r\n")
            }
            b"CLIENT" => Bytes::from_static(b":7\r\n"),
            _ => Bytes::from_static(b"+OK\r\n"),
        }
    }
}

/// Routes every route to the one fake Redis.
pub(super) struct Fake {
    pub(super) redis: Arc<Redis>,
    pool: Arc<FakePool>,
}

impl Fake {
    pub(super) fn new() -> Arc<Fake> {
        let redis = Arc::new(Redis::default());
        let pool = Arc::new(FakePool(redis.clone()));
        Arc::new(Fake { redis, pool })
    }
}

/// The fake's pool: a call's replies arrive after it is sent (from a task), having gone
/// through the call's fill callback first, as a real pool's do.
pub(super) struct FakePool(Arc<Redis>);

impl Lanes for FakePool {
    async fn send_on(&self, lane: &Lane, call: Outgoing) -> Result<PendingReply, UpstreamError> {
        let frames = self.0.run(&call.bytes, None);
        assert_eq!(frames.len(), call.replies, "replies for {:?}", call.bytes);
        let (tx, pending) = PendingReply::channel(lane, Duration::from_secs(5));
        tokio::spawn(async move {
            if let Some(on_reply) = call.on_reply {
                on_reply(&frames, Some(crate::cache::FilledBy::LOCAL));
            }
            let _ = tx.send(Ok(frames));
        });
        Ok(pending)
    }
}

impl Dedicated for DuplexStream {
    fn alive(&self) -> bool {
        true
    }
}

impl Router for Fake {
    type Pool = FakePool;
    type Dedicated = DuplexStream;

    fn try_pool(&self, _: Route) -> Result<Arc<FakePool>, UpstreamError> {
        Ok(self.pool.clone())
    }

    fn pool(&self, _: Route) -> Arc<FakePool> {
        self.pool.clone()
    }

    fn link_up(&self) -> bool {
        true
    }

    fn coherent(&self) -> bool {
        true
    }

    /// A connection of the client's own: a pipe to a task that runs what it reads.
    async fn dedicated(
        &self,
        _: Route,
        _: Option<u16>,
        _: Duration,
    ) -> Result<(DuplexStream, Option<u64>), UpstreamError> {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let mut input = BytesMut::new();
            let mut multi = None;
            while let Ok(1..) = theirs.read_buf(&mut input).await {
                // Whole requests only (the tests write each in one piece).
                let frames = redis.run(&input.split(), Some(&mut multi));
                for frame in frames {
                    if theirs.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok((ours, Some(7)))
    }
}
