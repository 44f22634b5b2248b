//! Readiness (`/readyz`, INFO `ready`): whether the sidecar should be sent traffic.

use crate::services::Services;
use crate::upstream::UpstreamState;

/// Why the sidecar is not ready, if it is not: no primary is known (Sentinel), the upstream
/// is unreachable, it refuses the
/// credentials of `--upstream`, L1 needs the invalidation link (tracking or the bus) and it
/// is down, or the start-up warming runs with `warm_before_ready` (at most
/// [`crate::warm::READY_HOLD`]). An upstream that requires authentication while
/// `--upstream` has no credentials is no reason: the clients authenticate themselves, and
/// the invalidation link waits for the first that does. Reads only what is cheap (no L1
/// figures), for probes.
pub fn not_ready(shared: &Services) -> Option<&'static str> {
    verdict(
        shared.upstream.endpoint().address().is_ok(),
        shared.upstream.state(),
        shared.control.serving(),
        shared.control.awaiting_credentials(),
        shared.warm.holds_readiness(),
    )
}

/// The verdict from its inputs: whether a primary is known (Sentinel discovery names none
/// before its first answer), the upstream's state, whether L1 may serve (the control
/// connection is up or not needed), whether that connection waits for a client's
/// credentials, and whether the start-up warming holds readiness back.
pub fn verdict(
    primary_known: bool,
    upstream: UpstreamState,
    serving: bool,
    awaiting_credentials: bool,
    warming: bool,
) -> Option<&'static str> {
    if !primary_known {
        return Some("no primary known");
    }
    if let Some(why) = upstream.not_ready() {
        return Some(why);
    }
    if !serving && !awaiting_credentials {
        return Some("invalidation link down");
    }
    if warming {
        return Some("warming");
    }
    None
}
