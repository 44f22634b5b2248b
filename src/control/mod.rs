//! The control plane: Redis server-assisted tracking. One control connection per sidecar
//! (see `link`, RESP3) receives Redis's invalidations as `invalidate` push messages; every
//! upstream connection that fills L1 runs `CLIENT TRACKING on REDIRECT <its id>`, or, with
//! `--tracking bcast`, the control connection alone runs `CLIENT TRACKING on BCAST` (see
//! `broadcast`). [`Control`] is the state they share:
//! the redirect (control connection id and epoch), whether L1 may serve and be filled, and
//! the counters INFO shows. The same connection subscribes to the invalidation bus (see
//! `bus`), which works with tracking off too.
//!
//! Epochs: the epoch is bumped whenever the redirect changes (the control connection lost,
//! or a new one subscribed). An upstream connection records the epoch its `CLIENT TRACKING`
//! took effect in, and a reply it carries fills L1 only while that epoch is current. So when
//! the control connection is lost, L1 is flushed (which also bumps the L1 generations, so a
//! fill taken before cannot land afterwards) and nothing fills it until a new control
//! connection is up and the connection has turned tracking on again with the new id.

mod broadcast;
pub mod bus;
mod figures;
mod link;

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use bus::Body;
pub use bus::Bus;
use bytes::Bytes;
pub use figures::{BusFigures, ControlFigures};

use crate::cache::{SlotCause, L1};
use crate::config::TrackingMode;
use crate::upstream::gate::FillGate;
pub use crate::upstream::gate::{Redirect, NO_EPOCH};
use crate::upstream::{CredentialSource, Credentials};

pub use link::run;

/// Keys the bus with `--bus-key-file` and re-reads the file every [`bus::KEY_FILE_POLL`]
/// (a mounted Secret that rotates: the new keys are used from the next message on, both of
/// a rotation's keys are accepted); without a key file, says once that the bus is open.
pub fn key_bus(tracking: &Arc<Control>, key_file: Option<&std::path::Path>) {
    let bus = &tracking.bus;
    let Some(path) = key_file else {
        if bus.active() {
            let channel = String::from_utf8_lossy(bus.channel());
            tracing::warn!(
                "invalidation bus {channel} is open (no --bus-key-file): any client that may \
                 PUBLISH on it can make every sidecar evict or flush its L1; hot-key asks are \
                 not answered"
            );
        }
        return;
    };
    if let Err(e) = bus.use_key_file(path.to_owned()) {
        tracing::error!("--bus-key-file: {e}: bus messages are not acted on until it is valid");
        // A random key nobody holds: nothing verifies until the file is valid.
        let mut unknown = vec![0u8; 32];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut unknown);
        bus.set_keys(vec![unknown]);
    }
    let tracking = Arc::downgrade(tracking);
    crate::lifecycle::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(bus::KEY_FILE_POLL).await;
            let Some(tracking) = tracking.upgrade() else {
                return;
            };
            match tracking.bus.reload_keys() {
                Ok(true) => {
                    let id = tracking.bus.key_id().unwrap_or_default();
                    tracing::info!("bus key file re-read: signing with key {id}");
                    failing = false;
                }
                Ok(false) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!("--bus-key-file: {e}: the keys in use stay");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// How the control connection reaches the upstream.
#[derive(Clone)]
pub struct ControlTarget {
    /// Where the upstream is now (fixed, or the primary Sentinel names).
    pub endpoint: Arc<crate::upstream::endpoint::Endpoint>,
    /// The sidecar's own outbound sockets (is the upstream the sidecar itself?).
    pub outbound: Arc<crate::upstream::outbound::Outbound>,
    /// The sidecar's own credentials (`--upstream`, or its files): each connection
    /// attempt takes the current ones.
    pub credentials: CredentialSource,
    /// Bound on connect + handshake.
    pub connect_timeout: Duration,
    /// PING period; a PING not answered within it means the connection is lost.
    pub heartbeat: Duration,
    /// `--serve-stale-when-down`: when the control connection is lost because the upstream
    /// is unreachable, L1 keeps its entries for hits while the upstream is down (it is
    /// flushed when the upstream comes back).
    pub keep_when_down: bool,
}

/// Figures INFO shows.
#[derive(Default)]
pub struct TrackingCounters {
    /// Invalidation messages received on the control connection.
    pub messages: AtomicU64,
    /// Keys named by those messages (each evicted in every database, for every user).
    pub keys: AtomicU64,
    /// L1 flushes because the upstream was flushed (a null invalidation).
    pub upstream_flushes: AtomicU64,
    /// L1 flushes because the control connection was lost, silent or its redirect broken.
    pub loss_flushes: AtomicU64,
}

/// What the bus hands hot-key messages to: the layer that warms L1 from peers registers
/// itself with [`Control::on_hot_keys`], so the control plane needs nothing of warming.
pub trait HotKeyPeers: Send + Sync {
    /// A peer asks for this sidecar's hottest keys: how long to wait before answering it,
    /// or `None` to leave it unanswered.
    fn asked(&self, bus: &Bus, asker: &Bytes) -> Option<Duration>;
    /// Answers `asker` with at most `wanted` of this sidecar's hottest keys.
    fn answer(&self, bus: &Bus, asker: Bytes, wanted: usize);
    /// A peer's answer to an ask: its hottest keys of `db`.
    fn answered(&self, bus: &Bus, asker: &[u8], db: u32, keys: Vec<Bytes>);
}

/// Credentials offered by clients that authenticated, kept for a control connection that
/// has none of its own (a password-protected upstream whose password is not in
/// `--upstream`): at most this many distinct ones.
const MAX_OFFERED: usize = 8;

/// Shared tracking state.
pub struct Control {
    mode: TrackingMode,
    /// Mirror of the redirect's epoch, for the check on every fill.
    epoch: AtomicU64,
    /// The control connection is up and subscribed.
    up: AtomicBool,
    redirect: watch::Sender<Redirect>,
    /// Wakes the control connection to reconnect (its redirect was reported broken); no
    /// permit is stored, so a report seen between reads cannot end a later connection.
    broken: Notify,
    /// Logged once: an upstream connection refused `CLIENT TRACKING`.
    refusal_logged: AtomicBool,
    /// Credentials clients authenticated with, oldest first, for a control connection the
    /// upstream refuses without them (see [`Control::offer`]).
    offered: Mutex<Vec<Credentials>>,
    /// Wakes a control connection waiting for credentials.
    offer_arrived: Notify,
    /// The control connection waits for a client's credentials: the upstream refused it
    /// without any, `--upstream` has none, and no client offered working ones yet.
    awaiting_credentials: AtomicBool,
    l1: Arc<L1>,
    /// What INFO shows.
    pub counters: TrackingCounters,
    /// The invalidation bus.
    pub bus: Bus,
    /// What hot-key asks and answers on the bus are handed to (see [`Control::on_hot_keys`]).
    peers: OnceLock<Arc<dyn HotKeyPeers>>,
    /// Called after each flush for a lost link (re-warming takes the hot keys then).
    loss_flush_hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// What a loss ends instead of all of L1: a Redis Cluster node's own slots (see
    /// [`Control::scope_losses`]).
    loss_scope: OnceLock<LossScope>,
    /// The link was lost because a heartbeat went unanswered (the node's lease expired).
    silent: AtomicBool,
    /// `--tracking bcast`: the prefixes the control connection tracks (see `broadcast`).
    prefixes: OnceLock<Vec<Bytes>>,
}

/// Ends the entries a control connection's loss concerns, told why.
pub type LossScope = Box<dyn Fn(SlotCause) + Send + Sync>;

impl Control {
    /// Tracking state for `mode`; with tracking on, L1 neither serves nor fills until the
    /// control connection is up.
    pub fn new(mode: TrackingMode, channel: &str, l1: Arc<L1>) -> Arc<Control> {
        Control::with_bus(mode, Bus::new(channel), l1)
    }

    /// Tracking state for `mode` whose control connection does not carry the bus (a Redis
    /// Cluster node's: the bus rides on the services' control connection only, see
    /// [`Bus::elsewhere`]).
    pub fn tracking_only(mode: TrackingMode, channel: &str, l1: Arc<L1>) -> Arc<Control> {
        Control::with_bus(mode, Bus::elsewhere(channel), l1)
    }

    fn with_bus(mode: TrackingMode, bus: Bus, l1: Arc<L1>) -> Arc<Control> {
        let (redirect, _) = watch::channel(Redirect { epoch: 0, id: None });
        Arc::new(Control {
            mode,
            epoch: AtomicU64::new(0),
            up: AtomicBool::new(false),
            redirect,
            broken: Notify::new(),
            refusal_logged: AtomicBool::new(false),
            offered: Mutex::new(Vec::new()),
            offer_arrived: Notify::new(),
            awaiting_credentials: AtomicBool::new(false),
            l1,
            counters: TrackingCounters::default(),
            bus,
            peers: OnceLock::new(),
            loss_flush_hook: OnceLock::new(),
            loss_scope: OnceLock::new(),
            silent: AtomicBool::new(false),
            prefixes: OnceLock::new(),
        })
    }

    /// A client authenticated with `creds`: when the upstream refuses the control
    /// connection the sidecar's own credentials (none in `--upstream`), it tries these.
    pub fn offer(&self, creds: &Credentials) {
        if !self.enabled() {
            return;
        }
        let mut offered = self.offered.lock();
        if offered.len() < MAX_OFFERED && !offered.contains(creds) {
            offered.push(creds.clone());
            self.offer_arrived.notify_one();
        }
    }

    /// The oldest offered credentials not known to fail.
    fn offered(&self) -> Option<Credentials> {
        let offered = self.offered.lock();
        offered.first().cloned()
    }

    /// Offered credentials the upstream refused (or that may not subscribe): dropped.
    fn refuse_offer(&self, creds: &Credentials) {
        let mut offered = self.offered.lock();
        offered.retain(|c| c != creds);
    }

    /// Whether the control connection waits for a client's credentials (the upstream
    /// requires authentication, `--upstream` has none, no client offered working ones):
    /// L1 is bypassed meanwhile, yet the sidecar serves, its clients authenticating
    /// themselves.
    pub fn awaiting_credentials(&self) -> bool {
        self.awaiting_credentials.load(Relaxed) && !self.up.load(Relaxed)
    }

    /// Hands the bus's hot-key asks and answers to `peers` (warming from peers; set once at
    /// start-up: until then, and without one, asks go unanswered and answers are dropped).
    pub fn on_hot_keys(&self, peers: Arc<dyn HotKeyPeers>) {
        let _ = self.peers.set(peers);
    }

    /// A loss of this control connection ends only what `scope` ends (a Redis Cluster
    /// node's slots), not all of L1 (set once at start-up; later calls are ignored).
    pub fn scope_losses(&self, scope: LossScope) {
        let _ = self.loss_scope.set(scope);
    }

    /// Sets what runs after each flush for a lost link (once; later calls are ignored).
    pub fn on_loss_flush(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.loss_flush_hook.set(hook);
    }

    /// The configured mode.
    pub fn mode(&self) -> TrackingMode {
        self.mode
    }

    /// Whether upstream connections turn tracking on.
    pub fn enabled(&self) -> bool {
        self.mode != TrackingMode::Off
    }

    /// Whether the control connection is needed: for tracking, or for the bus (unless the
    /// upstream refused the subscription).
    pub fn link_needed(&self) -> bool {
        self.enabled() || self.bus.active()
    }

    /// Whether the control connection is up and subscribed.
    pub fn link_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Whether L1 may answer now: the control connection is up, or not needed.
    #[inline]
    pub fn serving(&self) -> bool {
        self.up.load(Relaxed) || !self.link_needed()
    }

    /// Whether the keys this sidecar writes go on the bus: tracking is off, or an upstream
    /// connection refused it.
    #[inline]
    pub fn publishes_keys(&self) -> bool {
        (!self.enabled() || self.refusal_logged.load(Relaxed)) && self.bus.active()
    }

    /// A bus message from another sidecar (or a foreign publisher): evict what it names.
    fn apply(self: &Arc<Self>, body: Body) {
        match body {
            Body::Keys(Some(db), keys) => keys.iter().for_each(|k| {
                self.l1.invalidate_key(db, k);
            }),
            Body::Keys(None, keys) => self.l1.invalidate_everywhere(&keys),
            // Registered at once; the scan runs on a blocking thread.
            Body::Patterns(patterns) => {
                let patterns = patterns.iter().map(|p| crate::glob::Pattern::new(p));
                drop(self.l1.invalidate_patterns(patterns.collect()));
            }
            Body::Flush => self.l1.flush_all(),
            Body::HotAsk { asker, wanted } => {
                let Some(peers) = self.peers.get() else {
                    return;
                };
                if let Some(delay) = peers.asked(&self.bus, &asker) {
                    let (control, peers) = (self.clone(), peers.clone());
                    crate::lifecycle::spawn(async move {
                        tokio::time::sleep(delay).await;
                        peers.answer(&control.bus, asker, wanted);
                    });
                }
            }
            Body::HotKeys { asker, db, keys } => {
                if let Some(peers) = self.peers.get() {
                    peers.answered(&self.bus, &asker, db, keys);
                }
            }
        }
    }

    /// Whether a reply read on an upstream connection whose tracking took effect in
    /// `conn_epoch` may fill L1.
    #[inline]
    pub fn may_fill(&self, conn_epoch: u64) -> bool {
        !self.enabled() || conn_epoch == self.epoch.load(SeqCst)
    }

    /// Follows the redirect (upstream connections turn tracking on again when it changes).
    pub fn subscribe(&self) -> watch::Receiver<Redirect> {
        self.redirect.subscribe()
    }

    /// The redirect now.
    pub fn redirect(&self) -> Redirect {
        *self.redirect.borrow()
    }

    /// A control connection with id `id` is subscribed: a new epoch starts.
    fn connected(&self, id: i64) {
        self.redirect.send_modify(|r| {
            r.epoch += 1;
            r.id = Some(id);
            self.epoch.store(r.epoch, SeqCst);
        });
        self.up.store(true, SeqCst);
    }

    /// The control connection is lost: stop serving and filling, then flush L1 (the flush
    /// bumps every L1 generation, so no fill taken before lands afterwards). Returns false
    /// when it was already down.
    fn lost(&self, reason: &str) -> bool {
        let was_up = self.down(reason);
        if was_up {
            self.flush_for_loss();
        }
        was_up
    }

    /// Stops serving and filling L1 (a new epoch no connection is in); false when already
    /// down.
    fn down(&self, reason: &str) -> bool {
        if !self.up.swap(false, SeqCst) {
            return false;
        }
        self.redirect.send_modify(|r| {
            r.epoch += 1;
            r.id = None;
            self.epoch.store(r.epoch, SeqCst);
        });
        tracing::warn!("invalidation link down ({reason}): L1 bypassed");
        true
    }

    /// Flushes L1 after a loss (see [`Control::lost`]), or what the loss scope covers.
    fn flush_for_loss(&self) {
        let cause = match self.silent.swap(false, Relaxed) {
            true => SlotCause::LeaseExpired,
            false => SlotCause::NodeLost,
        };
        match self.loss_scope.get() {
            Some(scope) => scope(cause),
            None => self.l1.flush_all(),
        }
        self.counters.loss_flushes.fetch_add(1, Relaxed);
        if let Some(hook) = self.loss_flush_hook.get() {
            hook();
        }
    }

    /// An upstream connection reports that its redirect target `id` is gone
    /// (`tracking-redir-broken`): if that is the current control connection, it is lost.
    pub fn redirect_broken(&self, id: i64) {
        if self.redirect().id == Some(id) && self.lost("tracking redirect broken") {
            self.broken.notify_waiters();
        }
    }

    /// Keys another client wrote: evicted in every database, for every user.
    fn invalidate(&self, keys: &[bytes::Bytes]) {
        self.counters.messages.fetch_add(1, Relaxed);
        self.counters.keys.fetch_add(keys.len() as u64, Relaxed);
        self.l1.invalidate_everywhere(keys);
    }

    /// The upstream was flushed (FLUSHALL, FLUSHDB): everything goes.
    fn flushed(&self) {
        self.counters.messages.fetch_add(1, Relaxed);
        self.counters.upstream_flushes.fetch_add(1, Relaxed);
        self.l1.flush_all();
    }

    /// An upstream connection refused `CLIENT TRACKING`: it does not fill L1 (logged once).
    pub fn refused(&self, reply: &[u8]) {
        if !self.refusal_logged.swap(true, Relaxed) {
            let text = String::from_utf8_lossy(reply);
            tracing::warn!(
                "upstream refused CLIENT TRACKING ({}): L1 is not filled from such connections",
                text.trim()
            );
        }
    }
}

/// The upstream's fill gate is this control plane (see [`crate::upstream::gate`]).
impl FillGate for Control {
    fn enabled(&self) -> bool {
        Control::enabled(self)
    }
    fn broadcast(&self) -> bool {
        Control::broadcast(self)
    }
    fn may_fill(&self, conn_epoch: u64) -> bool {
        Control::may_fill(self, conn_epoch)
    }
    fn subscribe(&self) -> watch::Receiver<Redirect> {
        Control::subscribe(self)
    }
    fn redirect_broken(&self, id: i64) {
        Control::redirect_broken(self, id)
    }
    fn refused(&self, reply: &[u8]) {
        Control::refused(self, reply)
    }
}
