//! [`AuditFigures`]: one snapshot of the staleness audit's figures, what INFO and `/metrics`
//! render.

use std::sync::atomic::Ordering::Relaxed;

use super::Auditor;

/// The audit's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFigures {
    /// The fraction of L1 hits audited (`--audit-rate`).
    pub rate: f64,
    /// Audits compared with an upstream reply.
    pub done: u64,
    /// Audits that got no usable upstream reply.
    pub failed: u64,
    /// Hits selected while too many audits were in flight.
    pub skipped: u64,
    /// Audited hits that differed from the upstream with no invalidation to explain it.
    pub stale_hits: u64,
}

impl Auditor {
    /// The figures now.
    pub fn figures(&self) -> AuditFigures {
        let s = &self.stats;
        AuditFigures {
            rate: self.rate(),
            done: s.audits_done.load(Relaxed),
            failed: s.audits_failed.load(Relaxed),
            skipped: s.audits_skipped.load(Relaxed),
            stale_hits: s.stale_hits_detected.load(Relaxed),
        }
    }
}
