//! A TCP relay that delays every byte by a fixed time in each direction, to stand in for a
//! Redis on another host. Plain threads, not tokio: tokio's timers tick in milliseconds and
//! the delay is a fraction of one. Per connection and direction, a reader thread stamps each
//! chunk with its due time and a writer thread sends the chunks in order when due, so order
//! is kept and the delay does not limit throughput. How late sleeps wake is learned and
//! taken off, so the delay holds on average without spinning a core. A closed side is passed
//! on as a half-close, as a network would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Listens on `listen` and relays every connection to `upstream` with `delay` each way.
/// Prints `relay listening on ADDR` once ready; runs until killed.
pub fn run(listen: &str, upstream: &str, delay: Duration) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listen on {listen}"))?;
    println!("relay listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for accepted in listener.incoming() {
        let client = match accepted {
            Ok(client) => client,
            Err(e) => {
                eprintln!("relay: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let upstream = upstream.to_owned();
        thread::spawn(move || {
            if let Err(e) = splice(client, &upstream, delay) {
                eprintln!("relay: {e:#}");
            }
        });
    }
    Ok(())
}

/// Connects `client` to `upstream` through two delayed directions.
fn splice(client: TcpStream, upstream: &str, delay: Duration) -> Result<()> {
    let server = TcpStream::connect(upstream).with_context(|| format!("connect to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    direction(client.try_clone()?, server.try_clone()?, delay)?;
    direction(server, client, delay)?;
    Ok(())
}

/// Starts the reader and writer threads that carry `from`'s bytes to `to`, `delay` late.
fn direction(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> Result<()> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let source = from.try_clone()?;
    thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        })?;
    thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            // How late a sleep wakes (timer slack, scheduling), learned as it goes and
            // taken off the next sleeps, so chunks leave on time on average without spinning.
            let mut late = Duration::from_micros(50);
            for (due, chunk) in rx {
                let wake = due.checked_sub(late).unwrap_or(due);
                let now = Instant::now();
                if wake > now {
                    thread::sleep(wake - now);
                    let overslept = Instant::now().saturating_duration_since(wake);
                    late = (late * 7 + overslept.min(delay / 2)) / 8;
                }
                if to.write_all(&chunk).is_err() {
                    // The receiver is gone: stop reading what it would have been sent.
                    let _ = source.shutdown(Shutdown::Both);
                    return;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    Ok(())
}
