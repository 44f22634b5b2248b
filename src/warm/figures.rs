//! [`WarmFigures`]: one snapshot of warming's state and progress, what INFO and `/metrics`
//! render.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{State, Warmer};

/// Warming's figures at one moment (totals since start unless named `last_`).
#[derive(Debug, Clone, PartialEq)]
pub struct WarmFigures {
    /// Where warming stands.
    pub state: State,
    /// Whether it holds readiness back (`warm_before_ready`).
    pub holds_ready: bool,
    /// Warmings run (start-up, commands, re-warms).
    pub runs: u64,
    /// Re-warms after a link-loss flush.
    pub rewarms: u64,
    /// Warmings that gave up.
    pub failures: u64,
    /// Keys loaded into L1.
    pub keys_loaded: u64,
    /// Key + value bytes loaded.
    pub bytes_loaded: u64,
    /// Hot keys received from peers.
    pub peer_keys: u64,
    /// Answers received from peers.
    pub peer_answers: u64,
    /// Keys the last warming loaded.
    pub last_keys: u64,
    /// How long the last warming took, ms.
    pub last_duration_ms: u64,
}

impl Default for WarmFigures {
    fn default() -> Self {
        Warmer::figures_of(State::Idle, false, &super::Progress::default())
    }
}

impl Warmer {
    /// The figures now.
    pub fn figures(&self) -> WarmFigures {
        Warmer::figures_of(self.state(), self.holds_readiness(), &self.progress)
    }

    fn figures_of(state: State, holds_ready: bool, p: &super::Progress) -> WarmFigures {
        let n = |a: &AtomicU64| a.load(Relaxed);
        WarmFigures {
            state,
            holds_ready,
            runs: n(&p.runs),
            rewarms: n(&p.rewarms),
            failures: n(&p.failures),
            keys_loaded: n(&p.keys_loaded),
            bytes_loaded: n(&p.bytes_loaded),
            peer_keys: n(&p.peer_keys),
            peer_answers: n(&p.peer_answers),
            last_keys: n(&p.last_keys),
            last_duration_ms: n(&p.last_duration_ms),
        }
    }
}
