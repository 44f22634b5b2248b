//! Warming: sidecars that start warm. Three ways keys get into L1 before clients ask:
//!
//! - pattern warming (`[warm] patterns` at start, `NEARCACHE WARM <pattern> [LIMIT n]` at
//!   run time): `SCAN MATCH` pages, each loaded through the warm fetch (`scan`);
//! - peer warming (`[warm] from_peers`): a starting sidecar asks the running ones over the
//!   invalidation bus for their hottest keys (`peers`) and loads those from the upstream;
//! - re-warming (`[warm] rewarm`): when L1 is flushed because the upstream or invalidation
//!   link was lost, the hot-key sketch's top is taken, and loaded once L1 serves again
//!   (`rewarm`).
//!
//! Every warming goes through the bounded warm fetch (`fetch`: `MGET` + `PTTL` through the
//! normal fill path on the sidecar's own route, user 0, or for `NEARCACHE WARM` on the
//! client's own database and user, so Redis applies that client's ACL rules to its `SCAN`
//! and reads; `max_keys`, `max_bytes`, the rate
//! limit of `rate`). One warming runs at a time ([`Warmer::try_begin`]); its progress is in
//! `INFO nearcache_l1` (the `warm_*` lines), `/metrics` and the log. The start-up warming runs in the background while the
//! sidecar serves; with `warm_before_ready`, `/readyz` answers "warming" until it is over,
//! for at most [`READY_HOLD`].

pub mod fetch;
mod figures;
pub mod peers;
pub mod rate;
mod rewarm;
mod scan;

pub use figures::WarmFigures;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::acl::Acl;
use crate::cache::L1;
use crate::config::WarmConfig;
use crate::control::Control;
use crate::profiler::hotkeys::HotKeys;
use crate::upstream::{Route, Upstream};
use fetch::{End, Fetch};

/// Longest time the start-up warming keeps `/readyz` at 503 (`warm_before_ready`): past it
/// the pod is ready even if the warming still runs.
pub const READY_HOLD: Duration = Duration::from_secs(120);
/// Shortest wait for the bus subscription before asking the peers.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// Where warming stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No warming ran yet.
    Idle = 0,
    /// A warming runs.
    Running = 1,
    /// The last warming ended (done, bounds reached, or stopped by shutdown).
    Done = 2,
    /// The last warming gave up (logged with why).
    Failed = 3,
}

impl State {
    /// The name INFO shows.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Running,
            2 => State::Done,
            3 => State::Failed,
            _ => State::Idle,
        }
    }
}

/// Figures INFO shows (totals since start unless named `last_`).
#[derive(Default)]
pub struct Progress {
    /// Warmings run (start-up, commands, re-warms).
    pub runs: AtomicU64,
    /// Re-warms after a link-loss flush.
    pub rewarms: AtomicU64,
    /// Warmings that gave up.
    pub failures: AtomicU64,
    /// Keys loaded into L1.
    pub keys_loaded: AtomicU64,
    /// Key + value bytes loaded.
    pub bytes_loaded: AtomicU64,
    /// Hot keys received from peers.
    pub peer_keys: AtomicU64,
    /// Answers received from peers.
    pub peer_answers: AtomicU64,
    /// Keys the last warming loaded.
    pub last_keys: AtomicU64,
    /// How long the last warming took, ms.
    pub last_duration_ms: AtomicU64,
}

/// What warming reads and fills: the parts of the services it touches, gathered once at
/// start-up (warming sits below the services bundle and never sees the rest of it).
pub struct Context {
    /// The warming state.
    pub warm: Arc<Warmer>,
    /// The L1 warmed.
    pub l1: Arc<L1>,
    /// Whose reads may be answered from what was warmed.
    pub acl: Arc<Acl>,
    /// Where values are read from.
    pub upstream: Arc<Upstream>,
    /// Whether L1 serves, and the bus peers are asked on.
    pub control: Arc<Control>,
    /// The database of the sidecar's own route (the `--upstream` URL's).
    pub db: u32,
    /// `--connect-timeout`: how long the bus subscription is waited for.
    pub connect_timeout: Duration,
}

/// The warming state every task shares (in [`Context`] and the services).
pub struct Warmer {
    /// The `[warm]` configuration.
    pub config: WarmConfig,
    hot: Arc<HotKeys>,
    state: AtomicU8,
    /// A warming runs (see [`Warmer::try_begin`]).
    running: AtomicBool,
    /// The start-up warming has not ended yet and `warm_before_ready` is set.
    holding_ready: AtomicBool,
    created: Instant,
    /// Cancelled at shutdown (a child of the process's stopping token).
    stop: CancellationToken,
    /// The hot keys taken at the first link-loss flush not re-warmed yet.
    rewarm_keys: Mutex<Option<Vec<Bytes>>>,
    rewarm_due: Notify,
    /// Link-loss flushes since start.
    flushes: AtomicU64,
    /// What INFO shows.
    pub progress: Progress,
    /// Hot-key asks and answers on the bus (the control plane hands them here).
    pub peers: Arc<peers::PeerExchange>,
}

/// Held while a warming runs.
pub struct Running(Arc<Warmer>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Relaxed);
    }
}

/// What a warming loads.
enum Plan {
    /// The start-up warming: the peers' hot keys (if asked), then the patterns.
    Startup { peers: bool },
    /// `NEARCACHE WARM <pattern>`, on the client's route.
    Pattern(Bytes, Route),
    /// The hot keys taken at a link-loss flush.
    Rewarm(Vec<Bytes>),
}

impl Warmer {
    /// The warming state for `config`, re-warming from `hot`'s top.
    pub fn new(config: WarmConfig, hot: Arc<HotKeys>) -> Arc<Warmer> {
        Arc::new(Warmer {
            holding_ready: AtomicBool::new(config.warm_before_ready),
            config,
            hot,
            state: AtomicU8::new(State::Idle as u8),
            running: AtomicBool::new(false),
            created: Instant::now(),
            stop: crate::lifecycle::stopping().child_token(),
            rewarm_keys: Mutex::new(None),
            rewarm_due: Notify::new(),
            flushes: AtomicU64::new(0),
            progress: Progress::default(),
            peers: Arc::default(),
        })
    }

    /// Where warming stands.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    /// Whether `/readyz` should answer "warming": the start-up warming runs, with
    /// `warm_before_ready`, and started less than [`READY_HOLD`] ago.
    pub fn holds_readiness(&self) -> bool {
        self.holding_ready.load(Relaxed) && self.created.elapsed() < READY_HOLD
    }

    /// Cancelled on shutdown.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops warming: a running warming stops before its next call (shutdown does this too).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits (at most `bound`) until no warming runs: after [`Warmer::stop`], for a running
    /// one to end before its next call and log how far it got.
    pub async fn stopped(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.running.load(Relaxed) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts a warming unless one runs.
    pub fn try_begin(self: &Arc<Self>) -> Option<Running> {
        let free = !self.running.swap(true, Relaxed);
        free.then(|| Running(self.clone()))
    }

    /// L1 was flushed because the upstream or invalidation link was lost (or came back):
    /// with `rewarm`, the sketch's top is taken (at the first such flush) and loaded once
    /// L1 serves again.
    pub fn flushed_for_loss(&self) {
        if !self.config.rewarm {
            return;
        }
        self.flushes.fetch_add(1, Relaxed);
        let mut keys = self.rewarm_keys.lock();
        if keys.is_none() {
            let top = self.hot.top(self.config.peer_keys);
            *keys = Some(top.into_iter().map(|(k, _)| k).collect());
        }
        drop(keys);
        self.rewarm_due.notify_one();
    }

    /// An entry a warm fetch admitted, in the totals.
    fn loaded(&self, size: u64) {
        self.progress.keys_loaded.fetch_add(1, Relaxed);
        self.progress.bytes_loaded.fetch_add(size, Relaxed);
    }
}

/// Starts the background tasks: the start-up warming and the re-warm watcher.
pub fn start(cx: &Arc<Context>) {
    crate::lifecycle::spawn(startup(cx.clone()));
    if cx.warm.config.rewarm {
        crate::lifecycle::spawn(rewarm::watch(cx.clone()));
    }
}

/// The start-up warming, in the background; `/readyz` is released when it ends.
async fn startup(cx: Arc<Context>) {
    let warm = cx.warm.clone();
    let config = &cx.warm.config;
    let tracking = &cx.control;
    // Peers answer asks on a keyed bus only: on an open one nobody would answer.
    let peers = config.from_peers
        && tracking.link_needed()
        && tracking.bus.active()
        && tracking.bus.keyed();
    if peers || !config.patterns.is_empty() {
        if let Some(running) = warm.try_begin() {
            // How it ended is logged and shown in INFO.
            let _ = run(&cx, Plan::Startup { peers }, u64::MAX).await;
            drop(running);
        }
    }
    warm.holding_ready.store(false, Relaxed);
}

/// `NEARCACHE WARM <pattern> [LIMIT n]` (`params`: what follows `WARM`) as the client of
/// `route` (its database and user; RESP2): runs to the end (in its own task, so a client
/// that goes away does not cut it short) and answers the keys loaded, or an error when the
/// arguments are wrong, a warming already runs, the upstream refused it (its reply, e.g.
/// `NOPERM ...` for a user without `SCAN`) or this one gave up.
pub async fn command(cx: Arc<Context>, route: Route, params: &[Bytes]) -> Result<u64, String> {
    let (pattern, limit) = match params {
        [pattern] => (pattern, u64::MAX),
        [pattern, word, n] if word.eq_ignore_ascii_case(b"LIMIT") => {
            match crate::protocol::parse_decimal(n) {
                Some(n) if n > 0 => (pattern, n as u64),
                _ => return Err("ERR LIMIT must be a positive integer".into()),
            }
        }
        [_, _, _] => return Err("ERR syntax error".into()),
        _ => return Err("ERR wrong number of arguments for 'nearcache|warm' command".into()),
    };
    if let Some(why) = crate::glob::problem(pattern) {
        return Err(format!("ERR bad pattern: {why}"));
    }
    let pattern = pattern.clone();
    let Some(running) = cx.warm.try_begin() else {
        return Err(
            "ERR a warming is already running (see warm_state in INFO nearcache_l1)".into(),
        );
    };
    let task = crate::lifecycle::spawn(async move {
        let outcome = run(&cx, Plan::Pattern(pattern, route), limit).await;
        drop(running);
        outcome
    });
    match task.await {
        Ok(Some((keys, Ok(()) | Err(End::Full)))) => Ok(keys),
        Ok(Some((keys, Err(End::Stopped)))) => {
            Err(format!("ERR warming stopped by shutdown after {keys} keys"))
        }
        Ok(Some((keys, Err(End::Failed(why))))) => {
            Err(format!("ERR warming failed after {keys} keys: {why}"))
        }
        Ok(Some((_, Err(End::Refused(reply))))) => {
            let text = String::from_utf8_lossy(&reply);
            Err(text.trim_start_matches('-').trim_end().to_owned())
        }
        Ok(None) => Err("ERR warming stopped by shutdown".into()),
        Err(_) => Err("ERR warming failed".into()),
    }
}

/// Runs one warming: state, totals and log lines; returns the keys it loaded and how it
/// ended.
async fn run(cx: &Arc<Context>, plan: Plan, max_keys: u64) -> (u64, Result<(), End>) {
    let warm = &cx.warm;
    let what = match &plan {
        Plan::Startup { peers: true } => format!(
            "start-up, peers' hot keys then {} pattern(s)",
            cx.warm.config.patterns.len()
        ),
        Plan::Startup { peers: false } => {
            format!("start-up, {} pattern(s)", cx.warm.config.patterns.len())
        }
        Plan::Pattern(p, _) => format!("NEARCACHE WARM {}", String::from_utf8_lossy(p)),
        Plan::Rewarm(keys) => format!("re-warm after a link-loss flush, {} hot keys", keys.len()),
    };
    warm.state.store(State::Running as u8, Relaxed);
    warm.progress.runs.fetch_add(1, Relaxed);
    tracing::info!("warming started ({what})");
    let started = Instant::now();
    let route = match &plan {
        Plan::Pattern(_, route) => *route,
        _ => fetch::own_route(cx),
    };
    let mut fetch = Fetch::new(cx.clone(), route, max_keys);
    let end = match plan {
        Plan::Startup { peers } => startup_stages(cx, &mut fetch, peers).await,
        Plan::Pattern(pattern, _) => scan::pattern(&mut fetch, &pattern).await,
        Plan::Rewarm(keys) => fetch.keys(&keys).await,
    };
    let (keys, bytes) = fetch.loaded();
    let ms = started.elapsed().as_millis() as u64;
    let p = &warm.progress;
    p.last_keys.store(keys, Relaxed);
    p.last_duration_ms.store(ms, Relaxed);
    let state = match &end {
        Ok(()) | Err(End::Full) => {
            tracing::info!("warming done ({what}): {keys} keys, {bytes} bytes loaded in {ms} ms");
            State::Done
        }
        Err(End::Stopped) => {
            tracing::info!("warming stopped by shutdown ({what}) after {keys} keys in {ms} ms");
            State::Done
        }
        Err(End::Refused(reply)) => {
            p.failures.fetch_add(1, Relaxed);
            let text = String::from_utf8_lossy(reply);
            tracing::info!("warming refused by the upstream ({what}): {}", text.trim());
            State::Failed
        }
        Err(End::Failed(why)) => {
            p.failures.fetch_add(1, Relaxed);
            tracing::warn!(
                "warming failed ({what}) after {keys} keys, {bytes} bytes in {ms} ms: {why}"
            );
            State::Failed
        }
    };
    warm.state.store(state as u8, Relaxed);
    (keys, end)
}

/// The start-up stages: the peers' hot keys, then each pattern.
async fn startup_stages(cx: &Arc<Context>, fetch: &mut Fetch, peers: bool) -> Result<(), End> {
    if peers {
        from_peers(cx, fetch).await?;
    }
    for pattern in &cx.warm.config.patterns {
        scan::pattern(fetch, pattern.as_bytes()).await?;
    }
    Ok(())
}

/// Asks the running sidecars for their hottest keys once the bus subscription is up (at
/// most the connect timeout, and [`SUBSCRIBE_WAIT`]), collects the answers for
/// `peer_wait`, then loads those keys from the upstream.
async fn from_peers(cx: &Arc<Context>, fetch: &mut Fetch) -> Result<(), End> {
    let tracking = &cx.control;
    let config = &cx.warm.config;
    let mut redirect = tracking.subscribe();
    let wait = cx.connect_timeout.max(SUBSCRIBE_WAIT);
    let subscribed = tokio::time::timeout(wait, redirect.wait_for(|r| r.id.is_some()))
        .await
        .is_ok();
    if !subscribed || !tracking.bus.subscribed() {
        tracing::info!("warming: peers not asked (the invalidation bus is not subscribed)");
        return Ok(());
    }
    let peers = &cx.warm.peers;
    peers.begin(config.peer_keys, cx.db);
    tracking.bus.ask_hot(config.peer_keys);
    let waited = fetch.pause(config.peer_wait).await;
    let (keys, answers) = peers.finish();
    waited?;
    let p = &cx.warm.progress;
    p.peer_keys.fetch_add(keys.len() as u64, Relaxed);
    p.peer_answers.fetch_add(answers as u64, Relaxed);
    tracing::info!(
        "warming: {answers} peer(s) answered with {} hot keys",
        keys.len()
    );
    fetch.keys(&keys).await
}
