//! The services as a [`Router`]: one node, the services' own upstream, its L1 coherence
//! kept by the control plane; or for a Redis Cluster the node that owns a request's slot,
//! L1 coherent per node and per slot (a node's loss ends its own slots' entries, see
//! `app/build/cluster.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::error::UpstreamError;
use crate::services::Services;
use crate::upstream::cluster::Reason;
use crate::upstream::{Route, Router, Upstream};

/// The services route through their one upstream.
impl Router for Services {
    type Pool = <Upstream as Router>::Pool;
    type Dedicated = <Upstream as Router>::Dedicated;

    fn try_pool(&self, route: Route) -> Result<Arc<Self::Pool>, UpstreamError> {
        self.upstream.try_pool(route)
    }

    fn pool(&self, route: Route) -> Arc<Self::Pool> {
        self.upstream.pool(route)
    }

    #[inline]
    fn link_up(&self) -> bool {
        match &self.cluster {
            Some(nodes) => nodes.link_up(),
            None => self.upstream.link_up(),
        }
    }

    /// In a Redis Cluster every entry is served only while its slot's epoch holds: a node
    /// whose control connection is down ended its slots and fills nothing, the others
    /// serve on.
    #[inline]
    fn coherent(&self) -> bool {
        self.cluster.is_some() || self.control.serving()
    }

    #[inline]
    fn slotted(&self) -> bool {
        self.cluster.is_some()
    }

    /// The owner's pool; the first seed's while no node owns the slot (it answers with
    /// the redirect or `-CLUSTERDOWN`).
    fn pool_for(&self, route: Route, slot: u16) -> Arc<Self::Pool> {
        match self.cluster.as_ref().and_then(|c| c.pool(route, slot)) {
            Some(pool) => pool,
            None => self.upstream.pool(route),
        }
    }

    /// A MOVED refreshes the topology in the background; a node not known yet is waited for
    /// one refresh.
    fn redirected(
        &self,
        route: Route,
        address: &str,
        moved: bool,
    ) -> impl std::future::Future<Output = Option<Arc<Self::Pool>>> + Send {
        let cluster = self.cluster.clone();
        let address = address.to_owned();
        async move {
            let nodes = cluster?;
            let reason = match moved {
                true => Reason::Moved,
                false => Reason::Ask,
            };
            if moved {
                let refreshing = nodes.clone();
                crate::lifecycle::spawn(async move { refreshing.refresh(reason).await });
            }
            if let Some(node) = nodes.at(&address) {
                return Some(node.upstream.pool(route));
            }
            nodes.refresh(reason).await;
            Some(nodes.at(&address)?.upstream.pool(route))
        }
    }

    /// Every primary's pool, by address (none while no node is known).
    fn primaries(&self, route: Route) -> Vec<Arc<Self::Pool>> {
        let Some(cluster) = self.cluster.as_ref() else {
            return vec![self.upstream.pool(route)];
        };
        let mut nodes = cluster.nodes();
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        nodes.iter().map(|n| n.upstream.pool(route)).collect()
    }

    fn refresh_topology(&self, reason: Reason) {
        if let Some(nodes) = self.cluster.clone() {
            crate::lifecycle::spawn(async move { nodes.refresh(reason).await });
        }
    }

    fn node_of(&self, slot: u16) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.node_of(slot))
    }

    /// On the slot's owner; the first seed's for a command without a key (or while no
    /// node owns the slot: it answers with the redirect or `-CLUSTERDOWN`).
    fn dedicated(
        &self,
        route: Route,
        slot: Option<u16>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Self::Dedicated, Option<u64>), UpstreamError>> + Send
    {
        let owner = slot.and_then(|slot| self.cluster.as_ref()?.owner(slot));
        let upstream = match owner {
            Some(node) => node.upstream.clone(),
            None => self.upstream.clone(),
        };
        async move { upstream.dedicated_with_id(route, timeout).await }
    }

    fn generation(&self) -> u64 {
        self.upstream.generation()
    }

    fn switched(&self, opened_in: u64) -> impl std::future::Future<Output = ()> + Send {
        self.upstream.switched(opened_in)
    }
}
