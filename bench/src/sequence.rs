//! `zipf-gets`: a fixed number of GETs of Zipf-chosen keys, one at a time on one connection:
//! the first requests a newly started sidecar sees. The script reads the sidecar's hit
//! ratio over them from `INFO nearcache` before and after.

use anyhow::Result;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::dist::{XorShift, Zipf};
use crate::load::{await_replies, connect};
use crate::resp;

/// `count` sequential GETs of `prefix` + a rank drawn from `zipf` (seeded with `seed`, so a
/// sequence can be replayed or varied); every key must exist. Returns the seconds taken.
pub async fn zipf_gets(
    addr: &str,
    prefix: &[u8],
    zipf: &Zipf,
    count: u64,
    seed: u64,
) -> Result<f64> {
    let started = std::time::Instant::now();
    let mut stream = connect(addr).await?;
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(64);
    let mut input = BytesMut::with_capacity(16 * 1024);
    for _ in 0..count {
        out.clear();
        resp::push_get(&mut out, prefix, zipf.sample(&mut rng));
        stream.write_all(&out).await?;
        await_replies(&mut stream, &mut input, 1, true).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
