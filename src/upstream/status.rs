//! The upstream's state as operators see it (INFO `upstream_state`, `/readyz`, the
//! `nearcache_upstream_state` metric): reachable or not, and whether it takes the sidecar's
//! own credentials (those of `--upstream`, or none).

/// The upstream's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// Reachable, and it serves the sidecar's own connections.
    Up,
    /// Not reachable (refused, timed out, lost, silent): an outage.
    Unreachable,
    /// Reachable; it requires authentication and `--upstream` carries no credentials. Each
    /// client authenticates itself (until it does, it gets Redis's `-NOAUTH`), and the
    /// control connection uses the credentials of the first client that did.
    AuthRequired,
    /// Reachable; it refuses the sidecar's credentials (`--upstream`, or its files): a
    /// configuration error.
    AuthFailed,
}

impl UpstreamState {
    /// Every state, in the order the metric lists them.
    pub const ALL: [UpstreamState; 4] = [
        UpstreamState::Up,
        UpstreamState::Unreachable,
        UpstreamState::AuthRequired,
        UpstreamState::AuthFailed,
    ];

    /// Why a sidecar whose upstream is in this state is not ready (`/readyz`), if it is
    /// not: an upstream that requires authentication while `--upstream` has none is no
    /// reason (the clients authenticate themselves).
    pub fn not_ready(self) -> Option<&'static str> {
        match self {
            UpstreamState::Unreachable => Some("upstream unreachable"),
            UpstreamState::AuthFailed => {
                Some("upstream authentication failed (it refuses the credentials in --upstream or its files)")
            }
            UpstreamState::Up | UpstreamState::AuthRequired => None,
        }
    }

    /// Every state's name, each with whether it is this one (the metric's gauges).
    pub fn names_marked(self) -> impl Iterator<Item = (&'static str, bool)> {
        Self::ALL.into_iter().map(move |s| (s.name(), s == self))
    }

    /// The name INFO and the metric's `state` label use.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamState::Up => "up",
            UpstreamState::Unreachable => "unreachable",
            UpstreamState::AuthRequired => "auth_required",
            UpstreamState::AuthFailed => "auth_failed",
        }
    }
}

/// What the last handshake of the sidecar's own route (identity 0) showed about its
/// credentials: accepted (or not asked for).
pub(super) const AUTH_OK: u8 = 0;
/// ... `-NOAUTH` to a connection without credentials.
pub(super) const AUTH_REQUIRED: u8 = 1;
/// ... the credentials of `--upstream` refused.
pub(super) const AUTH_FAILED: u8 = 2;
