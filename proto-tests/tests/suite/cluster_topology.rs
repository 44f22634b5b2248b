//! Cluster topology (`nearcache::upstream::cluster`) against a real Redis Cluster of three
//! primaries and three replicas: discovery from seeds (a seed that is down is skipped) gives
//! the map every node agrees on, through `CLUSTER SHARDS` and through the `CLUSTER SLOTS`
//! fallback (where the owners agree; SLOTS leaves out replicas not yet in sync), with
//! endpoints as the cluster prefers them (`?`: the seed's host; hostnames); a moved slot and a failover show up in a refresh with a diff naming exactly
//! the slots that changed owner; a view that drops slots is refused unless a second node
//! agrees; concurrent refreshes share one exchange; key slots equal `CLUSTER KEYSLOT`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nearcache::upstream::cluster::{
    slot, ClusterOptions, Discovery, DiscoveryError, Reason, Refreshed, Role, SlotMap, Topology,
    MIN_REFRESH_INTERVAL,
};
use nearcache::upstream::outbound::Outbound;
use nearcache::upstream::{CredentialSource, Credentials};
use proto_tests::cluster::{shards_reply, ClusterGroup, FakeClusterNode, View};
use proto_tests::*;

/// A runtime for the library's async discovery.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A topology discovering from `seeds` in order, as `user` (with password `pw`) if given.
fn topology(seeds: Vec<String>, user: Option<&str>) -> Arc<Topology> {
    let credentials = CredentialSource::fixed(user.map(|u| Credentials {
        user: Some(Bytes::copy_from_slice(u.as_bytes())),
        pass: Bytes::from_static(b"pw"),
    }));
    let options = ClusterOptions {
        seeds,
        credentials,
        timeout: Duration::from_secs(2),
    };
    Arc::new(Topology::new(Discovery::new(options, Outbound::new())))
}

/// The port of an `127.0.0.1:<port>` address.
fn port(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// A map as the harness's [`View`] (owners and replicas by port), to compare with what the
/// nodes say.
fn as_view(map: &SlotMap) -> View {
    let mut owners = vec![0; nearcache::upstream::cluster::SLOTS];
    for (first, last, node) in map.ranges() {
        let p = port(&map.nodes()[node].address);
        owners[usize::from(first)..=usize::from(last)].fill(p);
    }
    let mut replicas = BTreeMap::new();
    for n in map.nodes().iter().filter(|n| n.role == Role::Replica) {
        let primary = map
            .nodes()
            .iter()
            .find(|p| p.role == Role::Primary && p.shard == n.shard)
            .expect("a replica's primary");
        replicas.insert(port(&n.address), port(&primary.address));
    }
    View { owners, replicas }
}

/// An address nothing listens on.
fn down_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn discovery_skips_a_down_seed_and_gives_the_map_every_node_agrees_on() {
    let cluster = ClusterGroup::start();
    eprintln!("cluster started in {:?}", cluster.started_in);
    let mut seeds = vec![down_address()];
    seeds.extend(cluster.addresses());
    let topology = topology(seeds, None);
    let refreshed = runtime().block_on(topology.refresh(Reason::Start));
    let Refreshed::Changed { epoch, moved } = refreshed else {
        panic!("the first refresh found no map: {refreshed:?}");
    };
    assert_eq!((epoch, moved.len()), (1, 16384));
    let map = topology.map();
    assert_eq!(as_view(&map), cluster.agreed(), "{map:?}");
    for node in cluster.nodes() {
        assert_eq!(as_view(&map), cluster.view_of(node.port()));
    }
    assert!(map.nodes().iter().all(|n| n.id.len() == 40), "{map:?}");
    // Through SHARDS: the second seed answered it, SLOTS was never needed.
    let seed = cluster.node(cluster.nodes()[0].port());
    assert_eq!(commandstat_calls(seed, "cluster|shards"), 1);
    assert_eq!(commandstat_calls(seed, "cluster|slots"), 0);
    let figures = topology.figures();
    assert_eq!((figures.nodes, figures.slots_assigned), (6, 16384));
    assert_eq!(figures.requested[0], 1);

    // No seed answering keeps the (empty) map and says why.
    let nowhere = self::topology(vec![down_address(), down_address()], None);
    let refreshed = runtime().block_on(nowhere.refresh(Reason::Start));
    assert!(
        matches!(refreshed, Refreshed::Failed(DiscoveryError::Unreachable(_))),
        "{refreshed:?}"
    );
    assert!(nowhere.map().is_empty());
    assert_eq!(nowhere.epoch(), 0);
}

#[test]
fn discovery_falls_back_to_cluster_slots_when_the_acl_refuses_shards() {
    let cluster = ClusterGroup::start();
    for node in cluster.nodes() {
        let reply = node.conn().cmd_str(&[
            "ACL",
            "SETUSER",
            "noshards",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-cluster|shards",
        ]);
        assert_reply(&reply, b"+OK\r\n", "ACL SETUSER");
    }
    let topology = topology(cluster.addresses(), Some("noshards"));
    let refreshed = runtime().block_on(topology.refresh(Reason::Start));
    assert!(
        matches!(refreshed, Refreshed::Changed { .. }),
        "{refreshed:?}"
    );
    // SLOTS lists a replica only once its primary has heard it is in sync (SHARDS lists
    // it "loading" before): the owners are the same, the replicas a subset.
    let (found, agreed) = (as_view(&topology.map()), cluster.agreed());
    assert_eq!(found.ranges(), agreed.ranges());
    assert!(
        found
            .replicas
            .iter()
            .all(|(r, p)| agreed.replicas.get(r) == Some(p)),
        "{found:?} vs {agreed:?}"
    );
    let seed = &cluster.nodes()[0];
    assert_eq!(commandstat_calls(seed, "cluster|slots"), 1);
    assert_eq!(
        commandstat_calls(seed, "cluster|shards"),
        0,
        "refused, not run"
    );
}

/// `CONFIG SET name value` on every node of `cluster`.
fn config_set_all(cluster: &ClusterGroup, name: &str, value: &str) {
    for node in cluster.nodes() {
        let reply = node.conn().cmd_str(&["CONFIG", "SET", name, value]);
        assert_reply(&reply, b"+OK\r\n", name);
    }
}

#[test]
fn endpoints_follow_the_cluster_preferred_endpoint_type() {
    let cluster = ClusterGroup::start();
    let rt = runtime();
    // `unknown-endpoint`: every endpoint is `?`, so each node is reached at the host the
    // seed was reached at (here `localhost`, where the nodes themselves say 127.0.0.1).
    config_set_all(
        &cluster,
        "cluster-preferred-endpoint-type",
        "unknown-endpoint",
    );
    let seeds = cluster
        .nodes()
        .iter()
        .map(|n| format!("localhost:{}", n.port()))
        .collect();
    let topo = topology(seeds, None);
    rt.block_on(topo.refresh(Reason::Start));
    let map = topo.map();
    assert_eq!(map.nodes().len(), 6, "{map:?}");
    for node in map.nodes() {
        assert_eq!(node.address, format!("localhost:{}", node.port.unwrap()));
    }
    assert_eq!(as_view(&map).ranges(), cluster.agreed().ranges());

    // `hostname`: each node's announced hostname, though the seeds are given by IP; the
    // hostnames spread by gossip, so refresh until every node is named by one.
    config_set_all(&cluster, "cluster-announce-hostname", "localhost");
    config_set_all(&cluster, "cluster-preferred-endpoint-type", "hostname");
    let topo = topology(cluster.addresses(), None);
    poll_until(
        Duration::from_secs(15),
        "every node named by its hostname",
        || {
            let map = rt.block_on(async {
                tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
                topo.refresh(Reason::Periodic).await;
                topo.map()
            });
            map.nodes().len() == 6
                && map.nodes().iter().all(|n| {
                    n.hostname.as_deref() == Some("localhost")
                        && n.address == format!("localhost:{}", n.port.unwrap())
                })
        },
    );
    assert_eq!(as_view(&topo.map()).ranges(), cluster.agreed().ranges());
    // The addresses it names are reachable: each node's own view through them agrees.
    for node in topo.map().nodes() {
        let view = rt.block_on(topo.discovery().view(&node.address));
        assert_eq!(view.expect("a view").diff(&topo.map()), Vec::<u16>::new());
    }
}

#[test]
fn a_moved_slot_shows_its_new_owner_and_the_diff_names_only_it() {
    let cluster = ClusterGroup::start();
    let topology = topology(cluster.addresses(), None);
    let rt = runtime();
    rt.block_on(topology.refresh(Reason::Start));
    let key = "{moving}k";
    let s = slot(key.as_bytes());
    let from = cluster.owner(s);
    let mut owner = cluster.node(from).conn();
    assert_reply(&owner.cmd_str(&["SET", key, "v"]), b"+OK\r\n", "SET");
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    cluster.move_slot(s, to);
    let refreshed = rt.block_on(async {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        topology.refresh(Reason::Moved).await
    });
    let Refreshed::Changed { epoch, moved } = refreshed else {
        panic!("the move was not seen: {refreshed:?}");
    };
    assert_eq!((epoch, &moved[..]), (2, &[s][..]));
    let map = topology.map();
    assert_eq!(port(map.owner_address(s).unwrap()), to);
    assert_eq!(as_view(&map), cluster.agreed());
    assert_reply(
        &cluster.node(to).conn().cmd_str(&["GET", key]),
        &bulk(b"v"),
        "the key moved with its slot",
    );
    assert_eq!(topology.figures().slots_moved, 16384 + 1);
}

#[test]
fn after_cluster_failover_the_replica_owns_the_primary_slots() {
    let cluster = ClusterGroup::start();
    let topology = topology(cluster.addresses(), None);
    let rt = runtime();
    rt.block_on(topology.refresh(Reason::Start));
    let before = topology.map();
    let primary = cluster.owner(0);
    let replica = cluster.replica_of(primary);
    cluster.failover(replica);
    let refreshed = rt.block_on(async {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        topology.refresh(Reason::Disconnect).await
    });
    let Refreshed::Changed { moved, .. } = refreshed else {
        panic!("the failover was not seen: {refreshed:?}");
    };
    let owned: Vec<u16> = (0..16384u16)
        .filter(|&s| port(before.owner_address(s).unwrap()) == primary)
        .collect();
    assert_eq!(&moved[..], &owned[..], "exactly the old primary's slots");
    let map = topology.map();
    assert!(owned
        .iter()
        .all(|&s| port(map.owner_address(s).unwrap()) == replica));
    assert_eq!(as_view(&map), cluster.agreed());
}

#[test]
fn a_view_that_drops_slots_is_refused_unless_a_second_node_agrees() {
    // A seed of the real cluster that turns into a node whose view drops every slot but
    // its own 101: the real nodes of the map disagree, so the map stays.
    let cluster = ClusterGroup::start();
    let liar = FakeClusterNode::start();
    let mut seeds = vec![liar.address()];
    seeds.extend(cluster.addresses());
    let topo = topology(seeds, None);
    let rt = runtime();
    rt.block_on(topo.refresh(Reason::Start));
    let full = topo.map();
    assert_eq!(as_view(&full), cluster.agreed());
    liar.answer(Some(shards_reply(&[(&[(0, 100)], liar.port())])));
    let refreshed = rt.block_on(async {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        topo.refresh(Reason::Periodic).await
    });
    assert_eq!(refreshed, Refreshed::Unchanged);
    assert_eq!(*topo.map(), *full, "the map is not emptied");
    assert!(liar.asked() >= 1, "the liar was asked first");
    assert_eq!(topo.figures().disputed, 1);

    // Two fake nodes: a view that drops slots is taken once the second agrees, and kept
    // out while the second disagrees or does not answer.
    let (a, b) = (FakeClusterNode::start(), FakeClusterNode::start());
    let both = shards_reply(&[(&[(0, 8191)], a.port()), (&[(8192, 16383)], b.port())]);
    let dropped = shards_reply(&[(&[(0, 8191)], a.port())]);
    a.answer(Some(both.clone()));
    b.answer(Some(both));
    let topo = topology(vec![a.address(), b.address()], None);
    let again = |topo: &Topology| {
        rt.block_on(async {
            tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
            topo.refresh(Reason::Periodic).await
        })
    };
    assert!(matches!(again(&topo), Refreshed::Changed { epoch: 1, .. }));
    a.answer(Some(dropped.clone()));
    assert_eq!(
        again(&topo),
        Refreshed::Unchanged,
        "b still serves its slots"
    );
    assert_eq!(topo.map().assigned(), 16384);
    b.answer(None);
    let refused = again(&topo);
    assert!(
        matches!(refused, Refreshed::Failed(DiscoveryError::Disputed(_))),
        "{refused:?}"
    );
    assert_eq!(topo.map().assigned(), 16384);
    b.answer(Some(dropped));
    let Refreshed::Changed { epoch, moved } = again(&topo) else {
        panic!("two nodes agreed, yet the view was not taken");
    };
    assert_eq!(epoch, 2);
    assert_eq!(&moved[..], &(8192..16384u16).collect::<Vec<_>>()[..]);
    assert_eq!(topo.map().assigned(), 8192);
}

#[test]
fn concurrent_refreshes_share_one_exchange() {
    let cluster = ClusterGroup::start();
    let topo = topology(cluster.addresses(), None);
    let seed = &cluster.nodes()[0];
    let rt = runtime();
    rt.block_on(topo.refresh(Reason::Start));
    let results = rt.block_on(async {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        reset_stats(seed);
        let asked = topo.discovery().asked();
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let topo = topo.clone();
                tokio::spawn(async move { topo.refresh(Reason::Moved).await })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.expect("a refresh"));
        }
        assert_eq!(topo.discovery().asked(), asked + 1, "one view asked");
        results
    });
    assert!(
        results.iter().all(|r| *r == Refreshed::Unchanged),
        "{results:?}"
    );
    assert_eq!(commandstat_calls(seed, "cluster|shards"), 1);
    let figures = topo.figures();
    assert_eq!(figures.refreshes, 2);
    assert_eq!(figures.requested[Reason::Moved as usize], 32);
    // Past the interval, the next call asks again.
    rt.block_on(async {
        tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
        topo.refresh(Reason::Timeout).await
    });
    assert_eq!(commandstat_calls(seed, "cluster|shards"), 2);
    assert_eq!(topo.figures().refreshes, 3);
}

#[test]
fn keyslot_matches_cluster_keyslot_for_random_keys() {
    let cluster = ClusterGroup::start();
    let mut rng = Rng(0x5eed_c1a5);
    let alphabet = b"ab{}{}xyz\x00\xff:.";
    for i in 0..400 {
        let len = rng.below(24);
        let mut key: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        if i % 4 == 0 {
            key = [b"{user", i.to_string().as_bytes(), b"}.following"].concat();
        }
        assert_eq!(
            slot(&key),
            cluster.keyslot(&key),
            "slot of {}",
            key.escape_ascii()
        );
    }
}
