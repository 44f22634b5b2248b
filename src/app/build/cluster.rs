//! Building the nodes of a `redis+cluster://` upstream: the topology found through the
//! seeds, and for each primary an `Upstream` with its own `Control` whose control task runs
//! until the node is dropped.

use std::sync::Arc;

use crate::cache::L1;
use crate::config::Config;
use crate::control::{Control, ControlTarget};
use crate::metrics::Stats;
use crate::nodes::{Node, Nodes};
use crate::upstream::cluster::{ClusterOptions, Discovery, Topology};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::{LinkEvent, Target};
use crate::warm::Warmer;

/// What every node is built from.
pub(super) struct Parts<'a> {
    pub(super) config: &'a Config,
    /// The upstream's target: every node's is this one at the node's address.
    pub(super) target: &'a Target,
    pub(super) stats: &'a Arc<Stats>,
    pub(super) l1: &'a Arc<L1>,
    pub(super) warm: &'a Arc<Warmer>,
    /// The first seed's upstream: every node takes its identities.
    pub(super) seed: &'a Arc<crate::upstream::Upstream>,
}

/// The nodes of the cluster `seeds` lead to (none until the first refresh). A node's link
/// loss and return flush L1 as the single upstream's do; its control connection gates the
/// fills of its own data connections.
pub(super) fn nodes(seeds: &[String], p: Parts<'_>) -> Arc<Nodes> {
    let config = p.config;
    let options = ClusterOptions {
        seeds: seeds.to_vec(),
        credentials: p.target.credentials.clone(),
        timeout: config.connect_timeout,
    };
    let topology = Arc::new(Topology::new(Discovery::new(
        options,
        p.target.outbound.clone(),
    )));
    let seed = p.seed.clone();
    let (template, stats, l1, warm) = (
        p.target.clone(),
        p.stats.clone(),
        p.l1.clone(),
        p.warm.clone(),
    );
    let (mode, channel) = (config.tracking, config.invalidation_channel.clone());
    let keep_on_loss = config.serve_stale_when_down;
    let (heartbeat, connect_timeout) = (config.invalidation_heartbeat, config.connect_timeout);
    let factory = Box::new(move |address: &str| {
        let endpoint = Endpoint::fixed(address);
        let control = Control::new(mode, &channel, l1.clone());
        let loss_warm = warm.clone();
        control.on_loss_flush(Box::new(move || loss_warm.flushed_for_loss()));
        let (hook_l1, hook_warm) = (l1.clone(), warm.clone());
        let hook = Box::new(move |event| match event {
            LinkEvent::Lost if keep_on_loss => {}
            LinkEvent::Lost | LinkEvent::Up => {
                hook_l1.flush_all();
                hook_warm.flushed_for_loss();
            }
        });
        // A node takes the first seed's identities (a client that AUTHs as another ACL
        // user is that user on every node); the seed forgets them, kept alive while any
        // node's pool uses one.
        let forget = Box::new(|_| {});
        let target = Target {
            endpoint: endpoint.clone(),
            ..template.clone()
        };
        let upstream = Arc::new(
            crate::upstream::Upstream::new(target, stats.clone(), hook, forget, control.clone())
                .with_identities_of(&seed),
        );
        let stop = crate::lifecycle::stopping().child_token();
        if control.link_needed() {
            let control_target = ControlTarget {
                endpoint,
                outbound: template.outbound.clone(),
                credentials: template.credentials.clone(),
                connect_timeout,
                heartbeat,
                keep_when_down: keep_on_loss,
            };
            let (run, stopped) = (
                crate::control::run(control.clone(), control_target),
                stop.clone(),
            );
            crate::lifecycle::spawn(async move {
                tokio::select! {
                    _ = run => {}
                    _ = stopped.cancelled() => {}
                }
            });
        }
        Node {
            address: address.to_owned(),
            upstream,
            control,
            stop,
        }
    });
    Nodes::new(topology, factory)
}
