//! Touching every key of a range once, fast: pipelined SETs (`fill`) or GETs (`read`),
//! the range split across a few connections.

use std::time::Instant;

use anyhow::Result;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::load::{await_replies, connect};
use crate::resp;

/// What to send for each key.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// `SET key value`.
    Set(&'a [u8]),
    /// `GET key`; a nil reply fails (the keys must exist).
    Get,
}

/// A range of keys and how to cover it.
#[derive(Debug, Clone)]
pub struct Range {
    /// Server address.
    pub addr: String,
    /// Key name prefix.
    pub prefix: Vec<u8>,
    /// First key number.
    pub start: u64,
    /// Keys.
    pub count: u64,
    /// Connections, each covering a contiguous slice.
    pub connections: u64,
    /// Requests per batch.
    pub pipeline: u64,
}

/// Sends `op` for every key of `range`; returns the seconds it took.
pub async fn touch_all(range: &Range, op: Op<'_>) -> Result<f64> {
    let started = Instant::now();
    let connections = range.connections.clamp(1, range.count.max(1));
    let per = range.count.div_ceil(connections);
    let local = tokio::task::LocalSet::new();
    let value = match op {
        Op::Set(v) => Some(v.to_vec()),
        Op::Get => None,
    };
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let first = range.start + i * per;
            let end = (first + per).min(range.start + range.count);
            let (range, value) = (range.clone(), value.clone());
            local.spawn_local(async move { slice(&range, value.as_deref(), first, end).await })
        })
        .collect();
    local
        .run_until(async move {
            for task in tasks {
                task.await??;
            }
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Keys `first..end` on one connection.
async fn slice(range: &Range, value: Option<&[u8]>, first: u64, end: u64) -> Result<()> {
    let mut stream = connect(&range.addr).await?;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut next = first;
    while next < end {
        let batch = range.pipeline.min(end - next);
        out.clear();
        for n in next..next + batch {
            match value {
                Some(v) => resp::push_set(&mut out, &range.prefix, n, v),
                None => resp::push_get(&mut out, &range.prefix, n),
            }
        }
        stream.write_all(&out).await?;
        await_replies(&mut stream, &mut input, batch as usize, value.is_none()).await?;
        next += batch;
    }
    Ok(())
}
