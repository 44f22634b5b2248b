//! The pools and identities of an upstream, when each was last held, and the task that
//! drops those unused for `--upstream-idle-timeout`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::{user_name, Credentials, ForgetHook, Pool, Route};

/// Pools and identities, and when each was last held.
pub(super) struct Registry {
    pub(super) routes: Mutex<Routes>,
    pub(super) forget: ForgetHook,
    /// Where identities (ids other than 0) are looked up instead of `routes.identities`: a
    /// Redis Cluster node's upstream takes the first seed's, so that a client is the same
    /// ACL user on every node it reaches.
    pub(super) identities_from: Option<Arc<Registry>>,
}

impl Registry {
    /// The credentials of identity `id` (not 0) as `routes` (this registry's, locked) or
    /// the registry identities are taken from knows them, marked in use.
    pub(super) fn identity(&self, routes: &mut Routes, id: u32) -> Option<Credentials> {
        let mut shared;
        let routes = match &self.identities_from {
            Some(from) => {
                shared = from.routes.lock();
                &mut *shared
            }
            None => routes,
        };
        let held = routes.identities.get_mut(&id)?;
        held.unused_since = None;
        Some(held.value.clone())
    }
}

#[derive(Default)]
pub(super) struct Routes {
    pub(super) pools: HashMap<Route, Held<Arc<Pool>>>,
    pub(super) identities: HashMap<u32, Held<Credentials>>,
    /// Identity ids by ACL user name: every password of one user gives the same rights.
    pub(super) by_user: HashMap<Bytes, u32>,
    /// The last identity id given out (ids are never reused).
    pub(super) last_identity: u32,
}

/// Something kept while in use, with when it was first seen unused (`None`: in use).
pub(super) struct Held<T> {
    pub(super) value: T,
    pub(super) unused_since: Option<Instant>,
}

impl<T> Held<T> {
    pub(super) fn new(value: T) -> Held<T> {
        Held {
            value,
            unused_since: None,
        }
    }

    /// Marks it unused from `now` (if not already); true once that lasted `idle`.
    pub(super) fn expired(&mut self, now: Instant, idle: Duration) -> bool {
        let since = *self.unused_since.get_or_insert(now);
        now.saturating_duration_since(since) >= idle
    }
}

/// Every `every`, drops pools no session has held for `idle` (closing their connections)
/// and identities no pool has used for `idle`; ends with the upstream.
pub(super) async fn reap(registry: Weak<Registry>, idle: Duration, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let now = Instant::now();
        let (closed, forgotten, used) = {
            let mut routes = registry.routes.lock();
            let mut closed = Vec::new();
            let mut used = std::collections::HashSet::new();
            routes.pools.retain(|route, held| {
                if Arc::strong_count(&held.value) > 1 {
                    held.unused_since = None;
                } else if held.expired(now, idle) {
                    closed.push(held.value.clone());
                    return false;
                }
                used.insert(route.user);
                true
            });
            let mut forgotten = Vec::new();
            routes.identities.retain(|id, held| {
                if used.contains(id) {
                    held.unused_since = None;
                    return true;
                }
                if held.expired(now, idle) {
                    forgotten.push((*id, held.value.clone()));
                    return false;
                }
                true
            });
            for (_, creds) in &forgotten {
                routes.by_user.remove(&user_name(creds));
            }
            (closed, forgotten, used)
        };
        if let Some(from) = &registry.identities_from {
            // The identities this registry's pools still use stay alive where they live.
            let mut shared = from.routes.lock();
            for id in &used {
                if let Some(held) = shared.identities.get_mut(id) {
                    held.unused_since = None;
                }
            }
        }
        drop(closed); // outside the lock: dropping a pool closes its connections
        for (id, _) in forgotten {
            (registry.forget)(id);
        }
    }
}
