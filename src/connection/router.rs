//! The services as a [`Router`]: one node, the services' own upstream, its L1 coherence
//! kept by the control plane.

use std::sync::Arc;
use std::time::Duration;

use crate::error::UpstreamError;
use crate::services::Services;
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
        self.upstream.link_up()
    }

    #[inline]
    fn coherent(&self) -> bool {
        self.control.serving()
    }

    fn dedicated(
        &self,
        route: Route,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Self::Dedicated, Option<u64>), UpstreamError>> + Send
    {
        self.upstream.dedicated_with_id(route, timeout)
    }

    fn generation(&self) -> u64 {
        self.upstream.generation()
    }

    fn switched(&self, opened_in: u64) -> impl std::future::Future<Output = ()> + Send {
        self.upstream.switched(opened_in)
    }
}
