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
use tokio::sync::{watch, Notify};

use crate::config::WarmConfig;
use crate::profiler::hotkeys::HotKeys;
use crate::services::Services;
use crate::upstream::Route;
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

/// The warming state every task shares (in [`Services`]).
pub struct Warmer {
    config: WarmConfig,
    hot: Arc<HotKeys>,
    state: AtomicU8,
    /// A warming runs (see [`Warmer::try_begin`]).
    running: AtomicBool,
    /// The start-up warming has not ended yet and `warm_before_ready` is set.
    holding_ready: AtomicBool,
    created: Instant,
    stop: watch::Sender<bool>,
    /// The hot keys taken at the first link-loss flush not re-warmed yet.
    rewarm_keys: Mutex<Option<Vec<Bytes>>>,
    rewarm_due: Notify,
    /// Link-loss flushes since start.
    flushes: AtomicU64,
    /// What INFO shows.
    pub progress: Progress,
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
            stop: watch::channel(false).0,
            rewarm_keys: Mutex::new(None),
            rewarm_due: Notify::new(),
            flushes: AtomicU64::new(0),
            progress: Progress::default(),
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

    /// Turns true on shutdown.
    pub fn stopper(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Shutdown: a running warming stops before its next call.
    pub fn stop(&self) {
        self.stop.send_replace(true);
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
pub fn start(shared: &Arc<Services>) {
    tokio::spawn(startup(shared.clone()));
    if shared.config.warm.rewarm {
        tokio::spawn(rewarm::watch(shared.clone()));
    }
}

/// The start-up warming, in the background; `/readyz` is released when it ends.
async fn startup(shared: Arc<Services>) {
    let warm = shared.warm.clone();
    let config = &shared.config.warm;
    let tracking = &shared.control;
    // Peers answer asks on a keyed bus only: on an open one nobody would answer.
    let peers = config.from_peers
        && tracking.link_needed()
        && tracking.bus.active()
        && tracking.bus.keyed();
    if peers || !config.patterns.is_empty() {
        if let Some(running) = warm.try_begin() {
            // How it ended is logged and shown in INFO.
            let _ = run(&shared, Plan::Startup { peers }, u64::MAX).await;
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
pub async fn command(shared: Arc<Services>, route: Route, params: &[Bytes]) -> Result<u64, String> {
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
    let Some(running) = shared.warm.try_begin() else {
        return Err(
            "ERR a warming is already running (see warm_state in INFO nearcache_l1)".into(),
        );
    };
    let task = tokio::spawn(async move {
        let outcome = run(&shared, Plan::Pattern(pattern, route), limit).await;
        drop(running);
        outcome
    });
    match task.await {
        Ok((keys, Ok(()) | Err(End::Full))) => Ok(keys),
        Ok((keys, Err(End::Stopped))) => {
            Err(format!("ERR warming stopped by shutdown after {keys} keys"))
        }
        Ok((keys, Err(End::Failed(why)))) => {
            Err(format!("ERR warming failed after {keys} keys: {why}"))
        }
        Ok((_, Err(End::Refused(reply)))) => {
            let text = String::from_utf8_lossy(&reply);
            Err(text.trim_start_matches('-').trim_end().to_owned())
        }
        Err(_) => Err("ERR warming failed".into()),
    }
}

/// Runs one warming: state, totals and log lines; returns the keys it loaded and how it
/// ended.
async fn run(shared: &Arc<Services>, plan: Plan, max_keys: u64) -> (u64, Result<(), End>) {
    let warm = &shared.warm;
    let what = match &plan {
        Plan::Startup { peers: true } => format!(
            "start-up, peers' hot keys then {} pattern(s)",
            shared.config.warm.patterns.len()
        ),
        Plan::Startup { peers: false } => {
            format!("start-up, {} pattern(s)", shared.config.warm.patterns.len())
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
        _ => fetch::own_route(shared),
    };
    let mut fetch = Fetch::new(shared.clone(), route, max_keys);
    let end = match plan {
        Plan::Startup { peers } => startup_stages(shared, &mut fetch, peers).await,
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
async fn startup_stages(shared: &Arc<Services>, fetch: &mut Fetch, peers: bool) -> Result<(), End> {
    if peers {
        from_peers(shared, fetch).await?;
    }
    for pattern in &shared.config.warm.patterns {
        scan::pattern(fetch, pattern.as_bytes()).await?;
    }
    Ok(())
}

/// Asks the running sidecars for their hottest keys once the bus subscription is up (at
/// most the connect timeout, and [`SUBSCRIBE_WAIT`]), collects the answers for
/// `peer_wait`, then loads those keys from the upstream.
async fn from_peers(shared: &Arc<Services>, fetch: &mut Fetch) -> Result<(), End> {
    let tracking = &shared.control;
    let config = &shared.config.warm;
    let mut redirect = tracking.subscribe();
    let wait = shared.config.connect_timeout.max(SUBSCRIBE_WAIT);
    let subscribed = tokio::time::timeout(wait, redirect.wait_for(|r| r.id.is_some()))
        .await
        .is_ok();
    if !subscribed || !tracking.bus.subscribed() {
        tracing::info!("warming: peers not asked (the invalidation bus is not subscribed)");
        return Ok(());
    }
    tracking
        .peers
        .begin(config.peer_keys, shared.config.upstream.db);
    tracking.bus.ask_hot(config.peer_keys);
    let waited = fetch.pause(config.peer_wait).await;
    let (keys, answers) = tracking.peers.finish();
    waited?;
    let p = &shared.warm.progress;
    p.peer_keys.fetch_add(keys.len() as u64, Relaxed);
    p.peer_answers.fetch_add(answers as u64, Relaxed);
    tracing::info!(
        "warming: {answers} peer(s) answered with {} hot keys",
        keys.len()
    );
    fetch.keys(&keys).await
}
