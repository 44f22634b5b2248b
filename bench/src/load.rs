//! The closed loop: `clients` connections on one thread, each sending a batch of `pipeline`
//! requests and waiting for all its replies before the next. Requests are written into a
//! reused buffer and replies are walked in place; throughput counts the batches that end
//! inside the measured window, latency those that also start in it (after the warm-up).

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dist::{XorShift, Zipf};
use crate::hist::Histogram;
use crate::resp::{self, Reply};

/// What one client sends: appends the next request to `out`.
pub trait Workload {
    /// Appends one request.
    fn push(&self, out: &mut Vec<u8>, rng: &mut XorShift);
    /// Whether a nil reply means the key space was not filled (a run fails on it).
    fn nil_is_error(&self) -> bool;
}

/// `GET` of keys `prefix0..prefix(keys-1)`, uniformly.
pub struct Get {
    /// Key name prefix.
    pub prefix: Vec<u8>,
    /// Key space size.
    pub keys: u64,
}

impl Workload for Get {
    fn push(&self, out: &mut Vec<u8>, rng: &mut XorShift) {
        resp::push_get(out, &self.prefix, rng.below(self.keys));
    }

    fn nil_is_error(&self) -> bool {
        true
    }
}

/// GETs and SETs of Zipf-distributed keys (rank `k` is key number `k`).
pub struct Mix {
    /// Key name prefix.
    pub prefix: Vec<u8>,
    /// The key distribution.
    pub zipf: Zipf,
    /// Chance of a SET instead of a GET.
    pub set_fraction: f64,
    /// What every SET writes.
    pub value: Vec<u8>,
}

impl Workload for Mix {
    fn push(&self, out: &mut Vec<u8>, rng: &mut XorShift) {
        let key = self.zipf.sample(rng);
        if rng.unit() < self.set_fraction {
            resp::push_set(out, &self.prefix, key, &self.value);
        } else {
            resp::push_get(out, &self.prefix, key);
        }
    }

    fn nil_is_error(&self) -> bool {
        true
    }
}

/// `MGET` of `hot` keys drawn from a small key space and `cold` keys drawn from a huge one,
/// so that cold keys almost never repeat (and are almost never set: they read as nil).
pub struct Mget {
    /// Key name prefix, of hot and cold keys alike.
    pub prefix: Vec<u8>,
    /// Keys per MGET from `0..hot_keys`.
    pub hot: usize,
    /// Size of the hot key space.
    pub hot_keys: u64,
    /// Keys per MGET from `0..cold_keys`.
    pub cold: usize,
    /// Size of the cold key space.
    pub cold_keys: u64,
}

impl Workload for Mget {
    fn push(&self, out: &mut Vec<u8>, rng: &mut XorShift) {
        resp::push_header(out, 1 + self.hot + self.cold);
        out.extend_from_slice(b"$4\r\nMGET\r\n");
        for _ in 0..self.hot {
            resp::push_key_arg(out, &self.prefix, rng.below(self.hot_keys));
        }
        for _ in 0..self.cold {
            resp::push_key_arg(out, &self.prefix, rng.below(self.cold_keys));
        }
    }

    fn nil_is_error(&self) -> bool {
        false
    }
}

/// How to drive a workload.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server address.
    pub addr: String,
    /// Concurrent connections.
    pub clients: usize,
    /// Requests per batch.
    pub pipeline: usize,
    /// Run before measuring (connections settle, caches fill).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests whose batch ended in the window.
    pub ops: u64,
    /// Batch latencies (request latencies at pipeline 1).
    pub latency: Histogram,
}

impl Outcome {
    /// The one-line summary every load subcommand prints, `name=value` pairs.
    pub fn summary(&self, measure: Duration) -> String {
        let ms = |q| self.latency.quantile(q).as_secs_f64() * 1e3;
        format!(
            "ops_per_sec={:.0} p50_ms={:.3} p99_ms={:.3} requests={}",
            self.ops as f64 / measure.as_secs_f64(),
            ms(0.5),
            ms(0.99),
            self.ops
        )
    }
}

/// Connects to `addr` with TCP_NODELAY, within 5 s.
pub async fn connect(addr: &str) -> Result<TcpStream> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connect to {addr}: timed out after 5 s"))?
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `workload` as `plan` says, on the current thread, and merges what every client saw.
pub async fn run(plan: &Plan, workload: Rc<dyn Workload>) -> Result<Outcome> {
    let start = Instant::now();
    let window = (start + plan.warmup, start + plan.warmup + plan.measure);
    let bound = plan.warmup + plan.measure + Duration::from_secs(30);
    let local = tokio::task::LocalSet::new();
    let tasks: Vec<_> = (0..plan.clients)
        .map(|i| {
            let (plan, workload) = (plan.clone(), workload.clone());
            local.spawn_local(async move { client(&plan, &*workload, i as u64, window).await })
        })
        .collect();
    let all = local.run_until(async move {
        let mut total = Outcome::default();
        for task in tasks {
            let one = task.await??;
            total.ops += one.ops;
            total.latency.merge(&one.latency);
        }
        Ok::<_, anyhow::Error>(total)
    });
    tokio::time::timeout(bound, all)
        .await
        .map_err(|_| anyhow!("run against {} did not finish within {bound:?}", plan.addr))?
}

/// One client's loop until the window ends.
async fn client(
    plan: &Plan,
    workload: &dyn Workload,
    id: u64,
    (from, until): (Instant, Instant),
) -> Result<Outcome> {
    let mut stream = connect(&plan.addr).await?;
    let mut rng = XorShift::new(0x5EED ^ (id + 1).wrapping_mul(0x1000_0000_01B3));
    let mut out = Vec::with_capacity(16 * 1024);
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut outcome = Outcome::default();
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(outcome);
        }
        out.clear();
        for _ in 0..plan.pipeline {
            workload.push(&mut out, &mut rng);
        }
        stream.write_all(&out).await?;
        await_replies(
            &mut stream,
            &mut input,
            plan.pipeline,
            workload.nil_is_error(),
        )
        .await?;
        let done = Instant::now();
        if done > from && done <= until {
            outcome.ops += plan.pipeline as u64;
            if sent >= from {
                outcome.latency.record(done - sent);
            }
        }
    }
}

/// Reads until `count` replies have arrived; an error reply (or a nil, when `nil_is_error`)
/// fails the run with the server's words.
pub async fn await_replies(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    count: usize,
    nil_is_error: bool,
) -> Result<()> {
    let mut seen = 0;
    loop {
        while seen < count {
            let Some((len, kind)) = resp::next_reply(input)? else {
                break;
            };
            match kind {
                Reply::Error => bail!("server replied {}", resp::error_text(&input[..len])),
                Reply::Nil if nil_is_error => {
                    bail!("server replied nil to a key that should exist: fill the keys first")
                }
                _ => {}
            }
            input.advance(len);
            seen += 1;
        }
        if seen == count {
            return Ok(());
        }
        if stream.read_buf(input).await? == 0 {
            bail!("server closed the connection");
        }
    }
}
