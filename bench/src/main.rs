//! nearcache-bench: the load generator and latency relay of `make bench` (bench/scripts/bench.sh).
//!
//! redis-benchmark measures GET, SET and INCR; this tool makes what it cannot: a Zipf
//! GET/SET mix with latency percentiles, MGETs mixing hot and never-repeating keys, a busy
//! load beside thousands of idle connections, bulk fills and reads of a key range, a TCP
//! relay that adds a sub-millisecond delay (Redis on another host), and the report that turns
//! every run's raw figures into one table. The load runs on one thread (the machine's cores
//! are for the servers being measured) and allocates nothing per request.
//!
//! - [`resp`]: requests into reused buffers, replies walked in place.
//! - [`dist`]: xorshift and Zipf key choice.
//! - [`hist`]: the latency histogram.
//! - [`load`]: the closed loop of clients and the workloads (`get`, `mix`, `mget`).
//! - [`bulk`]: pipelined fills and reads of a key range.
//! - [`idle`]: idle connections and PING round trips.
//! - [`sequence`]: sequential Zipf GETs, the first requests of a new sidecar.
//! - [`relay`]: the delaying TCP relay.
//! - [`report`]: medians, ratios, the table and the targets.

#![forbid(unsafe_code)]

mod bulk;
mod dist;
mod hist;
mod idle;
mod load;
mod relay;
mod report;
mod resp;
mod sequence;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::dist::Zipf;
use crate::load::{Get, Mget, Mix, Plan, Workload};

/// Load generator, latency relay and report of nearcache's `make bench`.
///
/// Load subcommands print one line of `name=value` pairs: ops_per_sec, p50_ms, p99_ms (of a
/// batch at -P > 1) and requests. Keys are named as redis-benchmark names those of `-r`:
/// the prefix and a 12-digit number (`key:000000001234`). A server's error reply, or a nil
/// where the key should exist, fails the run with the server's words and exit code 1.
#[derive(Parser, Debug)]
#[command(name = "nearcache-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// SET every key of a range once (pipelined, over a few connections): prefix + start
    /// .. prefix + start+count-1, each to a value of --value-size bytes
    Fill(FillArgs),
    /// GET every key of a range once (pipelined, over a few connections); fails on a nil
    Read(RangeArgs),
    /// GET of uniformly drawn keys from prefix0 .. prefix(keys-1)
    Get(GetArgs),
    /// GET/SET mix with Zipf-distributed keys: rank k is key number k, SETs write
    /// --value-size bytes
    Mix(MixArgs),
    /// MGET of --hot keys from a small key space and --cold keys from a huge one that almost
    /// never repeats (cold keys do not exist upstream: they read as nil, and miss any cache)
    Mget(MgetArgs),
    /// Holds --idle connections, each having sent one PING and got PONG, while the GET load
    /// of `get` runs beside them
    Idle(IdleArgs),
    /// --count GETs of Zipf-chosen keys, one at a time on one connection (the first requests
    /// a new sidecar sees; every key must exist); prints `requests=N seconds=S`
    ZipfGets(ZipfGetsArgs),
    /// Round-trip time of sequential PINGs on one connection: prints p50_ms and p99_ms
    Ping(PingArgs),
    /// TCP relay adding --delay-us to every byte in each direction, order kept per
    /// connection (Redis on another host); prints `relay listening on ADDR`, runs until killed
    Relay(RelayArgs),
    /// Reads the raw CSV of a `make bench` run, prints the table and the targets with
    /// PASS/FAIL, and writes them as markdown
    Report(ReportArgs),
}

/// Where and how hard: shared by the load subcommands.
#[derive(Args, Debug)]
struct LoadArgs {
    /// Server address, host:port
    #[arg(long)]
    addr: String,
    /// Concurrent connections
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests per batch on each connection
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds measured
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds run before measuring
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
}

impl LoadArgs {
    fn plan(&self) -> Plan {
        Plan {
            addr: self.addr.clone(),
            clients: self.clients.max(1),
            pipeline: self.pipeline.max(1),
            warmup: Duration::from_secs_f64(self.warmup),
            measure: Duration::from_secs_f64(self.seconds),
        }
    }
}

#[derive(Args, Debug)]
struct RangeArgs {
    /// Server address, host:port
    #[arg(long)]
    addr: String,
    /// Key name prefix
    #[arg(long, default_value = "key:")]
    prefix: String,
    /// First key number
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Keys
    #[arg(long)]
    count: u64,
    /// Connections
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Requests per batch
    #[arg(long, default_value_t = 128)]
    pipeline: u64,
}

impl RangeArgs {
    fn range(&self) -> bulk::Range {
        bulk::Range {
            addr: self.addr.clone(),
            prefix: self.prefix.clone().into_bytes(),
            start: self.start,
            count: self.count,
            connections: self.connections,
            pipeline: self.pipeline.max(1),
        }
    }
}

#[derive(Args, Debug)]
struct FillArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// Bytes of every value
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Key name prefix
    #[arg(long, default_value = "key:")]
    prefix: String,
    /// Key space: keys 0 .. keys-1, which must exist
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
}

impl GetArgs {
    fn workload(&self) -> Rc<dyn Workload> {
        Rc::new(Get {
            prefix: self.prefix.clone().into_bytes(),
            keys: self.keys.max(1),
        })
    }
}

#[derive(Args, Debug)]
struct MixArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Key name prefix
    #[arg(long, default_value = "mix:")]
    prefix: String,
    /// Key space: keys 0 .. keys-1, which must exist
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes of every SET's value
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Percent of requests that are SETs
    #[arg(long, default_value_t = 5.0)]
    set_percent: f64,
    /// Zipf exponent s
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
}

#[derive(Args, Debug)]
struct MgetArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Key name prefix
    #[arg(long, default_value = "key:")]
    prefix: String,
    /// Keys per MGET from the hot key space
    #[arg(long, default_value_t = 10)]
    hot: usize,
    /// Hot key space: keys 0 .. hot-keys-1
    #[arg(long, default_value_t = 10_000)]
    hot_keys: u64,
    /// Keys per MGET from the cold key space
    #[arg(long, default_value_t = 0)]
    cold: usize,
    /// Cold key space: keys 0 .. cold-keys-1
    #[arg(long, default_value_t = 1_000_000_000_000)]
    cold_keys: u64,
}

#[derive(Args, Debug)]
struct IdleArgs {
    #[command(flatten)]
    get: GetArgs,
    /// Idle connections held while the load runs
    #[arg(long, default_value_t = 2000)]
    idle: usize,
}

#[derive(Args, Debug)]
struct ZipfGetsArgs {
    /// Server address, host:port
    #[arg(long)]
    addr: String,
    /// Key name prefix
    #[arg(long, default_value = "mix:")]
    prefix: String,
    /// Key space: keys 0 .. keys-1, which must exist
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Zipf exponent s
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// GETs sent
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Seed of the key choice: the same seed, the same sequence
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug)]
struct PingArgs {
    /// Server address, host:port
    #[arg(long)]
    addr: String,
    /// PINGs timed
    #[arg(long, default_value_t = 1000)]
    count: usize,
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// Listen address; port 0 picks a free one
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Where to relay to, host:port
    #[arg(long)]
    upstream: String,
    /// Delay added in each direction, microseconds
    #[arg(long, default_value_t = 500)]
    delay_us: u64,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The raw CSV: workload,target,round,metric,value
    #[arg(long)]
    raw: PathBuf,
    /// Where to write the markdown report
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nearcache-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
fn run(command: Command) -> Result<()> {
    match command {
        Command::Fill(a) => {
            let value = vec![b'x'; a.value_size];
            let secs = block_on(bulk::touch_all(&a.range.range(), bulk::Op::Set(&value)))?;
            println!("filled {} keys in {secs:.2} s", a.range.count);
        }
        Command::Read(a) => {
            let secs = block_on(bulk::touch_all(&a.range(), bulk::Op::Get))?;
            println!("read {} keys in {secs:.2} s", a.count);
        }
        Command::Get(a) => measure(&a.load, a.workload())?,
        Command::Mix(a) => {
            let workload = Rc::new(Mix {
                prefix: a.prefix.into_bytes(),
                zipf: Zipf::new(a.keys.max(1), a.zipf),
                set_fraction: a.set_percent / 100.0,
                value: vec![b'x'; a.value_size],
            });
            measure(&a.load, workload)?;
        }
        Command::Mget(a) => {
            let workload = Rc::new(Mget {
                prefix: a.prefix.into_bytes(),
                hot: a.hot,
                hot_keys: a.hot_keys.max(1),
                cold: a.cold,
                cold_keys: a.cold_keys.max(1),
            });
            measure(&a.load, workload)?;
        }
        Command::Idle(a) => {
            let plan = a.get.load.plan();
            let workload = a.get.workload();
            let summary = block_on(async move {
                let held = idle::open_idle(&plan.addr, a.idle).await?;
                let outcome = load::run(&plan, workload).await?;
                drop(held);
                Ok::<_, anyhow::Error>(outcome.summary(plan.measure))
            })?;
            println!("{summary}");
        }
        Command::ZipfGets(a) => {
            let zipf = Zipf::new(a.keys.max(1), a.zipf);
            let secs = block_on(sequence::zipf_gets(
                &a.addr,
                a.prefix.as_bytes(),
                &zipf,
                a.count,
                a.seed,
            ))?;
            println!("requests={} seconds={secs:.3}", a.count);
        }
        Command::Ping(a) => {
            let rtt = block_on(idle::round_trips(&a.addr, a.count.max(1)))?;
            println!(
                "p50_ms={:.3} p99_ms={:.3}",
                idle::ms(rtt.quantile(0.5)),
                idle::ms(rtt.quantile(0.99))
            );
        }
        Command::Relay(a) => relay::run(&a.listen, &a.upstream, Duration::from_micros(a.delay_us))?,
        Command::Report(a) => {
            let csv = std::fs::read_to_string(&a.raw)
                .with_context(|| format!("read {}", a.raw.display()))?;
            let rendered = report::render(&report::Figures::parse(&csv)?);
            std::fs::write(&a.out, &rendered.markdown)
                .with_context(|| format!("write {}", a.out.display()))?;
            print!("{}", rendered.text);
        }
    }
    Ok(())
}

/// Runs a load and prints its summary line.
fn measure(args: &LoadArgs, workload: Rc<dyn Workload>) -> Result<()> {
    let plan = args.plan();
    let outcome = block_on(load::run(&plan, workload))?;
    println!("{}", outcome.summary(plan.measure));
    Ok(())
}

/// Runs `f` on a current-thread runtime: the load generator takes one core.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
        .block_on(f)
}
