//! One lifecycle for every task of the process: each is spawned on one [`TaskTracker`] and
//! stopped through cancellation tokens, in two steps. [`stop`] asks: the accept loop ends,
//! client connections finish the batch they are in and close, warming stops. [`end`] then
//! cancels what is left (upstream connections, the control connection, timers) and waits
//! for it. The tracker and tokens are the process's own (a sidecar runs one app), so any
//! layer can spawn without being handed a handle.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Life {
    /// Cancelled by [`end`]: every task spawned here is dropped.
    ended: CancellationToken,
    /// Cancelled by [`stop`] (and by [`end`]): the shutdown signal.
    stopping: CancellationToken,
    tasks: TaskTracker,
}

static LIFE: LazyLock<Life> = LazyLock::new(|| {
    let ended = CancellationToken::new();
    Life {
        stopping: ended.child_token(),
        ended,
        tasks: TaskTracker::new(),
    }
});

/// Spawns `task` on the process's tracker; it is dropped at [`end`] if still running.
pub fn spawn<F>(task: F) -> JoinHandle<Option<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ended = LIFE.ended.clone();
    LIFE.tasks.spawn(async move {
        tokio::select! {
            biased;
            out = task => Some(out),
            _ = ended.cancelled() => None,
        }
    })
}

/// The shutdown signal: cancelled once the process is asked to stop.
pub fn stopping() -> CancellationToken {
    LIFE.stopping.clone()
}

/// Asks every task to stop (SIGTERM, SIGINT).
pub fn stop() {
    LIFE.stopping.cancel();
}

/// Cancels every task still running and waits up to `wait` for them to be dropped.
pub async fn end(wait: Duration) {
    LIFE.ended.cancel();
    LIFE.tasks.close();
    let _ = tokio::time::timeout(wait, LIFE.tasks.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spawned_task_gives_its_output() {
        let handle = spawn(async { 7 });
        assert_eq!(handle.await.unwrap(), Some(7));
        assert!(!stopping().is_cancelled(), "nothing stopped the process");
    }
}
