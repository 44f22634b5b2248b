//! Building the services from a config: every subsystem, and the reactions between them
//! (the link-loss and link-up hooks that flush L1 and re-warm, the forgetting of a dropped
//! identity, warming registered for the bus's hot-key messages).

use std::sync::atomic::AtomicU64;
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
use crate::protocol::Resp;
use crate::services::{learn_max_bulk, Services};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::outbound::Outbound;
use crate::upstream::sentinel::{Sentinel, SentinelOptions};
use crate::upstream::tls::{Tls, TlsOptions};
use crate::upstream::{CredentialSource, LinkEvent, Route, Target, Upstream};
use crate::warm::Warmer;

/// Builds the services. With tracking on, a lost upstream connection ends what it filled
/// (its fence, see [`crate::cache::fences`]: Redis no longer tracks the keys read through
/// it) and a lost upstream takes the control connection with it, which flushes L1; with
/// tracking off, L1 is flushed whenever the upstream link is lost (unless stale hits are
/// allowed) and whenever it comes back, since the upstream's data may have changed
/// meanwhile. What was learned of the upstream's ACL rules is forgotten when the control
/// connection is lost (tracking on) or the upstream link comes back (tracking off).
/// `credentials` are the sidecar's own (see [`credentials`]), `sentinel_credentials` the
/// sentinels' (see [`sentinel_credentials`]).
pub fn services(
    config: Config,
    tls: Option<Tls>,
    credentials: CredentialSource,
    sentinel_credentials: CredentialSource,
) -> Arc<Services> {
    let stats = Arc::new(Stats::new());
    let l1 = Arc::new(L1::with_namespaces(
        L1Options {
            max_bytes: config.l1_max_bytes,
            ttl: config.l1_ttl,
            compress_min_bytes: config.l1_compress_min_bytes,
            cache_nil: config.l1_cache_nil,
            admit_second_miss: config.l1_admit_second_miss,
        },
        &config.namespaces,
    ));
    let u = &config.upstream;
    let endpoint = match &u.sentinel {
        Some(_) => Endpoint::unknown(),
        None => Endpoint::fixed(u.host_port()),
    };
    let outbound = Outbound::with_tls(tls);
    let sentinel = u.sentinel.as_ref().map(|s| {
        let options = SentinelOptions {
            addresses: s.addresses.clone(),
            master: s.master.clone(),
            sentinel_credentials: sentinel_credentials.clone(),
            data_credentials: credentials.clone(),
            connect_timeout: config.connect_timeout,
            recheck: config.sentinel_recheck,
        };
        Sentinel::new(options, endpoint.clone(), outbound.clone())
    });
    let target = Target {
        endpoint,
        credentials,
        connections: config.upstream_connections,
        timeout: config.upstream_timeout,
        connect_timeout: config.connect_timeout,
        idle_timeout: config.upstream_idle_timeout,
        max_routes: config.max_upstream_routes,
        outbound,
        keep_fills_while_down: config.serve_stale_when_down,
    };
    let target_template = target.clone();
    let hook_l1 = l1.clone();
    let acl = Acl::new();
    let hook_acl = acl.clone();
    let keep_on_loss = config.serve_stale_when_down;
    let fenced = config.tracking != crate::config::TrackingMode::Off;
    let profiler = Profiler::new(&config);
    let warm = Warmer::new(config.warm.clone(), profiler.hot.clone());
    let hook_warm = warm.clone();
    let hook = Box::new(move |event| match event {
        // Only a cluster's nodes take reachability from it (see `build::cluster`).
        LinkEvent::Reachable => {}
        LinkEvent::Lost if keep_on_loss => {}
        // What the lost connection filled ended with it (its fence): the hot keys are
        // loaded again, now and once it is back. (The upstream itself went away only if the
        // control connection did too: what was learned of its ACL rules is forgotten then.)
        LinkEvent::Lost | LinkEvent::Up if fenced => hook_warm.flushed_for_loss(),
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
    if tracking.broadcast() {
        // Keys outside every prefix get no invalidation: L1 does not hold them.
        let prefixes: Vec<bytes::Bytes> = (config.tracking_prefixes.iter().flatten())
            .map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()))
            .collect();
        match config.tracking_prefixes.as_deref().unwrap_or_default() {
            [] => tracing::info!("broadcast tracking of every key"),
            shown => tracing::info!("broadcast tracking of the prefixes {}", shown.join(", ")),
        }
        l1.cover_only(prefixes.clone());
        tracking.broadcast_prefixes(prefixes);
    }
    let db = config.upstream.db;
    (warm.peers).serve(profiler.hot.clone(), config.warm.peer_keys, db);
    tracking.on_hot_keys(warm.peers.clone());
    let (loss_warm, loss_acl) = (warm.clone(), acl.clone());
    tracking.on_loss_flush(Box::new(move || {
        if fenced {
            loss_acl.forget();
        }
        loss_warm.flushed_for_loss();
    }));
    let audit = Auditor::new(l1.clone(), stats.clone(), config.audit_rate);
    let pinned_slots = Arc::new(tokio::sync::Semaphore::new(config.max_pinned));
    let upstream = Arc::new(Upstream::new(
        target,
        stats.clone(),
        hook,
        forget,
        tracking.clone(),
    ));
    let cluster = u.cluster.as_ref().map(|seeds| {
        let parts = cluster::Parts {
            config: &config,
            target: &target_template,
            stats: &stats,
            l1: &l1,
            warm: &warm,
            seed: &upstream,
        };
        cluster::nodes(&seeds.addresses, parts, &tracking)
    });
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
        sentinel,
        cluster,
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

/// The TLS client of a `rediss://` upstream (none for `redis://`), its files loaded now so
/// that a missing or bad one stops the start; `--upstream-tls-insecure` is warned about.
pub fn tls(config: &Config) -> anyhow::Result<Option<Tls>> {
    if !config.upstream.tls {
        return Ok(None);
    }
    let options = TlsOptions {
        ca: config.upstream_tls_ca.clone(),
        cert: config.upstream_tls_cert.clone(),
        key: config.upstream_tls_key.clone(),
        server_name: config.upstream_tls_server_name.clone(),
        insecure: config.upstream_tls_insecure,
    };
    if options.insecure {
        tracing::warn!(
            "--upstream-tls-insecure: the upstream's certificate is not verified; anyone on the \
             path can read and change the traffic"
        );
    }
    // The nodes a Sentinel or a Cluster names are verified each by its own name.
    let u = &config.upstream;
    let host = match u.sentinel.is_some() || u.cluster.is_some() {
        true => None,
        false => Some(u.host.as_str()),
    };
    let tls = Tls::new(options, host).map_err(|e| anyhow::anyhow!("upstream TLS: {e}"))?;
    Ok(Some(tls))
}

/// Each switch of the primary (Sentinel): L1 is flushed whatever `--serve-stale-when-down`
/// says (the new primary may lack writes the old one acknowledged, and no tracking state
/// crosses nodes). Connections to the old primary end on their own (see
/// [`crate::upstream::endpoint`]); until the control connection is up on the new one, L1
/// is bypassed.
pub(super) async fn flush_on_switch(shared: Arc<Services>) {
    let mut switches = shared.upstream.endpoint().subscribe();
    while switches.changed().await.is_ok() {
        shared.l1.flush_all();
        shared.warm.flushed_for_loss();
    }
}

/// Where the control connection goes: the upstream with the sidecar's own credentials (the
/// same source as the pools', so a rotated file reaches both).
pub(super) fn control_target(shared: &Services) -> ControlTarget {
    let config = &shared.config;
    ControlTarget {
        endpoint: shared.upstream.endpoint().clone(),
        outbound: shared.upstream.outbound().clone(),
        credentials: shared.upstream.own_credentials().clone(),
        connect_timeout: config.connect_timeout,
        heartbeat: config.invalidation_heartbeat,
        keep_when_down: config.serve_stale_when_down,
    }
}

/// Loads the upstream's command table over the sidecar's own route (the built-in table is
/// used meanwhile, and instead when the upstream refuses the sidecar: see
/// [`crate::command::load`]).
pub(super) async fn load_table(shared: Arc<Services>) {
    let pool = shared.upstream.pool(Route {
        db: shared.config.upstream.db,
        resp: Resp::V2,
        user: 0,
    });
    if shared.table.load_own(&pool).await {
        learn_max_bulk(&shared, &pool).await;
    }
}

/// The sidecar's own credentials: the `--upstream` URL's user and password, each replaced
/// by its file when `--upstream-username-file` / `--upstream-password-file` is given (the
/// files are read now: the error names the one at fault).
pub fn credentials(config: &Config) -> Result<CredentialSource, String> {
    let u = &config.upstream;
    let bytes = |s: &Option<String>| s.as_ref().map(|s| Bytes::from(s.clone()));
    CredentialSource::new(
        bytes(&u.username),
        config.upstream_username_file.as_deref(),
        bytes(&u.password),
        config.upstream_password_file.as_deref(),
    )
    .map_err(|e| format!("upstream credentials: {e}"))
}

/// The credentials the sidecar gives the sentinels of a `redis+sentinel://` upstream:
/// `--sentinel-username` / `--sentinel-password`, or their files (re-read when they change).
pub fn sentinel_credentials(config: &Config) -> Result<CredentialSource, String> {
    let bytes = |s: &Option<String>| s.as_ref().map(|s| Bytes::from(s.clone()));
    CredentialSource::new(
        bytes(&config.sentinel_username),
        config.sentinel_username_file.as_deref(),
        bytes(&config.sentinel_password),
        config.sentinel_password_file.as_deref(),
    )
    .map_err(|e| format!("sentinel credentials: {e}"))
}

#[path = "build/cluster.rs"]
mod cluster;
#[cfg(test)]
mod tests;
