//! [`UpstreamFigures`]: one snapshot of the upstream's figures (its state and connections),
//! what INFO and `/metrics` render; the calls' counters are in [`crate::metrics::Stats`].

use super::tls::TlsFigures;
use super::{Upstream, UpstreamState};

/// The upstream's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamFigures {
    /// `host:port`.
    pub address: String,
    /// Its state as operators see it.
    pub state: UpstreamState,
    /// Whether it is reachable.
    pub link_up: bool,
    /// Pooled connections established now.
    pub connections: u64,
    /// Pools that exist now (one per route).
    pub routes: u64,
    /// Pooled connections re-established after a loss, since start.
    pub reconnects: u64,
    /// Calls left unanswered by a lost connection and sent again on the next one (reads
    /// only), since start.
    pub retries: u64,
    /// Calls answered since start.
    pub requests: u64,
    /// Sum of their latencies, microseconds.
    pub latency_us: u64,
    /// The TLS in use (`None`: a plain `redis://` upstream).
    pub tls: Option<TlsFigures>,
}

impl Default for UpstreamFigures {
    fn default() -> Self {
        UpstreamFigures {
            address: String::new(),
            state: UpstreamState::Up,
            link_up: true,
            connections: 0,
            routes: 0,
            reconnects: 0,
            retries: 0,
            requests: 0,
            latency_us: 0,
            tls: None,
        }
    }
}

impl Upstream {
    /// The figures now.
    pub fn figures(&self) -> UpstreamFigures {
        UpstreamFigures {
            address: self.address(),
            state: self.state(),
            link_up: self.link_up(),
            connections: self.connections() as u64,
            routes: self.routes() as u64,
            reconnects: self.reconnects(),
            retries: self.retries(),
            requests: self.calls().0,
            latency_us: self.calls().1,
            tls: self.outbound().tls().map(|tls| tls.figures()),
        }
    }
}
