//! redis-py in front of a Redis Cluster: `RedisCluster(host, port)` pointed at the sidecar
//! sees one node owning every slot and works unchanged, and so does a plain `Redis`; a
//! cross-slot read of 100 keys (`mget_nonatomic`, and a plain `MGET`) equals the values
//! written. The script (`proto-tests/clients/python/redis_py_cluster.py`) runs its
//! cluster-mode step directly against a cluster node first, which proves the script and
//! the library are right, then every step through the sidecar.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
