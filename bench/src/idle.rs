//! Idle clients and round trips: connections that each sent one PING and then wait (the
//! server has set them up and must keep serving the busy ones beside them), and sequential
//! PINGs that time one round trip.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::hist::Histogram;
use crate::load::{await_replies, connect};
use crate::resp;

/// Opens `count` connections to `addr`, one at a time, each answered one PING.
pub async fn open_idle(addr: &str, count: usize) -> Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(count);
    let mut input = BytesMut::with_capacity(64);
    for i in 0..count {
        let mut stream = connect(addr)
            .await
            .with_context(|| format!("idle connection {} of {count}", i + 1))?;
        stream.write_all(resp::PING).await?;
        await_replies(&mut stream, &mut input, 1, true).await?;
        input.clear();
        held.push(stream);
    }
    Ok(held)
}

/// `count` PINGs one after another on one connection (after a few unmeasured ones):
/// their round-trip times.
pub async fn round_trips(addr: &str, count: usize) -> Result<Histogram> {
    let mut stream = connect(addr).await?;
    let mut input = BytesMut::with_capacity(64);
    let mut rtt = Histogram::default();
    for i in 0..count + 10 {
        let sent = Instant::now();
        stream.write_all(resp::PING).await?;
        await_replies(&mut stream, &mut input, 1, true).await?;
        input.clear();
        if i >= 10 {
            rtt.record(sent.elapsed());
        }
    }
    Ok(rtt)
}

/// Milliseconds, for summaries.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
