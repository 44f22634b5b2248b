//! Building the nodes of a `redis+cluster://` upstream: the topology found through the
//! seeds, and for each primary an `Upstream` with its own `Control` whose control task runs
//! until the node is dropped. Coherence is per node and per slot: L1 entries keep their
//! slot's epoch, and a node whose control connection is lost or silent past its heartbeat
//! ends its own slots' entries, not all of L1. A node's control connection tracks without
//! the bus (Redis Cluster hands a classic `PUBLISH` to every node's subscribers: the bus
//! rides on the services' control connection only, so each message arrives once). A node's
//! connection lost, refused or silent asks a topology refresh.

use std::sync::{Arc, OnceLock, Weak};

use crate::cache::{SlotCause, L1};
use crate::config::Config;
use crate::control::{Control, ControlTarget};
use crate::metrics::Stats;
use crate::nodes::{Node, Nodes};
use crate::upstream::cluster::{ClusterOptions, Discovery, Reason, Topology};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::{Fault, LinkEvent, Target};
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

/// The nodes of the cluster `seeds` lead to (none until the first refresh). A node's control
/// connection gates the fills of its own data connections; its loss (or a heartbeat it
/// leaves unanswered: the node's lease) ends the node's slots in L1; a data connection that
/// ends takes what it filled (its fence, see [`crate::cache::fences`]). `seed_control` (the
/// services' own control connection, to the first seed, whose pools serve keyless commands
/// and warming) ends the first seed's slots when lost.
pub(super) fn nodes(seeds: &[String], p: Parts<'_>, seed_control: &Control) -> Arc<Nodes> {
    let config = p.config;
    p.l1.use_slots();
    // Set once the nodes exist: a node's loss asks them which slots it owns.
    let cell: Arc<OnceLock<Weak<Nodes>>> = Arc::new(OnceLock::new());
    let scope = {
        let (cell, l1) = (cell.clone(), p.l1.clone());
        move |address: String| {
            let (cell, l1) = (cell.clone(), l1.clone());
            Box::new(
                move |cause: SlotCause| match cell.get().and_then(Weak::upgrade) {
                    Some(nodes) => {
                        match nodes.slots_of(&address) {
                            slots if slots.is_empty() && nodes.at(&address).is_none() => {
                                l1.bump_slots(0..crate::cache::fences::SLOTS as u16, cause)
                            }
                            slots => l1.bump_slots(slots, cause),
                        }
                        // The node went away or went silent: the topology may have changed.
                        let reason = match cause {
                            SlotCause::LeaseExpired => Reason::Timeout,
                            _ => Reason::Disconnect,
                        };
                        refresh(&nodes, reason);
                    }
                    None => l1.flush_all(),
                },
            ) as crate::control::LossScope
        }
    };
    if let Some(seed) = seeds.first() {
        seed_control.scope_losses(scope(seed.clone()));
    }
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
    let (heartbeat, connect_timeout) = (config.invalidation_heartbeat, config.connect_timeout);
    let faults_of = cell.clone();
    let factory = Box::new(move |address: &str| {
        let endpoint = Endpoint::fixed(address);
        let control = Control::tracking_only(mode, &channel, l1.clone());
        let loss_warm = warm.clone();
        control.on_loss_flush(Box::new(move || loss_warm.flushed_for_loss()));
        control.scope_losses(scope(address.to_owned()));
        // A lost data connection ends what it filled (its fence); a node that went away
        // took its control connection with it, which ended its slots. Whether some node
        // is reachable is taken again on every event, the first connection's `Reachable`
        // included (a task: `Lost` is heard before the link's own state has moved).
        let links_of = faults_of.clone();
        let hook = Box::new(move |_: LinkEvent| {
            if let Some(nodes) = links_of.get().and_then(std::sync::Weak::upgrade) {
                crate::lifecycle::spawn(async move { nodes.links_changed() });
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
        // A node's connection lost, refused or silent asks a refresh (rate-limited): a
        // killed primary's replica is followed without waiting for the periodic one.
        let faults = faults_of.clone();
        upstream.on_faults(Box::new(move |fault| {
            if let Some(nodes) = faults.get().and_then(Weak::upgrade) {
                let reason = match fault {
                    Fault::Disconnect => Reason::Disconnect,
                    Fault::Timeout => Reason::Timeout,
                };
                refresh(&nodes, reason);
            }
        }));
        let stop = crate::lifecycle::stopping().child_token();
        if control.link_needed() {
            let control_target = ControlTarget {
                endpoint,
                outbound: template.outbound.clone(),
                credentials: template.credentials.clone(),
                connect_timeout,
                heartbeat,
                // A node's entries are never served without its invalidations (its slots
                // are ended at once; the other nodes' entries stay).
                keep_when_down: false,
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
    let nodes = Nodes::new(topology, factory, p.l1.clone());
    let _ = cell.set(Arc::downgrade(&nodes));
    nodes
}

/// Asks `nodes` for a topology refresh in the background (rate-limited by the topology).
fn refresh(nodes: &Arc<Nodes>, reason: Reason) {
    let nodes = nodes.clone();
    crate::lifecycle::spawn(async move { nodes.refresh(reason).await });
}
