//! Cluster-mode client libraries in front of a Redis Cluster: redis-py's
//! `RedisCluster(host, port)` and ioredis' `Redis.Cluster([{host, port}])` pointed at the
//! sidecar see one node owning every slot and work unchanged, and so do their plain
//! clients; a cross-slot read of 100 keys (`mget_nonatomic`, ioredis' single `mget` and
//! per-slot `mget`s, a plain `MGET`) equals the values written. Each script
//! (`proto-tests/clients/python/redis_py_cluster.py`, `proto-tests/clients/node/
//! ioredis_cluster.js`) runs its cluster-mode step directly against a cluster node first,
//! which proves the script and the library are right, then every step through the sidecar.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto-tests is inside the workspace")
        .to_path_buf()
}

/// Runs the script against `port` with `steps` (all when empty).
fn run(port: u16, steps: &[&str]) -> Output {
    let python = workspace().join("target/clients/venv/bin/python");
    assert!(
        python.is_file(),
        "redis-py is not installed ({} is missing): run scripts/ensure-clients.sh",
        python.display()
    );
    let script = workspace().join("proto-tests/clients/python/redis_py_cluster.py");
    Command::new(&python)
        .arg(script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(steps)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .output()
        .expect("run the redis-py cluster script")
}

fn report(what: &str, out: &Output) -> String {
    format!(
        "--- {what} ({}) ---\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts a cluster and a sidecar in front of it; runs `steps` of the script through the
/// sidecar (after `direct` steps directly against a primary) and checks each passed.
fn steps_pass_through_the_sidecar(direct: &[&str], steps: &[&str]) {
    let cluster = ClusterGroup::start();
    if !direct.is_empty() {
        let out = run(cluster.primaries()[0], direct);
        assert!(
            out.status.success(),
            "{direct:?} fail DIRECTLY against a cluster node, so the script or the library is \
             wrong, not the sidecar:\n{}",
            report("direct", &out)
        );
    }
    let seeds = cluster.addresses()[..2].join(",");
    let sidecar = Sidecar::start_url(&format!("redis+cluster://{seeds}"), &[]);
    let proxied = run(sidecar.port(), steps);
    let stdout = String::from_utf8_lossy(&proxied.stdout);
    let passed = steps
        .iter()
        .all(|step| stdout.contains(&format!("ok {step} ")));
    assert!(
        proxied.status.success() && passed,
        "redis-py through the sidecar:\n{}",
        report("nearcache", &proxied)
    );
}

#[test]
fn redis_py_cluster_and_plain_clients_work_through_the_sidecar() {
    steps_pass_through_the_sidecar(
        &["cluster_client", "cluster_client_resp3"],
        &[
            "cluster_client",
            "cluster_client_resp3",
            "one_node",
            "plain_client",
        ],
    );
}

/// A plain client's `MGET` of keys of many slots needs the sidecar to split it by slot.
#[test]
fn redis_py_plain_mget_across_slots_through_the_sidecar() {
    steps_pass_through_the_sidecar(&[], &["plain_mget_cross_slot"]);
}

/// Bound on one run of the ioredis script (a run takes about 2 s; each step bounds itself).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);
/// Keys per step of the ioredis script.
const KEYS: usize = 100;

/// Runs the ioredis cluster script against `port` as run `run` with `steps`; killed after
/// [`NODE_TIMEOUT`].
fn run_ioredis(port: u16, run: &str, steps: &[&str]) -> Output {
    let modules = workspace().join("target/clients/node/node_modules");
    let manifest = modules.join("ioredis/package.json");
    assert!(
        manifest.is_file(),
        "ioredis is not installed ({} is missing): run scripts/ensure-clients.sh",
        manifest.display()
    );
    let mut child = Command::new("node")
        .arg(workspace().join("proto-tests/clients/node/ioredis_cluster.js"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(steps)
        .env("NODE_PATH", modules)
        .env("RUN_ID", run)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (Node.js 18+: scripts/ensure-clients.sh installs it)");
    let deadline = Instant::now() + NODE_TIMEOUT;
    while child.try_wait().expect("wait for node").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the script's output")
}

/// Writes the keys the script's `cluster_client` step reads for run `run`
/// (`clients:ioc:<run>:seed:<i>` = `d<i>-<run>`) straight on their owners.
fn seed(cluster: &ClusterGroup, run: &str) {
    let view = cluster.agreed();
    let mut conns: Vec<(u16, Conn)> = Vec::new();
    for i in 0..KEYS {
        let key = format!("clients:ioc:{run}:seed:{i}");
        let owner = view.owners[usize::from(slot(key.as_bytes()))];
        if !conns.iter().any(|(p, _)| *p == owner) {
            conns.push((owner, cluster.node(owner).conn()));
        }
        let conn = &mut conns
            .iter_mut()
            .find(|(p, _)| *p == owner)
            .expect("opened")
            .1;
        let reply = conn.cmd_str(&["SET", &key, &format!("d{i}-{run}")]);
        assert_reply(&reply, b"+OK\r\n", "SET on the owner");
    }
}

/// Every key the script wrote for run `run` in `steps`, read straight from its owner,
/// holds the value the script wrote (`v<i>-<run>`).
fn assert_written_on_the_cluster(cluster: &ClusterGroup, run: &str, steps: &[&str]) {
    let view = cluster.agreed();
    for step in steps {
        for i in 0..KEYS {
            let key = format!("clients:ioc:{run}:{step}:{i}");
            let owner = view.owners[usize::from(slot(key.as_bytes()))];
            let got = cluster.call(owner, &["GET", &key]);
            assert_eq!(got, format!("v{i}-{run}"), "{key} on its owner {owner}");
        }
    }
}

/// ioredis' `Redis.Cluster` seeded with the sidecar's address only: it connects, sees one
/// node owning every slot, SETs and GETs keys of 100 slots, reads them with one `mget` per
/// slot (ioredis never splits a multi-key command: it sends it to its first key's node)
/// and, as only a single node owning every slot allows, with one cross-slot `mget` and a
/// pipeline across slots; a plain `new Redis` MGETs 100 keys across slots. Keys seeded
/// straight on the cluster read the same through the sidecar, and what ioredis wrote reads
/// the same straight from each owner.
#[test]
fn ioredis_cluster_and_plain_clients_work_through_the_sidecar() {
    let cluster = ClusterGroup::start();
    seed(&cluster, "direct");
    seed(&cluster, "sidecar");
    let direct = run_ioredis(cluster.primaries()[0], "direct", &["cluster_client"]);
    assert!(
        direct.status.success(),
        "cluster_client fails DIRECTLY against a cluster node, so the script or the library \
         is wrong, not the sidecar:\n{}",
        report("direct", &direct)
    );
    // A real cluster refuses what the sidecar must allow: the step proves the single node.
    let refused = run_ioredis(cluster.primaries()[0], "refused", &["cluster_cross_slot"]);
    assert!(
        !refused.status.success(),
        "a cross-slot pipeline and MGET must fail against a real cluster node:\n{}",
        report("direct", &refused)
    );

    let sidecar = Sidecar::start_url(&cluster.url(), &[]);
    let steps = [
        "cluster_client",
        "one_node",
        "cluster_cross_slot",
        "plain_mget_cross_slot",
    ];
    let proxied = run_ioredis(sidecar.port(), "sidecar", &steps);
    let stdout = String::from_utf8_lossy(&proxied.stdout);
    let passed = steps
        .iter()
        .all(|step| stdout.contains(&format!("ok {step} ")));
    assert!(
        proxied.status.success() && passed,
        "ioredis through the sidecar:\n{}",
        report("nearcache", &proxied)
    );
    assert_written_on_the_cluster(&cluster, "sidecar", &["cluster", "xslot", "plainx"]);
}
