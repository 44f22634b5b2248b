//! What watches the reads answered from L1 and those it could not answer, in one place:
//! the ACL check (may L1 answer this identity), the hit and miss counts by namespace, the
//! sampled lookup timing, the hot-key sampling, the N+1 tracking and the audit's pick.
//! The GET fast path, GET and MGET all go through [`Observers::on_hit`] and
//! [`Observers::on_miss`]; a new feature that watches reads adds its hook here.
//!
//! Nothing here allocates, locks or dispatches dynamically on a hit: the counts are
//! per-connection (published once per batch, see [`Counts`]), the samplers are counters.

use std::time::Instant;

use crate::acl::{Marks, Read};
use crate::audit::Countdown;
use crate::profiler::nplusone::Finding;
use crate::profiler::ClientProfile;
use crate::services::Services;

use super::counts::Counts;

/// One hit-path lookup in this many is timed (`nearcache_cache_lookup_duration_seconds`).
const LOOKUP_SAMPLE: u32 = 64;

/// One connection's observers of its reads.
pub(super) struct Observers {
    /// L1 hits and misses not yet added to the shared counters (added once per batch).
    counts: Counts,
    /// Picks the L1 hits this connection has audited (`--audit-rate`).
    audit: Countdown,
    /// Hit-path lookups, to time one in [`LOOKUP_SAMPLE`].
    lookups: u32,
    /// Read sampling for the hot-key sketch, and N+1 tracking.
    profile: ClientProfile,
}

impl Observers {
    /// A connection's observers; `audit` picks the hits it audits.
    pub(super) fn new(audit: Countdown) -> Observers {
        Observers {
            counts: Counts::default(),
            audit,
            lookups: 0,
            profile: ClientProfile::new(),
        }
    }

    /// The ACL check: whether L1 may answer `read` for the identity of `marks`. The
    /// upstream ran it for this identity in the current ACL epoch, or it ever did while
    /// stale hits are served because the upstream is unreachable (`link_up` false) and
    /// nothing can be learned.
    #[inline]
    pub(super) fn admits(services: &Services, marks: &Marks, read: Read, link_up: bool) -> bool {
        services.acl.permits(marks, read)
            || (services.config.serve_stale_when_down
                && !link_up
                && services.acl.ever_permitted(marks, read))
    }

    /// A lookup begins: one in [`LOOKUP_SAMPLE`] is timed.
    #[inline]
    pub(super) fn lookup_started(&mut self) -> Option<Instant> {
        self.lookups = self.lookups.wrapping_add(1);
        self.lookups
            .is_multiple_of(LOOKUP_SAMPLE)
            .then(Instant::now)
    }

    /// A lookup ended (timed when [`Observers::lookup_started`] said so).
    #[inline]
    pub(super) fn lookup_done(services: &Services, started: Option<Instant>) {
        if let Some(started) = started {
            services.stats.lookup_latency.observe(started.elapsed());
        }
    }

    /// A read of `key` answered from L1 (its namespace as L1 named it): counted, sampled
    /// for the hot-key sketch. True when this hit is to be audited.
    #[inline]
    pub(super) fn on_hit(&mut self, services: &Services, namespace: usize, key: &[u8]) -> bool {
        self.counts
            .read_in(services.l1.namespaces(), namespace, true);
        self.sample(services, key);
        self.audit.tick()
    }

    /// A read of `key` L1 could not answer (of namespace `namespace`): counted, sampled
    /// for the hot-key sketch.
    #[inline]
    pub(super) fn on_miss(&mut self, services: &Services, namespace: usize, key: &[u8]) {
        self.counts
            .read_in(services.l1.namespaces(), namespace, false);
        self.sample(services, key);
    }

    /// A read of a namespace L1 does not cache: counted as a miss, not sampled.
    pub(super) fn on_bypass(&mut self, services: &Services, key: &[u8]) {
        self.counts.read(services.l1.namespaces(), key, false);
    }

    /// An MGET hit of namespace `namespace` is fetched after all (ACL not known yet).
    pub(super) fn hit_was_miss(&mut self, services: &Services, namespace: usize) {
        self.counts
            .hit_was_miss(services.l1.namespaces(), namespace);
    }

    /// A GET answered by the fast path (the command counts skip it).
    #[inline]
    pub(super) fn fast_get(&mut self) {
        self.counts.hot_gets += 1;
    }

    /// A single GET off the fast path, followed for N+1 detection: what was found, to be
    /// reported with the client's address and name. `now`: the request's clock reading, if
    /// taken.
    pub(super) fn single_get(
        &mut self,
        services: &Services,
        key: &[u8],
        now: Option<Instant>,
    ) -> Option<Finding> {
        self.profile.single_read(&services.profiler, key, now)
    }

    /// A new batch of requests was read from the client.
    #[inline]
    pub(super) fn new_batch(&mut self) {
        self.profile.new_batch();
    }

    /// Adds the batch's counts to the shared figures.
    pub(super) fn publish(&mut self, services: &Services) {
        self.counts
            .publish(&services.stats, services.l1.namespaces());
    }

    #[inline]
    fn sample(&mut self, services: &Services, key: &[u8]) {
        if self.profile.sampler.tick() {
            services.profiler.hot.record(key);
        }
    }
}
