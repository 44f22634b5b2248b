//! The topology holder: the current slot map and its epoch, refreshed on demand at most
//! once per [`MIN_REFRESH_INTERVAL`] (callers that ask meanwhile share the last result),
//! with the reasons refreshes were asked for counted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::time::Instant;

use super::discover::{DiscoveryError, Found};
use super::{Discovery, SlotMap};

/// Refreshes run at most this often; a caller asking sooner gets the last one's result.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Why a refresh was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first discovery.
    Start,
    /// A `-MOVED` reply.
    Moved,
    /// An `-ASK` reply.
    Ask,
    /// A `-TRYAGAIN` reply.
    TryAgain,
    /// A `-CLUSTERDOWN` reply.
    ClusterDown,
    /// A request to a node timed out.
    Timeout,
    /// A connection to a node was lost.
    Disconnect,
    /// The periodic re-check.
    Periodic,
}

impl Reason {
    /// Every reason, in the order of [`TopologyFigures::requested`].
    pub const ALL: [Reason; 8] = [
        Reason::Start,
        Reason::Moved,
        Reason::Ask,
        Reason::TryAgain,
        Reason::ClusterDown,
        Reason::Timeout,
        Reason::Disconnect,
        Reason::Periodic,
    ];

    /// The label for INFO and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Moved => "moved",
            Reason::Ask => "ask",
            Reason::TryAgain => "tryagain",
            Reason::ClusterDown => "clusterdown",
            Reason::Timeout => "timeout",
            Reason::Disconnect => "disconnect",
            Reason::Periodic => "periodic",
        }
    }
}

/// What a refresh found.
#[derive(Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The map is as it was.
    Unchanged,
    /// The map changed; it is now at `epoch`, and `moved` are the slots whose owner
    /// changed (moved, dropped or newly assigned; empty when only nodes changed).
    Changed {
        /// The map's epoch after the change.
        epoch: u64,
        /// The slots that changed owner, in order.
        moved: Arc<[u16]>,
    },
    /// No view was taken (no seed answered, or no two nodes agreed): the map is kept.
    Failed(DiscoveryError),
}

impl std::fmt::Debug for Refreshed {
    /// A change shows how many slots moved and the first few, not up to 16384 numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refreshed::Unchanged => f.write_str("Unchanged"),
            Refreshed::Changed { epoch, moved } => {
                let shown = &moved[..moved.len().min(8)];
                let more = if moved.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                };
                write!(
                    f,
                    "Changed {{ epoch: {epoch}, moved: {} slots {shown:?}{more} }}",
                    moved.len()
                )
            }
            Refreshed::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

/// The topology's figures at one moment (for INFO and `/metrics` later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyFigures {
    /// The map's epoch (bumped by each change).
    pub epoch: u64,
    /// Nodes in the map.
    pub nodes: u64,
    /// Slots with an owner.
    pub slots_assigned: u64,
    /// Refreshes asked for, by reason (in the order of [`Reason::ALL`]).
    pub requested: [u64; 8],
    /// Refreshes run (exchanges with the cluster).
    pub refreshes: u64,
    /// Refreshes that kept the map for lack of an answer or of agreement.
    pub failed: u64,
    /// Views refused because they took slots and no second node agreed.
    pub disputed: u64,
    /// Slot owner changes taken, summed over refreshes.
    pub slots_moved: u64,
}

/// The current map of a cluster, its epoch, and the rate-limited refresh.
pub struct Topology {
    discovery: Discovery,
    map: RwLock<Arc<SlotMap>>,
    epoch: AtomicU64,
    /// When the last refresh finished and what it found; held while one runs.
    last: tokio::sync::Mutex<Option<(Instant, Refreshed)>>,
    requested: [AtomicU64; 8],
    refreshes: AtomicU64,
    failed: AtomicU64,
    disputed: AtomicU64,
    slots_moved: AtomicU64,
}

impl Topology {
    /// A topology with an empty map (epoch 0), discovering through `discovery`.
    pub fn new(discovery: Discovery) -> Topology {
        Topology {
            discovery,
            map: RwLock::new(Arc::new(SlotMap::empty())),
            epoch: AtomicU64::new(0),
            last: tokio::sync::Mutex::new(None),
            requested: Default::default(),
            refreshes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            disputed: AtomicU64::new(0),
            slots_moved: AtomicU64::new(0),
        }
    }

    /// The current map.
    pub fn map(&self) -> Arc<SlotMap> {
        self.map.read().clone()
    }

    /// The current map's epoch: 0 before the first view, bumped by each change.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// The discovery this topology asks.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Refreshes the map for `reason`, unless a refresh finished less than
    /// [`MIN_REFRESH_INTERVAL`] ago or finished while this call waited for it: then its
    /// result is returned and the cluster is not asked again.
    pub async fn refresh(&self, reason: Reason) -> Refreshed {
        self.requested[reason as usize].fetch_add(1, Relaxed);
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((finished, result)) = &*last {
            if *finished >= asked || finished.elapsed() < MIN_REFRESH_INTERVAL {
                return result.clone();
            }
        }
        let result = self.run().await;
        *last = Some((Instant::now(), result.clone()));
        result
    }

    /// One refresh: discovery against the current map, and the map replaced if it changed.
    async fn run(&self) -> Refreshed {
        self.refreshes.fetch_add(1, Relaxed);
        let current = self.map();
        let found = match self.discovery.discover(&current).await {
            Ok(found) => found,
            Err(e) => {
                self.failed.fetch_add(1, Relaxed);
                if matches!(e, DiscoveryError::Disputed(_)) {
                    self.disputed.fetch_add(1, Relaxed);
                }
                tracing::warn!("cluster topology kept: {e}");
                return Refreshed::Failed(e);
            }
        };
        let Found {
            map,
            from,
            confirmed_by,
            disputed,
        } = found;
        if disputed {
            self.disputed.fetch_add(1, Relaxed);
        }
        if *current == map {
            return Refreshed::Unchanged;
        }
        let moved: Arc<[u16]> = current.diff(&map).into();
        self.slots_moved.fetch_add(moved.len() as u64, Relaxed);
        *self.map.write() = Arc::new(map);
        let epoch = self.epoch.fetch_add(1, Relaxed) + 1;
        tracing::info!(
            epoch,
            slots_moved = moved.len(),
            from = %from,
            confirmed_by = confirmed_by.as_deref().unwrap_or("-"),
            "cluster topology changed"
        );
        Refreshed::Changed { epoch, moved }
    }

    /// The figures now.
    pub fn figures(&self) -> TopologyFigures {
        let map = self.map();
        TopologyFigures {
            epoch: self.epoch(),
            nodes: map.nodes().len() as u64,
            slots_assigned: map.assigned() as u64,
            requested: std::array::from_fn(|i| self.requested[i].load(Relaxed)),
            refreshes: self.refreshes.load(Relaxed),
            failed: self.failed.load(Relaxed),
            disputed: self.disputed.load(Relaxed),
            slots_moved: self.slots_moved.load(Relaxed),
        }
    }
}
