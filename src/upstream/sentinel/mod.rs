//! Sentinel discovery: which node is the primary of a `redis+sentinel://` upstream, and
//! every change of it, set on the [`Endpoint`] every upstream connection is opened to.
//!
//! As the Sentinel client rules say: the sentinels are asked in order
//! (`SENTINEL get-master-addr-by-name`), the first that answers moves to the front, and the
//! node it names becomes the endpoint only once it answers `ROLE` with `master`
//! (`discover`). Every known sentinel is subscribed to `+switch-master` on a connection of
//! its own (`watch`); a message for our master, a doubt from the data path (`-READONLY`,
//! a `ROLE` of replica on the control connection) and a periodic re-check
//! (`--sentinel-recheck`) each start a new round. A round that finds nothing keeps the
//! address there is and tries again soon (the reconnect backoff).
//!
//! Not fred's Sentinel client: the switch must be visible here (it bumps the endpoint's
//! generation, which ends every connection and flushes L1), every sentinel is subscribed,
//! not only the one that answered, and sentinels and primary are reached through the
//! sidecar's own sockets and rustls configuration ([`Outbound`]).

pub(super) mod ask;
mod discover;
mod watch;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::backoff::Backoff;
use super::endpoint::Endpoint;
use super::outbound::Outbound;
use super::CredentialSource;

/// What discovery needs to know.
pub struct SentinelOptions {
    /// `host:port` of each configured sentinel, in the URL's order.
    pub addresses: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// The sentinels' own credentials (`--sentinel-username`, `--sentinel-password`).
    pub sentinel_credentials: CredentialSource,
    /// The data credentials (the URL's or their files'), to ask the named node its role.
    pub data_credentials: CredentialSource,
    /// Bound on one connect + exchange with a sentinel or a node.
    pub connect_timeout: Duration,
    /// How often a round runs when nothing else starts one (`--sentinel-recheck`).
    pub recheck: Duration,
}

/// Discovery's state: the sentinels known, the primary's changes, the subscriptions.
pub struct Sentinel {
    options: SentinelOptions,
    endpoint: Arc<Endpoint>,
    outbound: Arc<Outbound>,
    /// Known sentinels, the last one that answered first; configured ones are never dropped.
    known: Mutex<Vec<String>>,
    /// Sentinels a `watch` task runs for.
    watched: Mutex<HashSet<String>>,
    /// Sentinels whose `+switch-master` subscription is up now.
    reachable: AtomicUsize,
    /// Switches after the first discovery.
    failovers: AtomicU64,
    /// When the endpoint last changed.
    last_switch: Mutex<Option<Instant>>,
    /// Why the last round found no primary (logged once per change).
    last_miss: Mutex<Option<String>>,
    /// A `+switch-master` for our master arrived: run a round now.
    nudge: Notify,
}

/// Discovery's figures at one moment (INFO `sentinel_*`, `/metrics` `nearcache_sentinel_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentinelFigures {
    /// The master name.
    pub master: String,
    /// The primary's `host:port`, or `None` while none is known.
    pub primary: Option<String>,
    /// Switches of the primary after the first discovery.
    pub failovers: u64,
    /// Seconds since the endpoint last changed (the first discovery counts); `None` before.
    pub seconds_since_switch: Option<u64>,
    /// Sentinels known (configured and learned).
    pub known: u64,
    /// Sentinels whose `+switch-master` subscription is up.
    pub reachable: u64,
}

impl Sentinel {
    /// Discovery for `endpoint` (which starts with no address), connecting through
    /// `outbound`; [`Sentinel::run`] starts it.
    pub fn new(
        options: SentinelOptions,
        endpoint: Arc<Endpoint>,
        outbound: Arc<Outbound>,
    ) -> Arc<Sentinel> {
        Arc::new(Sentinel {
            known: Mutex::new(options.addresses.clone()),
            options,
            endpoint,
            outbound,
            watched: Mutex::default(),
            reachable: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
            last_switch: Mutex::new(None),
            last_miss: Mutex::new(None),
            nudge: Notify::new(),
        })
    }

    /// Runs discovery rounds until the process ends: one at once, then one after each
    /// `+switch-master` for our master, each doubt of the endpoint and each
    /// `--sentinel-recheck`; after a round that found no primary, sooner (backoff).
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.options.master.len() as u64);
        loop {
            self.watch_all();
            let wait = match self.discover().await {
                Ok(()) => {
                    backoff.reset();
                    self.missed(None);
                    self.options.recheck
                }
                Err(why) => {
                    self.missed(Some(why));
                    backoff.next_delay().min(self.options.recheck)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.endpoint.doubted() => {}
                _ = self.nudge.notified() => {}
            }
        }
    }

    /// The figures now.
    pub fn figures(&self) -> SentinelFigures {
        SentinelFigures {
            master: self.options.master.clone(),
            primary: self.endpoint.address().ok().map(|a| a.to_string()),
            failovers: self.failovers.load(Relaxed),
            seconds_since_switch: self.last_switch.lock().map(|t| t.elapsed().as_secs()),
            known: self.known.lock().len() as u64,
            reachable: self.reachable.load(Relaxed) as u64,
        }
    }

    /// Starts a `watch` task for every known sentinel that has none.
    fn watch_all(self: &Arc<Self>) {
        let known = self.known.lock().clone();
        let mut watched = self.watched.lock();
        for address in known {
            if watched.insert(address.clone()) {
                crate::lifecycle::spawn(self.clone().watch(address));
            }
        }
    }

    /// Logs a round's outcome when it differs from the last one's.
    fn missed(&self, why: Option<String>) {
        let mut last = self.last_miss.lock();
        if *last == why {
            return;
        }
        match &why {
            Some(why) => tracing::warn!(
                master = %self.options.master,
                primary = %self.endpoint.display(),
                "sentinel discovery found no primary ({why}); keeping the address there is, \
                 asking again soon"
            ),
            None if last.is_some() => {
                tracing::info!(master = %self.options.master, "sentinel discovery answers again")
            }
            None => {}
        }
        *last = why;
    }

    /// `text` with any password of the sentinels' or the data credentials hidden.
    fn redact(&self, text: &str) -> String {
        let text = super::redact(text, self.options.sentinel_credentials.current().as_ref());
        super::redact(&text, self.options.data_credentials.current().as_ref())
    }
}
