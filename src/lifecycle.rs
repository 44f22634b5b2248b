//! One lifecycle for every task of the process: each is spawned on one [`TaskTracker`] and
//! stopped through cancellation tokens, in two steps. [`stop`] asks: the accept loop ends,
//! client connections finish the batch they are in and close, warming stops. [`end`] then
//! cancels what is left (upstream connections, the control connection, timers) and waits
//! for it. The tracker and tokens are the process's own (a sidecar runs one app), so any
//! layer can spawn without being handed a handle.
//!
//! [`Rare`] wraps the rarely-ready branches of a busy task's `select!` (a shutdown signal, a
//! health timer, a switch of primary), which tokio would otherwise poll on every wake-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use parking_lot::Mutex;

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
    let ended = Rare::new(LIFE.ended.clone().cancelled_owned());
    LIFE.tasks.spawn(async move {
        tokio::select! {
            biased;
            out = task => Some(out),
            _ = ended => None,
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

/// A future polled only on its first poll and after its own waker fired: a task woken for
/// anything else (every request and reply of a busy connection) skips it for the price of
/// a flag and a waker comparison, where polling a timer, a watch or a `Notify` registers
/// and compares wakers each time.
pub struct Rare<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
}

/// Set by the inner future's waker; passes the wake-up on to the task polling [`Rare`].
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Rare<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Rare<F> {
        Rare {
            inner: Box::pin(inner),
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
        }
    }
}

impl<F: Future> Future for Rare<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self.flag.task.lock();
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !self.flag.woken.swap(false, SeqCst) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rare_future_is_polled_only_when_its_waker_fires() {
        use std::sync::atomic::AtomicUsize;
        let polls = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let counted = {
            let (polls, notify) = (polls.clone(), notify.clone());
            let mut notified = Box::pin(notify.notified_owned());
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, SeqCst);
                notified.as_mut().poll(cx)
            })
        };
        let mut rare = Box::pin(Rare::new(counted));
        // Polled ten times as a task woken for something else: the inner future only once,
        // at the start.
        for _ in 0..10 {
            std::future::poll_fn(|cx| {
                assert!(rare.as_mut().poll(cx).is_pending(), "not notified yet");
                Poll::Ready(())
            })
            .await;
        }
        assert_eq!(polls.load(SeqCst), 1);
        // Its own waker fires: polled again, and ready.
        notify.notify_one();
        tokio::time::timeout(Duration::from_secs(5), rare.as_mut())
            .await
            .expect("ready once notified");
        assert_eq!(polls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_spawned_task_gives_its_output() {
        let handle = spawn(async { 7 });
        assert_eq!(handle.await.unwrap(), Some(7));
        assert!(!stopping().is_cancelled(), "nothing stopped the process");
    }
}
