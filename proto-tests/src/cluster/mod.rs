//! `ClusterGroup`: a Redis Cluster of three primaries and three replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`) on free
//! ports whose cluster bus ports (port + 10000) are free too; started and waited for until
//! every node says `cluster_state:ok` and all six agree on the slots and the replicas. With
//! the faults the cluster suites need: moving one slot between primaries and `CLUSTER
//! FAILOVER` on a replica. Every node is killed on drop.

mod fake;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{bulk_reply, int_reply, Conn};
use crate::redis::Redis;
use crate::{free_port, show};

pub use fake::{shards_reply, FakeClusterNode};

/// How many slots a cluster has.
pub const SLOTS: usize = 16384;
/// Bound on the nodes agreeing after a start, a slot move or a failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `cluster-node-timeout`: short, so gossip spreads changes fast, yet long enough that a
/// busy test machine does not make a node look failed.
const NODE_TIMEOUT_MS: &str = "3000";

/// What one node says about the cluster: each slot's owner (a primary's port, 0 for none)
/// and each replica's primary (ports).
#[derive(Clone, PartialEq, Eq)]
pub struct View {
    /// The owner's port of each slot (0: unassigned).
    pub owners: Vec<u16>,
    /// Replica port -> its primary's port.
    pub replicas: BTreeMap<u16, u16>,
}

impl std::fmt::Debug for View {
    /// The owned ranges and the replicas, not 16384 owners.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("ranges", &self.ranges())
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl View {
    /// The owned ranges in slot order: `(first, last, owner port)`.
    pub fn ranges(&self) -> Vec<(u16, u16, u16)> {
        let mut out: Vec<(u16, u16, u16)> = Vec::new();
        for (slot, &port) in self.owners.iter().enumerate() {
            let slot = slot as u16;
            match out.last_mut() {
                _ if port == 0 => {}
                Some((_, last, p)) if *last + 1 == slot && *p == port => *last = slot,
                _ => out.push((slot, slot, port)),
            }
        }
        out
    }
}

/// Six cluster nodes: three primaries with a replica each.
pub struct ClusterGroup {
    nodes: Vec<Redis>,
    /// How long starting, joining and settling took.
    pub started_in: Duration,
}

impl ClusterGroup {
    /// Starts six nodes, joins them with `redis-cli --cluster create ... --cluster-replicas
    /// 1` and waits until every node agrees on a complete map.
    pub fn start() -> ClusterGroup {
        let started = Instant::now();
        let mut nodes = Vec::new();
        for port in bus_free_ports(6) {
            let conf = format!("nodes-{port}.conf");
            nodes.push(Redis::start_on(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    NODE_TIMEOUT_MS,
                    // A replica syncs at once (the default waits 5 s for more replicas):
                    // one that never synced cannot be promoted.
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            ));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut group = ClusterGroup {
            nodes,
            started_in: Duration::ZERO,
        };
        group.settle(|v| v.owners.iter().all(|&p| p != 0) && v.replicas.len() == 3);
        group.replicas_synced();
        group.started_in = started.elapsed();
        group
    }

    /// The six nodes.
    pub fn nodes(&self) -> &[Redis] {
        &self.nodes
    }

    /// The node listening on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// `127.0.0.1:<port>` of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The node's id (`CLUSTER MYID`).
    pub fn id(&self, port: u16) -> String {
        let reply = self.node(port).conn().cmd_str(&["CLUSTER", "MYID"]);
        String::from_utf8(bulk_reply(&reply).expect("an id")).expect("a text id")
    }

    /// What the node on `port` says (its `CLUSTER NODES`).
    pub fn view_of(&self, port: u16) -> View {
        let reply = self.node(port).conn().cmd_str(&["CLUSTER", "NODES"]);
        let text = bulk_reply(&reply).unwrap_or_else(|| panic!("CLUSTER NODES: {}", show(&reply)));
        parse_nodes(&String::from_utf8_lossy(&text))
    }

    /// The view every node agrees on now (waits until they do and say `cluster_state:ok`).
    pub fn agreed(&self) -> View {
        self.settle(|_| true)
    }

    /// The port of the primary that owns `slot`, as all nodes agree.
    pub fn owner(&self, slot: u16) -> u16 {
        self.agreed().owners[usize::from(slot)]
    }

    /// The port of a replica of the primary on `primary`.
    pub fn replica_of(&self, primary: u16) -> u16 {
        let view = self.agreed();
        *view
            .replicas
            .iter()
            .find(|(_, &p)| p == primary)
            .unwrap_or_else(|| panic!("{primary} has no replica: {view:?}"))
            .0
    }

    /// The ports of the three primaries.
    pub fn primaries(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.agreed().owners;
        ports.sort_unstable();
        ports.dedup();
        ports.retain(|&p| p != 0);
        ports
    }

    /// Moves `slot` to the primary on `to` as `redis-cli --cluster reshard` does: `SETSLOT
    /// IMPORTING` on the target, `MIGRATING` on the source, `MIGRATE` of its keys, `SETSLOT
    /// NODE` on the target, the source and the other primaries; then waits until every
    /// node agrees.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is on {to} already");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let s = slot.to_string();
        let ok = |port: u16, args: &[&str]| {
            let reply = self.node(port).conn().cmd_str(args);
            assert_eq!(reply, b"+OK\r\n", "{args:?} on {port}: {}", show(&reply));
        };
        ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        let mut source = self.node(from).conn();
        loop {
            let reply = source.cmd_str(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys = bulks(&reply);
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let reply = source.cmd_str(&args);
            assert_eq!(reply, b"+OK\r\n", "MIGRATE: {}", show(&reply));
        }
        let mut order = vec![to, from];
        order.extend(
            self.primaries()
                .into_iter()
                .filter(|p| *p != to && *p != from),
        );
        for port in order {
            ok(port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
        self.settle(|v| v.owners[usize::from(slot)] == to);
    }

    /// `CLUSTER FAILOVER` on the replica on `replica`; waits until every node agrees it is
    /// a primary owning its former primary's slots.
    pub fn failover(&self, replica: u16) {
        let before = self.agreed();
        let primary = before.replicas[&replica];
        let reply = self.node(replica).conn().cmd_str(&["CLUSTER", "FAILOVER"]);
        assert_eq!(reply, b"+OK\r\n", "CLUSTER FAILOVER: {}", show(&reply));
        self.settle(|v| {
            v.replicas.get(&primary) == Some(&replica)
                && before
                    .owners
                    .iter()
                    .zip(&v.owners)
                    .all(|(&was, &now)| was != primary || now == replica)
        });
    }

    /// Waits until every replica's link to its primary is up (its first sync done): only
    /// then can it be promoted when its primary fails.
    fn replicas_synced(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let view = self.agreed();
        for replica in view.replicas.keys() {
            let mut c = self.node(*replica).conn();
            loop {
                let reply = c.cmd_str(&["INFO", "replication"]);
                let info =
                    String::from_utf8_lossy(&bulk_reply(&reply).unwrap_or_default()).into_owned();
                if info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {replica} did not sync within {SETTLE_TIMEOUT:?}:\n{info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILLs the node on `port` (the others go on without it: its replica is promoted
    /// after the node timeout, see [`ClusterGroup::promoted`]).
    pub fn kill(&mut self, port: u16) {
        let i = self.nodes.iter().position(|n| n.port() == port);
        self.nodes[i.expect("a node of the group")].kill();
    }

    /// Waits until `replica` has taken over the slots of `primary` in its own view (the
    /// primary killed or frozen, so it has no say); returns that view.
    pub fn promoted(&self, replica: u16, primary: u16, owned: &[u16]) -> View {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let view = self.view_of(replica);
            if owned
                .iter()
                .all(|&s| view.owners[usize::from(s)] == replica)
            {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "{replica} did not take over from {primary} within {SETTLE_TIMEOUT:?}: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots from the primary on `from` to the
    /// one on `to` (their keys migrated), then waits until every node agrees.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args([
                "--cluster-from",
                &self.id(from),
                "--cluster-to",
                &self.id(to),
            ])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.agreed();
    }

    /// `CLUSTER KEYSLOT key` on a node.
    pub fn keyslot(&self, key: &[u8]) -> u16 {
        let reply = self.nodes[0].conn().cmd(&[b"CLUSTER", b"KEYSLOT", key]);
        int_reply(&reply) as u16
    }

    /// Waits until every node says `cluster_state:ok` and gives the same view, for which
    /// `done` holds; returns it.
    fn settle(&self, done: impl Fn(&View) -> bool) -> View {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            // A node killed with [`ClusterGroup::kill`] has no say any more.
            let live = || self.nodes.iter().filter(|n| n.pid() != 0);
            let views: Vec<View> = live().map(|n| self.view_of(n.port())).collect();
            let ok = live().all(|n| n.conn().info_cluster().contains("cluster_state:ok"));
            if ok && views.iter().all(|v| *v == views[0]) && done(&views[0]) {
                return views[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {SETTLE_TIMEOUT:?}: {:?}",
                views.iter().map(View::ranges).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

trait ClusterInfo {
    fn info_cluster(&mut self) -> String;
}

impl ClusterInfo for Conn {
    /// `CLUSTER INFO`'s text.
    fn info_cluster(&mut self) -> String {
        let reply = self.cmd_str(&["CLUSTER", "INFO"]);
        String::from_utf8_lossy(&bulk_reply(&reply).unwrap_or_default()).into_owned()
    }
}

/// `n` free ports whose port + 10000 (the cluster bus) is free too.
fn bus_free_ports(n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    while out.len() < n {
        let port = free_port();
        if port > 55535 || out.contains(&port) || out.contains(&(port + 10000)) {
            continue;
        }
        if out.iter().any(|&p: &u16| p + 10000 == port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            out.push(port);
        }
    }
    out
}

/// A `CLUSTER NODES` text as a [`View`].
fn parse_nodes(text: &str) -> View {
    let mut ports = BTreeMap::new();
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let port: u16 = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"));
        ports.insert(fields[0].to_owned(), port);
        lines.push((port, fields));
    }
    let mut view = View {
        owners: vec![0; SLOTS],
        replicas: BTreeMap::new(),
    };
    for (port, fields) in lines {
        if fields[3] != "-" {
            if let Some(&primary) = ports.get(fields[3]) {
                view.replicas.insert(port, primary);
            }
        }
        for range in fields.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
            for owner in &mut view.owners[first..=last] {
                *owner = port;
            }
        }
    }
    view
}

/// The texts of a flat array of bulk strings.
fn bulks(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n");
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with('*'),
        "expected an array: {}",
        show(reply)
    );
    lines
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c.len() == 2 && c[0].starts_with('$'))
        .map(|c| c[1].to_owned())
        .collect()
}
