//! Readiness (`/readyz`, INFO `ready`): whether the sidecar should be sent traffic.

use crate::services::Services;

/// Why the sidecar is not ready, if it is not: the upstream is unreachable, it refuses the
/// credentials of `--upstream`, L1 needs the invalidation link (tracking or the bus) and it
/// is down, or the start-up warming runs with `warm_before_ready` (at most
/// [`crate::warm::READY_HOLD`]). An upstream that requires authentication while
/// `--upstream` has no credentials is no reason: the clients authenticate themselves, and
/// the invalidation link waits for the first that does.
pub fn not_ready(shared: &Services) -> Option<&'static str> {
    if let Some(why) = shared.upstream.state().not_ready() {
        return Some(why);
    }
    if !shared.control.serving() && !shared.control.awaiting_credentials() {
        return Some("invalidation link down");
    }
    if shared.warm.holds_readiness() {
        return Some("warming");
    }
    None
}
