//! Invalidation lag: the time from a write acknowledged to the new value served by another
//! sidecar, and the upstream's tracking table after caching many keys through one sidecar.
//!
//! `lag <redis-port> <sidecar-a-port> <sidecar-b-port> [iterations] [tracked-keys]`
//! (run by bench/scripts/bench-lag.sh). The lag includes one GET round trip through B.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto_tests::{bulk, encode_command_str, info_u64, show, Conn};

/// Bound on waiting for one new value to be served.
const BOUND: Duration = Duration::from_secs(2);

fn port_arg(args: &[String], i: usize, what: &str) -> SocketAddr {
    let port: u16 = args
        .get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what} port"));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes `iterations` new values of `key` through `writer`, and after each acknowledgment
/// polls GET through `reader` until it serves the new value; returns the lags.
fn measure(writer: &mut Conn, reader: &mut Conn, key: &str, tag: &str, n: usize) -> Vec<Duration> {
    let mut lags = Vec::with_capacity(n);
    for i in 0..n {
        let value = format!("{tag}{i}");
        let want = bulk(value.as_bytes());
        let reply = writer.cmd_str(&["SET", key, &value]);
        assert_eq!(reply, b"+OK\r\n", "SET: {}", show(&reply));
        let acked = Instant::now();
        loop {
            if reader.cmd_str(&["GET", key]) == want {
                break;
            }
            assert!(acked.elapsed() < BOUND, "{key} not {value} after {BOUND:?}");
        }
        lags.push(acked.elapsed());
        // B caches the new value (a hit follows) before the next write evicts it.
        assert_eq!(reader.cmd_str(&["GET", key]), want);
    }
    lags
}

fn print(what: &str, mut lags: Vec<Duration>) {
    lags.sort();
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "lag {what:<18} n={} p50={:?} p99={:?} max={:?}",
        lags.len(),
        p(0.5),
        p(0.99),
        lags[lags.len() - 1]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let redis = port_arg(&args, 1, "redis");
    let a = port_arg(&args, 2, "sidecar A");
    let b = port_arg(&args, 3, "sidecar B");
    let n: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let keys: usize = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(100_000);

    let mut direct = Conn::connect(redis);
    let mut via_a = Conn::connect(a);
    let mut via_b = Conn::connect(b);
    assert_eq!(direct.cmd_str(&["SET", "lag", "warm"]), b"+OK\r\n");
    for _ in 0..2 {
        assert_eq!(via_b.cmd_str(&["GET", "lag"]), bulk(b"warm"));
    }
    print(
        "write via A",
        measure(&mut via_a, &mut via_b, "lag", "a", n),
    );
    print(
        "write direct",
        measure(&mut direct, &mut via_b, "lag", "d", n),
    );

    // The tracking table: cache `keys` keys through B, pipelined 1000 at a time.
    const BATCH: usize = 1000;
    for start in (0..keys).step_by(BATCH) {
        let end = (start + BATCH).min(keys);
        let mut mset = vec!["MSET".to_string()];
        for i in start..end {
            mset.push(format!("t:{i}"));
            mset.push("v".to_string());
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_eq!(direct.cmd_str(&args), b"+OK\r\n");
        let mut gets = Vec::new();
        for i in start..end {
            gets.extend_from_slice(&encode_command_str(&["GET", &format!("t:{i}")]));
        }
        via_b.send(&gets);
        via_b.read_replies(end - start);
    }
    let stats = direct.info(Some("stats"));
    let memory = direct.info(Some("memory"));
    println!(
        "upstream after caching {keys} keys through one sidecar: tracking_total_keys={} \
         tracking_total_items={} used_memory={}",
        info_u64(&stats, "tracking_total_keys"),
        info_u64(&stats, "tracking_total_items"),
        info_u64(&memory, "used_memory")
    );
}
