//! The accept loop: builds the shared state, accepts clients up to `--max-clients`, loads
//! the upstream's command table, and drains connections on shutdown.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::cache::{Coalescer, L1Options, L1};
use crate::command::CommandTable;
use crate::config::Config;
use crate::connection::Connection;
use crate::metrics::Stats;
use crate::protocol::{command, Resp};
use crate::upstream::{Credentials, LinkEvent, Route, Target, Upstream};

/// How often the command table load is retried while the upstream cannot answer it.
const TABLE_RETRY: Duration = Duration::from_millis(500);

/// State every connection shares.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// The L1 cache.
    pub l1: Arc<L1>,
    /// In-flight fetches, for coalescing.
    pub fills: Arc<Coalescer>,
    /// Upstream pools.
    pub upstream: Upstream,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The upstream's command table, once loaded.
    pub table: OnceLock<CommandTable>,
}

impl Shared {
    /// Builds the shared state; the L1 is flushed whenever the upstream link is lost (unless
    /// stale hits are allowed) and whenever it comes back, since the upstream's data may have
    /// changed meanwhile.
    pub fn new(config: Config) -> Arc<Shared> {
        let stats = Arc::new(Stats::new());
        let l1 = Arc::new(L1::new(L1Options {
            max_bytes: config.l1_max_bytes,
            ttl: config.l1_ttl,
            compress_min_bytes: config.l1_compress_min_bytes,
            cache_nil: config.l1_cache_nil,
            threads: config.threads,
        }));
        let u = &config.upstream;
        let target = Target {
            address: u.host_port(),
            credentials: u.password.as_ref().map(|p| Credentials {
                user: u.username.as_ref().map(|n| Bytes::from(n.clone())),
                pass: Bytes::from(p.clone()),
            }),
            connections: config.upstream_connections,
            timeout: config.upstream_timeout,
            connect_timeout: config.connect_timeout,
        };
        let hook_l1 = l1.clone();
        let keep_on_loss = config.serve_stale_when_down;
        let hook = Box::new(move |event| match event {
            LinkEvent::Lost if keep_on_loss => {}
            LinkEvent::Lost | LinkEvent::Up => hook_l1.flush_all(),
        });
        Arc::new(Shared {
            upstream: Upstream::new(target, stats.clone(), hook),
            config,
            l1,
            fills: Coalescer::new(),
            stats,
            table: OnceLock::new(),
        })
    }
}

/// Serves clients on `listener` until `shutdown` turns true, then gives connections the
/// grace period to finish their batch.
pub async fn run(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(load_table(shared.clone()));
    let slots = Arc::new(Semaphore::new(shared.config.max_clients));
    let mut connections = JoinSet::new();
    let ids = AtomicU64::new(0);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((mut stream, _)) = accepted else {
            continue; // e.g. EMFILE: keep serving the clients we have
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Relaxed);
        let conn = Connection::new(shared.clone(), stream, id);
        let stats = shared.stats.clone();
        let rx = shutdown.clone();
        connections.spawn(async move {
            stats.connected_clients.fetch_add(1, Relaxed);
            stats.total_connections.fetch_add(1, Relaxed);
            conn.run(rx).await;
            stats.connected_clients.fetch_sub(1, Relaxed);
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = shared.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Loads the command table from the upstream's `COMMAND`, retrying until it answers.
async fn load_table(shared: Arc<Shared>) {
    let pool = shared.upstream.pool(Route {
        db: shared.config.upstream.db,
        resp: Resp::V2,
        user: 0,
    });
    loop {
        let raw = command(&[b"COMMAND"]);
        if let Ok(pending) = pool.send(0, raw, 1, None).await {
            if let Ok(frames) = pending.wait().await {
                match CommandTable::parse(&frames[0]) {
                    Some(t) if !t.is_empty() => {
                        let _ = shared.table.set(t);
                    }
                    _ => eprintln!(
                        "nearcache: upstream COMMAND unusable; every write evicts the whole L1"
                    ),
                }
                return;
            }
        }
        tokio::time::sleep(TABLE_RETRY).await;
    }
}
