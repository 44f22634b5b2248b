//! What every connection and task may touch (the services): configuration, L1, ACL marks, fill coalescing, the
//! upstream pools (with the hooks that flush L1 when the link is lost or comes back and forget
//! a dropped identity), counters, the command table and the upstream's bulk-length limit; and
//! the start-up loads that fill in what is learned from the upstream.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::acl::Acl;
use crate::audit::Auditor;
use crate::cache::{Coalescer, L1};
use crate::command::Tables;
use crate::config::Config;
use crate::control::Control;
use crate::metrics::Stats;
use crate::profiler::Profiler;
use crate::protocol::decode::{array_elements, text};
use crate::protocol::{command, REDIS_DEFAULT_MAX_BULK};
use crate::upstream::{Lane, Pool, Upstream};
use crate::warm::Warmer;

/// State every connection shares.
pub struct Services {
    /// The validated configuration.
    pub config: Config,
    /// The L1 cache.
    pub l1: Arc<L1>,
    /// What each identity may be answered from L1 by.
    pub acl: Arc<Acl>,
    /// In-flight fetches, for coalescing.
    pub coalescer: Arc<Coalescer>,
    /// Upstream pools.
    pub upstream: Arc<Upstream>,
    /// Sentinel discovery of a `redis+sentinel://` upstream (none for a fixed one).
    pub sentinel: Option<Arc<crate::upstream::sentinel::Sentinel>>,
    /// Server-assisted tracking: the redirect, whether L1 may serve, its counters.
    pub control: Arc<Control>,
    /// The nodes of a `redis+cluster://` upstream, requests routed among them by slot
    /// (`upstream` and `control` are then the first seed's, for keyless commands).
    pub cluster: Option<Arc<crate::nodes::Nodes>>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The slow log, the hot-key sketch and the N+1 counter.
    pub profiler: Profiler,
    /// Warming: its state, its progress, the hot keys to re-warm after a link-loss flush.
    pub warm: Arc<Warmer>,
    /// What warming reads and fills (for `NEARCACHE WARM` and the start-up warming).
    pub warming: Arc<crate::warm::Context>,
    /// Re-reads sampled L1 hits from the upstream and compares them (`--audit-rate`).
    pub audit: Arc<Auditor>,
    /// The command table: the upstream's once loaded, the built-in one until then.
    pub table: Tables,
    /// The upstream's `proto-max-bulk-len` (`u64::MAX` until learned): a longer bulk string
    /// is refused at the client instead of forwarded, since the upstream would answer it by
    /// closing a connection other clients share. Read once per client read.
    pub upstream_max_bulk: AtomicU64,
    /// Upstream connections that may be pinned to a client at once (`--max-pinned`): each
    /// pinned connection, kept ones included, holds a permit.
    pub pinned_slots: Arc<tokio::sync::Semaphore>,
    /// The upstream id of each client's pinned connection (see [`crate::upstream::PinnedIds`]).
    pub pinned_ids: Arc<crate::upstream::PinnedIds>,
    /// How each client connection is told to close (`CLIENT KILL ID`).
    pub kills: Arc<Kills>,
}

/// Each client connection's close signal, by its id (`CLIENT ID` through the sidecar).
#[derive(Debug, Default)]
pub struct Kills(parking_lot::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Notify>>>);

impl Kills {
    /// Registers client `id`; it is closed when its signal fires, and forgotten when the
    /// returned guard is dropped.
    pub fn register(self: &Arc<Self>, id: u64) -> KillGuard {
        let signal = Arc::new(tokio::sync::Notify::new());
        self.lock().insert(id, signal.clone());
        KillGuard {
            kills: self.clone(),
            id,
            signal,
        }
    }

    /// Tells client `id` to close; false when there is no such client.
    pub fn kill(&self, id: u64) -> bool {
        self.lock().get(&id).map(|s| s.notify_one()).is_some()
    }

    fn lock(
        &self,
    ) -> parking_lot::MutexGuard<'_, std::collections::HashMap<u64, Arc<tokio::sync::Notify>>> {
        self.0.lock()
    }
}

/// A registered client's close signal (see [`Kills::register`]).
#[derive(Debug)]
pub struct KillGuard {
    kills: Arc<Kills>,
    id: u64,
    /// Fires when the client is to be closed.
    pub signal: Arc<tokio::sync::Notify>,
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kills.lock().remove(&self.id);
    }
}

/// Learns the upstream's `proto-max-bulk-len` with `CONFIG GET` (over the sidecar's own
/// route, or over the first authenticated client's when the upstream refuses the sidecar);
/// when CONFIG is refused (an ACL, a managed Redis) or unreadable, Redis's default applies.
pub(crate) async fn learn_max_bulk(shared: &Services, pool: &Pool) {
    let raw = command(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]);
    let frames = match pool.send(&Lane::default(), raw, 1, None).await {
        Ok(pending) => pending.wait().await.ok(),
        Err(_) => None,
    };
    let value = frames
        .as_ref()
        .and_then(|f| array_elements(f.first()?))
        .and_then(|pair| {
            let (digits, _) = text(pair.get(1)?)?;
            std::str::from_utf8(digits).ok()?.parse::<u64>().ok()
        })
        .unwrap_or(REDIS_DEFAULT_MAX_BULK);
    shared.upstream_max_bulk.store(value, Relaxed);
}
