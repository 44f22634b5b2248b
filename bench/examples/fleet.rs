//! Fleet cost: what hundreds of sidecars on one Redis cost that Redis (tracking memory, CPU,
//! invalidation fan-out, connections) and how long the farthest sidecar serves an old value.
//!
//! Run by bench/scripts/fleet.sh, which starts the redis-server and the sidecars:
//! `fleet --redis <port> --sidecars <file of ports, one a line> --mode <default|off|bcast>`.
//!
//! 1. Seeds `--keys` keys directly, then every sidecar reads every key (MGETs of 100), so
//!    every L1 and the upstream's tracking table fill.
//! 2. For `--seconds`: a reader spreads `--reads-per-sec` MGETs of `--mget` random keys over
//!    every sidecar in turn; a writer SETs `--writes-per-sec` random keys, every other one
//!    directly on Redis and the rest through the first `--write-sidecars` sidecars; and the
//!    lag probe writes one key (directly on Redis, then through the first sidecar) and polls
//!    GET through the farthest sidecar (the last started: Redis sends tracking invalidations
//!    in client-id order, so it hears last) until it serves the new value.
//! 3. Prints one markdown row of the table (stdout) and the raw figures (stderr).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use proto_tests::{bulk, encode_command_str, info_field, info_u64, Conn, Rng};

/// Bound on one new value reaching the farthest sidecar; beyond it the sample is counted as
/// not propagated (with `--tracking off`, a direct write never is: only the L1 TTL ends it).
const LAG_BOUND: Duration = Duration::from_secs(2);
/// Bound on every sidecar reporting its invalidation link up before the fill.
const READY_BOUND: Duration = Duration::from_secs(60);
/// Keys per MGET of the fill.
const FILL_BATCH: usize = 100;
/// Pause between two lag samples.
const LAG_PAUSE: Duration = Duration::from_millis(20);

/// Fleet cost on one Redis (see the module docs).
#[derive(Parser, Debug)]
struct Args {
    /// Port of the redis-server
    #[arg(long)]
    redis: u16,
    /// File of the sidecars' ports, one a line, in start order
    #[arg(long)]
    sidecars: String,
    /// The sidecars' --tracking mode (a label; `off` skips the direct-write lag)
    #[arg(long, default_value = "default")]
    mode: String,
    /// tracking-table-max-keys set on the redis-server (0: unlimited), a label for the table
    #[arg(long, default_value_t = 0)]
    table_max_keys: u64,
    /// Shared key space: fleet:0 .. fleet:(keys-1)
    #[arg(long, default_value_t = 5000)]
    keys: usize,
    /// Bytes of every value
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Seconds of steady load
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// MGET requests per second, spread over every sidecar
    #[arg(long, default_value_t = 1000)]
    reads_per_sec: u64,
    /// Keys per MGET of the steady load
    #[arg(long, default_value_t = 10)]
    mget: usize,
    /// SETs per second (half direct, half through sidecars)
    #[arg(long, default_value_t = 100)]
    writes_per_sec: u64,
    /// How many sidecars (the first ones) the writes through sidecars go through
    #[arg(long, default_value_t = 10)]
    write_sidecars: usize,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn key(i: usize) -> String {
    format!("fleet:{i}")
}

/// What Redis says about itself.
#[derive(Debug, Clone, Copy, Default)]
struct RedisFigures {
    used_memory: u64,
    tracking_keys: u64,
    tracking_items: u64,
    clients: u64,
    cpu_secs: f64,
}

fn redis_figures(direct: &mut Conn) -> RedisFigures {
    let text = direct.info(None);
    let cpu = |name: &str| -> f64 {
        info_field(&text, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("redis INFO has no {name}"))
    };
    RedisFigures {
        used_memory: info_u64(&text, "used_memory"),
        tracking_keys: info_u64(&text, "tracking_total_keys"),
        tracking_items: info_u64(&text, "tracking_total_items"),
        clients: info_u64(&text, "connected_clients"),
        cpu_secs: cpu("used_cpu_sys") + cpu("used_cpu_user"),
    }
}

/// The sum of every sidecar's counters (`INFO nearcache`).
#[derive(Debug, Clone, Copy, Default)]
struct FleetFigures {
    hits: u64,
    misses: u64,
    /// Tracking invalidation messages plus bus key messages received.
    messages: u64,
    evicted_invalidated: u64,
    upstream_connections: u64,
    upstream_reconnects: u64,
}

fn fleet_figures(ports: &[u16]) -> FleetFigures {
    let mut f = FleetFigures::default();
    for &port in ports {
        let text = Conn::connect(addr(port)).info(Some("nearcache"));
        f.hits += info_u64(&text, "l1_hits");
        f.misses += info_u64(&text, "l1_misses");
        f.messages +=
            info_u64(&text, "invalidation_messages") + info_u64(&text, "bus_received_key_messages");
        f.evicted_invalidated += info_u64(&text, "l1_evicted_invalidated");
        f.upstream_connections += info_u64(&text, "upstream_connections");
        f.upstream_reconnects += info_u64(&text, "upstream_reconnects");
    }
    f
}

/// Waits until every sidecar's invalidation link is up (L1 is bypassed until then).
fn wait_ready(ports: &[u16]) {
    let start = Instant::now();
    for &port in ports {
        loop {
            let text = Conn::connect(addr(port)).info(Some("nearcache"));
            if info_field(&text, "invalidation_link").as_deref() == Some("up") {
                break;
            }
            assert!(
                start.elapsed() < READY_BOUND,
                "sidecar on port {port}: invalidation link not up after {READY_BOUND:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every sidecar reads every key once, pipelined MGETs; returns the reader connections.
fn fill(ports: &[u16], keys: usize) -> Vec<Conn> {
    let mut conns: Vec<Conn> = ports.iter().map(|&p| Conn::connect(addr(p))).collect();
    let names: Vec<String> = (0..keys).map(key).collect();
    let mut requests = Vec::new();
    for chunk in names.chunks(FILL_BATCH) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        requests.extend_from_slice(&encode_command_str(&args));
    }
    let n = names.chunks(FILL_BATCH).count();
    for conn in &mut conns {
        conn.send(&requests);
        conn.read_replies(n);
    }
    conns
}

/// Runs `step` `per_sec` times a second until `until`, in slices of 10 ms (fewer when the
/// machine cannot keep up: the steps that fall behind are dropped at `until`).
fn paced(per_sec: u64, until: Instant, mut step: impl FnMut()) -> u64 {
    let start = Instant::now();
    let mut done = 0u64;
    while Instant::now() < until {
        let due = (start.elapsed().as_secs_f64() * per_sec as f64) as u64;
        while done < due && Instant::now() < until {
            step();
            done += 1;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done
}

/// Writes a new value of `lag_key` through `writer`, then polls GET through `reader` until
/// it serves it: the time from the acknowledgment, or None past [`LAG_BOUND`].
fn lag_sample(writer: &mut Conn, reader: &mut Conn, value: &str) -> Option<Duration> {
    assert_eq!(writer.cmd_str(&["SET", "fleet:lag", value]), b"+OK\r\n");
    let acked = Instant::now();
    let want = bulk(value.as_bytes());
    while reader.cmd_str(&["GET", "fleet:lag"]) != want {
        if acked.elapsed() > LAG_BOUND {
            return None;
        }
    }
    let lag = acked.elapsed();
    // Cached again before the next write.
    reader.cmd_str(&["GET", "fleet:lag"]);
    Some(lag)
}

/// Lag samples of one kind: the lags seen and how many never arrived.
#[derive(Default)]
struct Lags {
    seen: Vec<Duration>,
    lost: usize,
}

impl Lags {
    fn add(&mut self, lag: Option<Duration>) {
        match lag {
            Some(l) => self.seen.push(l),
            None => self.lost += 1,
        }
    }

    /// `p99 (p50), n=samples` in ms, with the count of values that never arrived.
    fn show(&mut self) -> String {
        if self.seen.is_empty() && self.lost == 0 {
            return "n/a".to_string();
        }
        if self.seen.is_empty() {
            return format!("never ({} samples)", self.lost);
        }
        self.seen.sort();
        let p = |q: f64| self.seen[((self.seen.len() - 1) as f64 * q) as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let n = self.seen.len();
        let mut s = format!("{:.2} ({:.2}), n={n}", ms(p(0.99)), ms(p(0.5)));
        if self.lost > 0 {
            s.push_str(&format!(", {} never", self.lost));
        }
        s
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let args = Args::parse();
    let ports: Vec<u16> = std::fs::read_to_string(&args.sidecars)
        .unwrap_or_else(|e| panic!("{}: {e}", args.sidecars))
        .split_whitespace()
        .map(|p| p.parse().expect("a port a line"))
        .collect();
    assert!(!ports.is_empty(), "{}: no sidecar ports", args.sidecars);
    let keys = args.keys.max(1);
    let mut direct = Conn::connect(addr(args.redis));

    // Seed, then fill every L1 (and the tracking table).
    let value = "v".repeat(args.value_size);
    let names: Vec<String> = (0..keys).map(key).collect();
    for chunk in names.chunks(1000) {
        let mut mset = vec!["MSET"];
        for k in chunk {
            mset.extend([k.as_str(), value.as_str()]);
        }
        assert_eq!(direct.cmd_str(&mset), b"+OK\r\n");
    }
    assert_eq!(direct.cmd_str(&["SET", "fleet:lag", "0"]), b"+OK\r\n");
    wait_ready(&ports);
    let seeded = redis_figures(&mut direct);
    let fill_start = Instant::now();
    let mut readers = fill(&ports, keys);
    eprintln!(
        "fleet: {} sidecars read {keys} keys each in {:.1} s",
        ports.len(),
        fill_start.elapsed().as_secs_f64()
    );
    let filled = redis_figures(&mut direct);
    let fleet_before = fleet_figures(&ports);

    // Steady load: reader and writer threads, the lag probe here.
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds);
    let (mget, reads_per_sec) = (args.mget.max(1), args.reads_per_sec);
    let reader = thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = 0;
        paced(reads_per_sec, until, || {
            let mut mget_args = vec!["MGET".to_string()];
            mget_args.extend((0..mget).map(|_| key(rng.below(keys))));
            let argv: Vec<&str> = mget_args.iter().map(String::as_str).collect();
            readers[next].cmd_str(&argv);
            next = (next + 1) % readers.len();
        })
    });
    let write_ports: Vec<u16> = ports[..args.write_sidecars.clamp(1, ports.len())].to_vec();
    let (writes_per_sec, redis_port) = (args.writes_per_sec, args.redis);
    let writer = thread::spawn(move || {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut direct = Conn::connect(addr(redis_port));
        let mut via: Vec<Conn> = write_ports
            .iter()
            .map(|&p| Conn::connect(addr(p)))
            .collect();
        let mut n = 0usize;
        paced(writes_per_sec, until, || {
            let k = key(rng.below(keys));
            let conn = if n.is_multiple_of(2) {
                &mut direct
            } else {
                let i = (n / 2) % via.len();
                &mut via[i]
            };
            assert_eq!(conn.cmd_str(&["SET", &k, "w"]), b"+OK\r\n");
            n += 1;
        })
    });
    let farthest = *ports.last().expect("ports");
    let mut far = Conn::connect(addr(farthest));
    let mut via_first = Conn::connect(addr(ports[0]));
    far.cmd_str(&["GET", "fleet:lag"]);
    let (mut lag_direct, mut lag_via) = (Lags::default(), Lags::default());
    let mut lag_writes = 0u64;
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        if args.mode != "off" {
            lag_direct.add(lag_sample(&mut direct, &mut far, &format!("d{i}")));
            lag_writes += 1;
        }
        lag_via.add(lag_sample(&mut via_first, &mut far, &format!("s{i}")));
        lag_writes += 1;
        thread::sleep(LAG_PAUSE);
    }
    let reads = reader.join().expect("reader thread");
    let writes = writer.join().expect("writer thread") + lag_writes;
    let elapsed = start.elapsed().as_secs_f64();
    let after = redis_figures(&mut direct);
    let fleet_after = fleet_figures(&ports);

    let hits = fleet_after.hits - fleet_before.hits;
    let misses = fleet_after.misses - fleet_before.misses;
    let messages = fleet_after.messages - fleet_before.messages;
    let evicted = fleet_after.evicted_invalidated - fleet_before.evicted_invalidated;
    let cpu = (after.cpu_secs - filled.cpu_secs) / elapsed;
    // This program's own connections to Redis: `direct` and the writer's (closed by now).
    let upstream_conns = after.clients.saturating_sub(1);
    let hit_ratio = hits as f64 / (hits + misses).max(1) as f64;
    let table_max = match args.table_max_keys {
        0 => "unlimited".to_string(),
        n => n.to_string(),
    };
    eprintln!(
        "fleet: raw {seeded:?} -> filled {filled:?} -> after {after:?}; reads={reads} \
         writes={writes} over {elapsed:.1} s; sidecars: hits={hits} misses={misses} \
         messages={messages} evicted_invalidated={evicted} upstream_connections={} \
         upstream_reconnects={}",
        fleet_after.upstream_connections, fleet_after.upstream_reconnects
    );
    println!(
        "| {} | {} | {} | {} → {} → {} | {} / {} | {:.3} | {:.0} / {:.0} | {:.1} | {:.3} | {} | {} | {} | {} ({}) |",
        ports.len(),
        args.mode,
        table_max,
        mib(seeded.used_memory),
        mib(filled.used_memory),
        mib(after.used_memory),
        after.tracking_keys,
        after.tracking_items,
        cpu,
        reads as f64 / elapsed,
        writes as f64 / elapsed,
        messages as f64 / writes.max(1) as f64,
        hit_ratio,
        evicted,
        lag_direct.show(),
        lag_via.show(),
        upstream_conns,
        fleet_after.upstream_connections,
    );
}
