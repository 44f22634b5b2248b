//! Connections to the upstream Redis: per-route pools of multiplexed, pipelined
//! connections, with timeouts, jittered reconnect backoff and link-state events.
//!
//! A route is what an upstream connection's state must match for a client's command:
//! database, protocol version and authenticated user (an identity id). Each client reaches
//! its route's pool through a [`Lane`] (see `pool` for how it picks a slot).
//!
//! Nothing here lives forever: a pool no client session has held for
//! `--upstream-idle-timeout` closes its connections and is dropped, and so is an identity
//! no pool uses (the forget hook then lets L1 drop its entries). At most
//! `--max-upstream-routes` pools exist; a new route first replaces the least recently used
//! pool nobody holds, else the client gets `-ERR nearcache: too many upstream routes`.
//! Identity ids only grow: an id never names other credentials than its first.

pub(crate) mod backoff;
pub mod cluster;
mod conn;
mod dedicated;
pub mod endpoint;
mod figures;
pub mod gate;
mod handshake;
mod link;
pub mod outbound;
mod pool;
mod registry;
mod router;
pub mod secret;
pub mod sentinel;
mod status;
pub mod stream;
pub mod tls;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use dedicated::{PinnedIds, Queued, NO_UPSTREAM_ID};
pub use figures::UpstreamFigures;
use gate::FillGate;
pub(crate) use link::Link;
pub use link::{Fault, FaultHook, LinkEvent, LinkHook};
use link::{NOAUTH, SERVED};
pub use pool::{Lane, OnReply, PendingReply, Pool};
use registry::{reap, Held, Registry, Routes};
pub use router::{Dedicated, Lanes, Outgoing, Router};
pub use secret::CredentialSource;
pub use status::UpstreamState;
use status::{AUTH_FAILED, AUTH_OK, AUTH_REQUIRED};

use crate::error::UpstreamError;
use crate::metrics::Stats;
use crate::protocol::{write_command, Resp};

/// Credentials sent to the upstream (`AUTH [user] pass`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// ACL user; `None` means the default user.
    pub user: Option<Bytes>,
    /// Password.
    pub pass: Bytes,
}

impl std::fmt::Debug for Credentials {
    /// Names the user, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_deref().map(String::from_utf8_lossy);
        f.debug_struct("Credentials")
            .field("user", &user)
            .field("pass", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// `text`, an error reply to a request that carried these credentials, safe to log or
    /// to pass on: the password is replaced by `***`, and the arguments a server quotes for
    /// a command it does not know (`... with args beginning with: '3' 'AUTH' 'u' 'pass'`,
    /// a server without HELLO) are cut, since it may quote only a prefix of the password.
    pub fn redact(&self, text: &str) -> String {
        const QUOTED_ARGS: &str = "with args beginning with:";
        let text = match text.find(QUOTED_ARGS) {
            Some(at) => format!("{} (not shown)", &text[..at + QUOTED_ARGS.len()]),
            None => text.to_owned(),
        };
        let pass = String::from_utf8_lossy(&self.pass);
        if pass.is_empty() {
            text
        } else {
            text.replace(&*pass, "***")
        }
    }
}

/// [`Credentials::redact`] when there are credentials; `text` as it is when there are none.
pub fn redact(text: &str, creds: Option<&Credentials>) -> String {
    creds.map_or_else(|| text.to_owned(), |c| c.redact(text))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// Where connections go (fixed, or the primary Sentinel names).
    pub endpoint: Arc<endpoint::Endpoint>,
    /// The sidecar's own credentials (the upstream URL's, or its files'), used for user
    /// id 0: each new connection takes the current ones.
    pub credentials: CredentialSource,
    /// Connections per route.
    pub connections: usize,
    /// Bound on one reply.
    pub timeout: Duration,
    /// Bound on connect + handshake.
    pub connect_timeout: Duration,
    /// A pool no client session holds for this long is closed (`--upstream-idle-timeout`).
    pub idle_timeout: Duration,
    /// Most pools at once (`--max-upstream-routes`).
    pub max_routes: usize,
    /// The sidecar's own outbound sockets (is the upstream the sidecar itself?).
    pub outbound: Arc<outbound::Outbound>,
    /// `--serve-stale-when-down`: a connection lost with its server ends what it filled
    /// only once the next connection is up (hits may serve it while the upstream is down);
    /// otherwise at once.
    pub keep_fills_while_down: bool,
}

/// The upstream state a client command needs its connection to be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Selected database.
    pub db: u32,
    /// Protocol version (replies are forwarded as the client's own version).
    pub resp: Resp,
    /// Identity id (see [`Upstream::identity`]); 0 is the sidecar's own.
    pub user: u32,
}

/// Called with an identity id once it is dropped (no pool uses it any more).
pub type ForgetHook = Box<dyn Fn(u32) + Send + Sync>;

/// The identity of connections that send no AUTH (Redis's `default` user, authenticated
/// only when it is `nopass`), where the `--upstream` URL has credentials; where it has none,
/// that is identity 0. A session is moved to it by `RESET`, as Redis moves a client to
/// `default`.
pub const DEFAULT_USER: u32 = u32::MAX;

/// The upstream Redis as the sidecar sees it.
pub struct Upstream {
    target: Arc<Target>,
    link: Arc<Link>,
    registry: Arc<Registry>,
    reaper: OnceLock<()>,
}

impl Upstream {
    /// Creates the upstream; pools connect lazily, on first use of their route. `hook` hears
    /// link events; `forget` hears each identity id dropped; `tracking` says what each
    /// connection turns on and whether its replies may fill L1.
    pub fn new(
        target: Target,
        stats: Arc<Stats>,
        hook: LinkHook,
        forget: ForgetHook,
        tracking: Arc<dyn FillGate>,
    ) -> Upstream {
        let endpoint = target.endpoint.clone();
        Upstream {
            target: Arc::new(target),
            link: Arc::new(Link {
                endpoint,
                down_logged: AtomicBool::new(false),
                down: AtomicBool::new(true),
                anonymous: AtomicU8::new(0),
                auth: AtomicU8::new(AUTH_OK),
                up_slots: AtomicUsize::new(0),
                lost_pending: AtomicUsize::new(0),
                reconnects: AtomicUsize::new(0),
                retries: AtomicUsize::new(0),
                lost_since_up: AtomicBool::new(false),
                hook,
                faults: OnceLock::new(),
                stats,
                calls: Arc::default(),
                tracking,
            }),
            registry: Arc::new(Registry {
                routes: Mutex::default(),
                forget,
                identities_from: None,
            }),
            reaper: OnceLock::new(),
        }
    }

    /// `hook` hears each fault on this upstream's pooled connections (a connection lost, a
    /// connect attempt failed, a call unanswered past the timeout); set once, later calls
    /// are ignored. A Redis Cluster node's asks a topology refresh.
    pub fn on_faults(&self, hook: FaultHook) {
        let _ = self.link.faults.set(hook);
    }

    /// `host:port` of the upstream now (`(none)` while no primary is known).
    pub fn address(&self) -> String {
        self.target.endpoint.display()
    }

    /// Where connections go, and each switch of it.
    pub fn endpoint(&self) -> &Arc<endpoint::Endpoint> {
        &self.target.endpoint
    }

    /// The identity `RESET` moves a session to: Redis's `default` user, reached by sending no
    /// AUTH (see [`DEFAULT_USER`]).
    pub fn default_identity(&self) -> u32 {
        match self.target.credentials.is_some() {
            true => DEFAULT_USER,
            false => 0,
        }
    }

    /// The sidecar's own credentials (identity 0), current at each use.
    pub fn own_credentials(&self) -> &CredentialSource {
        &self.target.credentials
    }

    /// The sidecar's own outbound sockets: a client from one of them is the sidecar itself.
    pub fn outbound(&self) -> &Arc<outbound::Outbound> {
        &self.target.outbound
    }

    /// Whether the upstream is reachable: a connection is established, or none failed
    /// since the last one was (pools closed while idle leave the link up).
    pub fn link_up(&self) -> bool {
        self.link.up_slots.load(SeqCst) > 0 || !self.link.down.load(SeqCst)
    }

    /// The upstream's state: unreachable (an outage), or reachable and what it makes of the
    /// sidecar's own credentials.
    pub fn state(&self) -> UpstreamState {
        if !self.link_up() {
            return UpstreamState::Unreachable;
        }
        match self.link.auth.load(SeqCst) {
            AUTH_REQUIRED => UpstreamState::AuthRequired,
            AUTH_FAILED => UpstreamState::AuthFailed,
            _ => UpstreamState::Up,
        }
    }

    /// Whether the upstream serves a client that sends no credentials, as the last pooled
    /// connection without credentials found in its handshake (`-NOAUTH` to its PING:
    /// false); `None` before any was answered. Redis keeps serving a connection that was
    /// let in before a password was required, so this is what such a route's commands get.
    pub fn serves_anonymous(&self) -> Option<bool> {
        match self.link.anonymous.load(SeqCst) {
            SERVED => Some(true),
            NOAUTH => Some(false),
            _ => None,
        }
    }

    /// Pooled connections re-established after a loss, since start.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects.load(SeqCst) as u64
    }

    /// Calls sent again on a new connection after theirs was lost, since start.
    pub fn retries(&self) -> u64 {
        self.link.retries.load(SeqCst) as u64
    }

    /// Calls this upstream answered since start, and the sum of their latencies (µs).
    pub fn calls(&self) -> (u64, u64) {
        let calls = &self.link.calls;
        (calls.requests.load(SeqCst), calls.latency_us.load(SeqCst))
    }

    /// Upstream connections established now.
    pub fn connections(&self) -> usize {
        self.link.up_slots.load(SeqCst)
    }

    /// Pools that exist now (one per route in use or recently used).
    pub fn routes(&self) -> usize {
        self.lock().pools.len()
    }

    /// Identity ids L1 entries may still be keyed by: 0 and every identity not dropped.
    pub fn live_identities(&self) -> Vec<u32> {
        let routes = self.lock();
        std::iter::once(0)
            .chain(routes.identities.keys().copied())
            .collect()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Routes> {
        self.registry.routes.lock()
    }

    /// The pool for a route, created on first use; when the route cannot get one, a pool
    /// that answers every call with why.
    pub fn pool(&self, route: Route) -> Arc<Pool> {
        self.try_pool(route).unwrap_or_else(|e| {
            Arc::new(Pool::refused(
                self.target.clone(),
                route,
                self.link.clone(),
                e,
            ))
        })
    }

    /// The pool for a route, created on first use (replacing the least recently used pool
    /// nobody holds when [`Target::max_routes`] exist).
    pub fn try_pool(&self, route: Route) -> Result<Arc<Pool>, UpstreamError> {
        self.start_reaper();
        let mut routes = self.lock();
        if let Some(held) = routes.pools.get_mut(&route) {
            held.unused_since = None;
            return Ok(held.value.clone());
        }
        let creds = match route.user {
            0 => self.target.credentials.current(),
            DEFAULT_USER => None,
            id => match self.registry.identity(&mut routes, id) {
                Some(creds) => Some(creds),
                None => {
                    return Err(UpstreamError::unavailable(
                        "credentials expired; AUTH again",
                    ))
                }
            },
        };
        if routes.pools.len() >= self.target.max_routes.max(1) {
            let unused = routes
                .pools
                .iter()
                .filter(|(_, held)| Arc::strong_count(&held.value) == 1)
                .min_by_key(|(_, held)| held.unused_since.unwrap_or_else(Instant::now))
                .map(|(route, _)| *route);
            match unused {
                Some(lru) => drop(routes.pools.remove(&lru)),
                None => return Err(UpstreamError::TooManyRoutes(routes.pools.len())),
            }
        }
        let pool = Arc::new(Pool::new(
            self.target.clone(),
            route,
            creds,
            self.link.clone(),
        ));
        routes.pools.insert(route, Held::new(pool.clone()));
        Ok(pool)
    }

    /// The identity id for credentials a client authenticated with (checked by the
    /// upstream first): one per ACL user, whatever password it gave, since rights belong to
    /// the user (0 when it is the sidecar's own user). So clients authenticating with many
    /// passwords of one user (any password works for a `nopass` user) share one identity
    /// and its pools instead of using up `--max-upstream-routes`. The newest password
    /// checked is the one new connections use.
    pub fn identity(&self, creds: Credentials) -> Result<u32, UpstreamError> {
        let user = user_name(&creds);
        if self.target.credentials.current().as_ref().map(user_name) == Some(user.clone()) {
            return Ok(0);
        }
        self.start_reaper();
        let mut routes = self.lock();
        if let Some(&id) = routes.by_user.get(&user) {
            if let Some(held) = routes.identities.get_mut(&id) {
                held.unused_since = None;
                held.value = creds;
            }
            return Ok(id);
        }
        let id = routes
            .last_identity
            .checked_add(1)
            .filter(|&id| id != DEFAULT_USER)
            .ok_or_else(|| UpstreamError::unavailable("identity ids exhausted"))?;
        routes.last_identity = id;
        routes.by_user.insert(user, id);
        routes.identities.insert(id, Held::new(creds));
        Ok(id)
    }

    /// This upstream (just built) takes the identities of `source` (ids other than 0): a
    /// Redis Cluster node's, whose clients authenticate through the first seed's.
    pub fn with_identities_of(mut self, source: &Upstream) -> Upstream {
        let registry = Arc::get_mut(&mut self.registry).expect("a new upstream's registry");
        registry.identities_from = Some(source.registry.clone());
        self
    }

    /// Starts the task that drops idle pools and identities (once, from inside the runtime).
    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            let idle = self.target.idle_timeout;
            let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
            crate::lifecycle::spawn(reap(Arc::downgrade(&self.registry), idle, every));
        });
    }

    /// Sends one request on a fresh connection and returns its reply: used to check
    /// credentials without changing the identity of any shared connection.
    pub async fn one_off(&self, request: Bytes) -> Result<Bytes, UpstreamError> {
        handshake::one_off(&self.target, request, 1).await
    }

    /// Like [`Upstream::one_off`] for `replies` pipelined requests: the first error reply,
    /// or else the last reply.
    pub async fn one_off_many(
        &self,
        requests: Bytes,
        replies: usize,
    ) -> Result<Bytes, UpstreamError> {
        handshake::one_off(&self.target, requests, replies).await
    }

    /// Sends one request on a fresh connection authenticated as identity `user` (RESP2,
    /// database 0): for commands that must not queue behind others, such as `SCRIPT KILL`.
    pub async fn one_off_as(&self, user: u32, request: &[u8]) -> Result<Bytes, UpstreamError> {
        let creds = self.credentials(user)?;
        let mut bytes = BytesMut::new();
        let mut replies = 1;
        if let Some(c) = creds {
            let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
            write_command(&mut bytes, &[b"AUTH", user, &c.pass]);
            replies += 1;
        }
        bytes.extend_from_slice(request);
        handshake::one_off(&self.target, bytes.freeze(), replies).await
    }
}

#[cfg(test)]
mod tests;

/// The ACL user credentials log in as (`AUTH pass` is the `default` user).
fn user_name(creds: &Credentials) -> Bytes {
    creds
        .user
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"default"))
}
