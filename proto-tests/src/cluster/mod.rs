//! `ClusterGroup`: a Redis Cluster of three primaries and three replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`) on free
//! ports whose cluster bus ports (port + 10000) are free too; started and waited for until
//! every node says `cluster_state:ok` and all six agree on the slots and the replicas. With
//! the faults the cluster suites need: moving one slot between primaries and `CLUSTER
//! FAILOVER` on a replica. [`ClusterGroup::start_tls`] runs the same group over TLS only
//! (clients, cluster bus, replication), reached through `redis-cli --tls`. Every node is
//! killed on drop.

mod fake;
mod view;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::redis::{Redis, TlsFiles};

pub use fake::{shards_reply, FakeClusterNode};
pub use view::View;
use view::{cli_text, parse_nodes};

/// How many slots a cluster has.
pub const SLOTS: usize = 16384;
/// Bound on the nodes agreeing after a start, a slot move or a failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `cluster-node-timeout`: short, so gossip spreads changes fast, yet long enough that a
/// busy test machine does not make a node look failed.
const NODE_TIMEOUT_MS: &str = "3000";

/// Six cluster nodes: three primaries with a replica each.
pub struct ClusterGroup {
    nodes: Vec<Redis>,
    /// The certificates of a TLS group ([`ClusterGroup::start_tls`]).
    tls: Option<TlsFiles>,
    /// How long starting, joining and settling took.
    pub started_in: Duration,
}

impl ClusterGroup {
    /// Starts six nodes, joins them with `redis-cli --cluster create ... --cluster-replicas
    /// 1` and waits until every node agrees on a complete map.
    pub fn start() -> ClusterGroup {
        ClusterGroup::start_with(None, false)
    }

    /// The same group over TLS only: every node listens for TLS alone (`--port 0
    /// --tls-port`, client certificates required, see [`Redis::start_tls`]), the cluster
    /// bus and replication run over TLS (`--tls-cluster yes --tls-replication yes`), and
    /// the group's own calls go through `redis-cli --tls` ([`Redis::cli`]). The server
    /// certificate of `files` must name 127.0.0.1 and serve as a client certificate too
    /// (nodes present it to each other).
    pub fn start_tls(files: &TlsFiles) -> ClusterGroup {
        ClusterGroup::start_with(Some(files), false)
    }

    /// [`ClusterGroup::start_tls`] with every node listening on a plain-text port too, so
    /// that `CLUSTER SHARDS` names both its `port` and its `tls-port` (the group's calls,
    /// [`ClusterGroup::addresses`] and [`ClusterGroup::url`] still use the TLS ports).
    pub fn start_tls_and_plain(files: &TlsFiles) -> ClusterGroup {
        ClusterGroup::start_with(Some(files), true)
    }

    fn start_with(tls: Option<&TlsFiles>, plain_too: bool) -> ClusterGroup {
        let started = Instant::now();
        let mut nodes = Vec::new();
        for port in bus_free_ports(6) {
            let conf = format!("nodes-{port}.conf");
            let mut args = vec![
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
            ];
            nodes.push(match tls {
                None => Redis::start_on(port, &args),
                Some(files) => {
                    args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                    // After start_tls_on's `--port 0`, so it wins.
                    let plain = free_port().to_string();
                    if plain_too {
                        args.extend(["--port", &plain]);
                    }
                    Redis::start_tls_on(port, files, &args)
                }
            });
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut cli = Command::new("redis-cli");
        if let Some(files) = tls {
            cli.args(tls_args(files));
        }
        let out = cli
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
            tls: tls.cloned(),
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

    /// Whether the nodes listen for TLS only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The `--upstream` URL of a sidecar with the first two nodes as seeds
    /// (`rediss+cluster://` for a TLS group).
    pub fn url(&self) -> String {
        let scheme = match self.is_tls() {
            true => "rediss+cluster",
            false => "redis+cluster",
        };
        format!("{scheme}://{}", self.addresses()[..2].join(","))
    }

    /// Runs a command on the node on `port` and returns its reply as `redis-cli` prints
    /// it (see [`Redis::cli`]): a plain node through a connection, a TLS one through
    /// `redis-cli --tls`.
    pub fn call(&self, port: u16, args: &[&str]) -> String {
        let node = self.node(port);
        match node.is_tls() {
            true => node.cli(args),
            false => cli_text(&node.conn().cmd_str(args)),
        }
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
        let id = self.call(port, &["CLUSTER", "MYID"]);
        assert_eq!(id.len(), 40, "CLUSTER MYID on {port}: {id}");
        id
    }

    /// What the node on `port` says (its `CLUSTER NODES`).
    pub fn view_of(&self, port: u16) -> View {
        parse_nodes(&self.call(port, &["CLUSTER", "NODES"]))
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
            let reply = self.call(port, args);
            assert_eq!(reply, "OK", "{args:?} on {port}");
        };
        ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
        loop {
            let reply = self.call(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<String> = reply.lines().map(str::to_owned).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let reply = self.call(from, &args);
            assert_eq!(reply, "OK", "MIGRATE");
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
        let reply = self.call(replica, &["CLUSTER", "FAILOVER"]);
        assert_eq!(reply, "OK", "CLUSTER FAILOVER");
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
            loop {
                let info = self.call(*replica, &["INFO", "replication"]);
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

    /// One name `{prefix}{i}` per primary (the first `i` whose slot each owns, by the slot
    /// the sidecar and Redis agree on), with its owner's port; the agreed view read once.
    pub fn key_per_primary(&self, prefix: &str) -> Vec<(String, u16)> {
        let view = self.agreed();
        let primaries = self.primaries().len();
        let mut found: Vec<(String, u16)> = Vec::new();
        for i in 0.. {
            let key = format!("{prefix}{i}");
            let slot = nearcache::upstream::cluster::slot(key.as_bytes());
            let owner = view.owners[usize::from(slot)];
            if owner != 0 && !found.iter().any(|(_, o)| *o == owner) {
                found.push((key, owner));
            }
            if found.len() == primaries {
                break;
            }
        }
        found
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
        let mut cli = Command::new("redis-cli");
        if let Some(files) = &self.tls {
            cli.args(tls_args(files));
        }
        let out = cli
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
        let node = &self.nodes[0];
        let reply = match node.is_tls() {
            true => node.cli(&[
                "CLUSTER",
                "KEYSLOT",
                std::str::from_utf8(key).expect("a text key"),
            ]),
            false => cli_text(&node.conn().cmd(&[b"CLUSTER", b"KEYSLOT", key])),
        };
        reply
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT: {reply}"))
    }

    /// Waits until every node says `cluster_state:ok` and gives the same view, for which
    /// `done` holds; returns it.
    fn settle(&self, done: impl Fn(&View) -> bool) -> View {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            // A node killed with [`ClusterGroup::kill`] has no say any more.
            let live = || self.nodes.iter().filter(|n| n.pid() != 0);
            let views: Vec<View> = live().map(|n| self.view_of(n.port())).collect();
            let ok = live().all(|n| {
                self.call(n.port(), &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
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

/// `redis-cli`'s options for TLS with the client certificate of `files`.
fn tls_args(files: &TlsFiles) -> [&str; 7] {
    let (ca, cert, key) = (&files.ca, &files.client_cert, &files.client_key);
    ["--tls", "--cacert", ca, "--cert", cert, "--key", key]
}
