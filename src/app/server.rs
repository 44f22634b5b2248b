//! The accept loop: starts the start-up loads of the services, accepts clients up to
//! `--max-clients` (backing off while accepting fails; a refused client is answered from its
//! own task), and drains connections on shutdown within `--shutdown-grace`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::build::{control_target, load_table};
use crate::acl::Acl;
use crate::connection::Connection;
use crate::lifecycle;
use crate::services::Services;

/// First wait after a failed accept (e.g. out of file descriptors); doubles up to
/// [`ACCEPT_BACKOFF_MAX`] while accepting keeps failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long shutdown waits for a running warming to notice it and log how far it got.
const WARM_STOP_WAIT: Duration = Duration::from_secs(1);

/// How long a client refused at `--max-clients` is given to take its error.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Serves clients on `listener` until the process is asked to stop, then gives connections
/// the grace period to finish their batch.
pub async fn run(shared: Arc<Services>, listener: TcpListener) {
    let stopping = lifecycle::stopping();
    lifecycle::spawn(load_table(shared.clone()));
    crate::control::key_bus(&shared.control, shared.config.bus_key_file.as_deref());
    if shared.control.link_needed() {
        let target = control_target(&shared);
        let tracking = shared.control.clone();
        let mut redirect = tracking.subscribe();
        lifecycle::spawn(crate::control::run(tracking, target));
        // Clients are accepted once the invalidation link is up (L1 is bypassed until then),
        // or after one connect timeout when the upstream is not there yet.
        let wait = shared.config.connect_timeout;
        let _ = tokio::time::timeout(wait, redirect.wait_for(|r| r.id.is_some())).await;
    }
    crate::warm::start(&shared.warming);
    lifecycle::spawn(Acl::recheck_every(
        Arc::downgrade(&shared.acl),
        shared.config.acl_recheck,
    ));
    let slots = Arc::new(Semaphore::new(shared.config.max_clients));
    let connections = TaskTracker::new();
    let ids = AtomicU64::new(0);
    let mut accept_backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.cancelled() => break,
        };
        let (mut stream, _) = match accepted {
            Ok(a) => {
                accept_backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                // E.g. EMFILE: the error repeats until a descriptor is freed, so wait
                // (doubling) instead of spinning, and keep serving the clients we have.
                if accept_backoff == ACCEPT_BACKOFF_MIN {
                    tracing::error!("accept failed: {e}; retrying with backoff");
                }
                tokio::select! {
                    _ = tokio::time::sleep(accept_backoff) => {}
                    _ = stopping.cancelled() => break,
                }
                accept_backoff = (accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.rejected_max_clients.fetch_add(1, Relaxed);
            // From its own task: a refused client that does not read cannot hold the loop.
            lifecycle::spawn(async move {
                let refusal = stream.write_all(b"-ERR max number of clients reached\r\n");
                let _ = tokio::time::timeout(REFUSAL_WRITE, refusal).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Relaxed);
        let conn = Connection::new(shared.clone(), stream, id);
        let stats = shared.stats.clone();
        let stop = stopping.clone();
        lifecycle::spawn(connections.track_future(async move {
            stats.connected_clients.fetch_add(1, Relaxed);
            stats.total_connections.fetch_add(1, Relaxed);
            conn.run(stop).await;
            stats.connected_clients.fetch_sub(1, Relaxed);
            drop(permit);
        }));
    }
    // Warming saw the stopping token too: it stops before its next call.
    drop(listener);
    let grace = shared.config.shutdown_grace;
    connections.close();
    // Connections still open after the grace are dropped at the lifecycle's end.
    let _ = tokio::time::timeout(grace, connections.wait()).await;
    shared.warm.stopped(WARM_STOP_WAIT).await;
}
