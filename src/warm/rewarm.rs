//! Re-warming after a link-loss flush: waits until L1 serves again and no further flush
//! came for [`SETTLE`] (a loss flushes, and the link coming back flushes again), then loads
//! the hot keys taken at the first flush through the warm fetch (after any running warming).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{run, Context, Plan};

/// Quiet time after the last flush before re-warming.
const SETTLE: Duration = Duration::from_millis(200);

/// Whether L1 serves: enabled, the upstream reachable, the invalidation link up.
fn serving(cx: &Context) -> bool {
    cx.l1.enabled() && cx.upstream.link_up() && cx.control.serving()
}

/// Runs for the life of the process (until shutdown).
pub(super) async fn watch(cx: Arc<Context>) {
    let warm = cx.warm.clone();
    let stop = warm.stopper();
    loop {
        tokio::select! {
            _ = warm.rewarm_due.notified() => {}
            _ = stop.cancelled() => return,
        }
        let mut seen = warm.flushes.load(Relaxed);
        let running = loop {
            tokio::select! {
                _ = tokio::time::sleep(SETTLE) => {}
                _ = stop.cancelled() => return,
            }
            let now = warm.flushes.load(Relaxed);
            if now == seen && serving(&cx) {
                if let Some(running) = warm.try_begin() {
                    break running;
                }
            }
            seen = now;
        };
        let keys = warm.rewarm_keys.lock().take();
        if let Some(keys) = keys.filter(|k| !k.is_empty()) {
            warm.progress.rewarms.fetch_add(1, Relaxed);
            // How it ended is logged and shown in INFO.
            let _ = run(&cx, Plan::Rewarm(keys), u64::MAX).await;
        }
        drop(running);
    }
}
