//! What every connection and task may touch (the services): configuration, L1, ACL marks, fill coalescing, the
//! upstream pools (with the hooks that flush L1 when the link is lost or comes back and forget
//! a dropped identity), counters, the command table and the upstream's bulk-length limit; and
//! the start-up loads that fill in what is learned from the upstream.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;

use crate::acl::Acl;
use crate::audit::Auditor;
use crate::cache::{Coalescer, L1Options, L1};
use crate::command::Tables;
use crate::config::Config;
use crate::control::{Control, ControlTarget};
use crate::metrics::Stats;
use crate::profiler::Profiler;
use crate::protocol::decode::{array_elements, text};
use crate::protocol::{command, Resp, REDIS_DEFAULT_MAX_BULK};
use crate::upstream::outbound::Outbound;
use crate::upstream::{Credentials, Lane, LinkEvent, Pool, Route, Target, Upstream};
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
    /// Server-assisted tracking: the redirect, whether L1 may serve, its counters.
    pub control: Arc<Control>,
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

impl Services {
    /// Builds the shared state; the L1 is flushed whenever the upstream link is lost (unless
    /// stale hits are allowed) and whenever it comes back, since the upstream's data may have
    /// changed meanwhile (its ACL rules too: what was learned about them is forgotten).
    pub fn new(config: Config) -> Arc<Services> {
        let stats = Arc::new(Stats::new());
        let l1 = Arc::new(L1::with_namespaces(
            L1Options {
                max_bytes: config.l1_max_bytes,
                ttl: config.l1_ttl,
                compress_min_bytes: config.l1_compress_min_bytes,
                cache_nil: config.l1_cache_nil,
                threads: config.threads,
            },
            &config.namespaces,
        ));
        let u = &config.upstream;
        let target = Target {
            address: u.host_port(),
            credentials: upstream_credentials(&config),
            connections: config.upstream_connections,
            timeout: config.upstream_timeout,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.upstream_idle_timeout,
            max_routes: config.max_upstream_routes,
            outbound: Outbound::new(),
        };
        let hook_l1 = l1.clone();
        let acl = Acl::new();
        let hook_acl = acl.clone();
        let keep_on_loss = config.serve_stale_when_down;
        let profiler = Profiler::new(&config);
        let warm = Warmer::new(config.warm.clone(), profiler.hot.clone());
        let hook_warm = warm.clone();
        let hook = Box::new(move |event| match event {
            LinkEvent::Lost if keep_on_loss => {}
            LinkEvent::Lost => {
                hook_l1.flush_all();
                hook_warm.flushed_for_loss();
            }
            LinkEvent::Up => {
                hook_l1.flush_all();
                hook_acl.forget();
                hook_warm.flushed_for_loss();
            }
        });
        // A dropped identity's id is never given out again: forget what was learned of it
        // and drop its entries (invalidations then no longer cover it).
        let (forget_acl, forget_l1) = (acl.clone(), l1.clone());
        let forget = Box::new(move |user| {
            forget_acl.drop_identity(user);
            forget_l1.forget_user(user);
        });
        let tracking = Control::new(config.tracking, &config.invalidation_channel, l1.clone());
        let db = config.upstream.db;
        (warm.peers).serve(profiler.hot.clone(), config.warm.peer_keys, db);
        tracking.on_hot_keys(warm.peers.clone());
        let loss_warm = warm.clone();
        tracking.on_loss_flush(Box::new(move || loss_warm.flushed_for_loss()));
        let audit = Auditor::new(l1.clone(), stats.clone(), config.audit_rate);
        let pinned_slots = Arc::new(tokio::sync::Semaphore::new(config.max_pinned));
        let upstream = Arc::new(Upstream::new(
            target,
            stats.clone(),
            hook,
            forget,
            tracking.clone(),
        ));
        let warming = Arc::new(crate::warm::Context {
            warm: warm.clone(),
            l1: l1.clone(),
            acl: acl.clone(),
            upstream: upstream.clone(),
            control: tracking.clone(),
            db,
            connect_timeout: config.connect_timeout,
        });
        Arc::new(Services {
            warming,
            upstream,
            control: tracking,
            config,
            l1,
            acl,
            coalescer: Coalescer::new(),
            audit,
            stats,
            profiler,
            warm,
            table: Tables::new(),
            upstream_max_bulk: AtomicU64::new(u64::MAX),
            pinned_slots,
            pinned_ids: Arc::default(),
            kills: Arc::default(),
        })
    }
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

/// Where the control connection goes: the upstream with the `--upstream` credentials.
pub(crate) fn control_target(shared: &Services) -> ControlTarget {
    let config = &shared.config;
    let u = &config.upstream;
    ControlTarget {
        address: u.host_port(),
        outbound: shared.upstream.outbound().clone(),
        credentials: upstream_credentials(config),
        connect_timeout: config.connect_timeout,
        heartbeat: config.invalidation_heartbeat,
        keep_when_down: config.serve_stale_when_down,
    }
}

/// Loads the upstream's command table over the sidecar's own route (the built-in table is
/// used meanwhile, and instead when the upstream refuses the sidecar: see
/// [`crate::command::load`]).
pub(crate) async fn load_table(shared: Arc<Services>) {
    let pool = shared.upstream.pool(Route {
        db: shared.config.upstream.db,
        resp: Resp::V2,
        user: 0,
    });
    if shared.table.load_own(&pool).await {
        learn_max_bulk(&shared, &pool).await;
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

/// The credentials in the `--upstream` URL, if it has a password.
fn upstream_credentials(config: &Config) -> Option<Credentials> {
    let u = &config.upstream;
    u.password.as_ref().map(|p| Credentials {
        user: u.username.as_ref().map(|n| Bytes::from(n.clone())),
        pass: Bytes::from(p.clone()),
    })
}
