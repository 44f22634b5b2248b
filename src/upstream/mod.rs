//! Connections to the upstream Redis: per-route pools of multiplexed, pipelined
//! connections, with timeouts, reconnect backoff and link-state events.
//!
//! A route is what an upstream connection's state must match for a client's command:
//! database, protocol version and authenticated user. Each client connection sticks to one
//! slot of its route's pool, so its commands reach Redis in the order it sent them.

mod conn;
mod pool;
pub mod reply;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;

pub use pool::{OnReply, PendingReply, Pool};

use crate::error::UpstreamError;
use crate::metrics::Stats;
use crate::protocol::Resp;

/// Credentials sent to the upstream (`AUTH [user] pass`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// ACL user; `None` means the default user.
    pub user: Option<Bytes>,
    /// Password.
    pub pass: Bytes,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// Credentials from the upstream URL, used for user id 0.
    pub credentials: Option<Credentials>,
    /// Connections per route.
    pub connections: usize,
    /// Bound on one reply.
    pub timeout: Duration,
    /// Bound on connect + handshake.
    pub connect_timeout: Duration,
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

/// Link transitions the rest of the sidecar reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// A connection was established after one had been lost.
    Up,
    /// An established connection was lost.
    Lost,
}

type LinkHook = Box<dyn Fn(LinkEvent) + Send + Sync>;

/// Shared link state of all pools.
pub(crate) struct Link {
    address: String,
    up_slots: AtomicUsize,
    /// A connection was lost since the last `Up` event was announced.
    lost_since_up: AtomicBool,
    /// The outage was logged; the recovery will be.
    down_logged: AtomicBool,
    hook: LinkHook,
    stats: Arc<Stats>,
}

impl Link {
    fn connected(&self) {
        self.up_slots.fetch_add(1, SeqCst);
        if self.down_logged.swap(false, SeqCst) {
            eprintln!("nearcache: upstream {} reachable again", self.address);
        }
        if self.lost_since_up.swap(false, SeqCst) {
            (self.hook)(LinkEvent::Up);
        }
    }

    fn lost(&self, reason: &str) {
        let left = self.up_slots.fetch_sub(1, SeqCst) - 1;
        self.lost_since_up.store(true, SeqCst);
        (self.hook)(LinkEvent::Lost);
        if left == 0 && !self.down_logged.swap(true, SeqCst) {
            eprintln!("nearcache: upstream {} down: {reason}", self.address);
        }
    }

    /// A connect attempt failed; logged once per outage.
    fn failed(&self, reason: &str) {
        if self.up_slots.load(SeqCst) == 0 && !self.down_logged.swap(true, SeqCst) {
            eprintln!("nearcache: upstream {} unreachable: {reason}", self.address);
        }
    }
}

/// The upstream Redis as the sidecar sees it.
pub struct Upstream {
    target: Arc<Target>,
    link: Arc<Link>,
    pools: RwLock<HashMap<Route, Arc<Pool>>>,
    identities: RwLock<Vec<Option<Credentials>>>,
}

impl Upstream {
    /// Creates the upstream; pools connect lazily, on first use of their route.
    pub fn new(target: Target, stats: Arc<Stats>, hook: LinkHook) -> Upstream {
        let identities = RwLock::new(vec![target.credentials.clone()]);
        let address = target.address.clone();
        Upstream {
            target: Arc::new(target),
            link: Arc::new(Link {
                address,
                down_logged: AtomicBool::new(false),
                up_slots: AtomicUsize::new(0),
                lost_since_up: AtomicBool::new(false),
                hook,
                stats,
            }),
            pools: RwLock::new(HashMap::new()),
            identities,
        }
    }

    /// `host:port` of the upstream.
    pub fn address(&self) -> &str {
        &self.target.address
    }

    /// Number of pool slots per route.
    pub fn slots(&self) -> usize {
        self.target.connections
    }

    /// Whether at least one upstream connection is established.
    pub fn link_up(&self) -> bool {
        self.link.up_slots.load(SeqCst) > 0
    }

    /// The pool for a route, created (and connecting) on first use.
    pub fn pool(&self, route: Route) -> Arc<Pool> {
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&route)
        {
            return p.clone();
        }
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(route)
            .or_insert_with(|| {
                let creds = self.identities.read().unwrap_or_else(|p| p.into_inner())
                    [route.user as usize]
                    .clone();
                Arc::new(Pool::start(
                    self.target.clone(),
                    route,
                    creds,
                    self.link.clone(),
                ))
            })
            .clone()
    }

    /// The identity id for credentials a client authenticated with (0 when they are the
    /// sidecar's own).
    pub fn identity(&self, creds: Credentials) -> u32 {
        let mut ids = self.identities.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = ids.iter().position(|c| c.as_ref() == Some(&creds)) {
            return i as u32;
        }
        ids.push(Some(creds));
        (ids.len() - 1) as u32
    }

    /// Sends one request on a fresh connection and returns its reply: used to check
    /// credentials without changing the identity of any shared connection.
    pub async fn one_off(&self, request: Bytes) -> Result<Bytes, UpstreamError> {
        conn::one_off(&self.target, request, 1).await
    }

    /// Like [`Upstream::one_off`] for `replies` pipelined requests: the first error reply,
    /// or else the last reply.
    pub async fn one_off_many(
        &self,
        requests: Bytes,
        replies: usize,
    ) -> Result<Bytes, UpstreamError> {
        conn::one_off(&self.target, requests, replies).await
    }
}
