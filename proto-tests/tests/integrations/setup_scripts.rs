//! The scripts a newcomer runs first, black-box: the `scripts/ensure-*.sh` installers agree
//! with the tests on what "installed" means (their `--check` mode is the definition; a second
//! run has nothing to do), they say in one line what is missing and how to get it when they
//! cannot install, and `scripts/run-local.sh` gives a second instance on one host ports of
//! its own (README "Quick start").
//!
//! The installers are run for real only where nothing is left to install; the other cases
//! run copies of the scripts in a scratch tree, with fake tools or none on PATH.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proto_tests::tempdir::TempDir;
use proto_tests::{free_port, http_get, nearcache_bin, Redis};

/// Every installer `make test` runs (scripts/test.sh), with the paths its tests use.
const ENSURE: &[(&str, &[&str])] = &[
    ("ensure-redis", &[]),
    (
        "ensure-clients",
        &[
            "target/clients/venv/bin/python",
            "target/clients/node/node_modules/ioredis/package.json",
            "target/clients/node/node_modules/redis/package.json",
        ],
    ),
    ("ensure-prometheus", &[]),
    (
        "ensure-k8s-tools",
        &[
            "target/k8s-tools/bin/helm",
            "target/k8s-tools/py/kubernetes_validate",
        ],
    ),
];

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e})"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_exec(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A scratch tree with copies of `scripts/<name>` (and apt-install.sh) and the client
/// manifests, so an installer runs there as in the repository without touching it.
fn scratch_tree(scripts: &[&str]) -> TempDir {
    let dir = TempDir::new("setup-scripts");
    for name in scripts.iter().chain(&["apt-install.sh"]) {
        let body = fs::read_to_string(root().join("scripts").join(name)).unwrap();
        write_exec(&dir.path().join("scripts").join(name), &body);
    }
    for file in [
        "proto-tests/clients/python/requirements.txt",
        "proto-tests/clients/node/package.json",
    ] {
        let to = dir.path().join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(root().join(file), to).unwrap();
    }
    dir
}

/// `scripts/<name>.sh args` in `tree` with PATH set to `path`.
fn ensure(tree: &Path, name: &str, args: &[&str], path: &str) -> Output {
    run(
        Command::new(tree.join("scripts").join(format!("{name}.sh")))
            .args(args)
            .env("PATH", path)
            .current_dir(tree),
        name,
    )
}

#[test]
fn the_installers_and_the_tests_agree_on_what_is_installed() {
    let path = std::env::var("PATH").unwrap_or_default();
    for (name, paths) in ENSURE {
        let check = ensure(&root(), name, &["--check"], &path);
        assert!(
            check.status.success(),
            "{name} --check: {}; `make test` installs it first",
            text(&check)
        );
        for p in *paths {
            assert!(
                root().join(p).exists(),
                "{name} --check passes but {p}, which the tests use, is missing"
            );
        }
        // The installer's own "is it installed" against the state --check accepted.
        let again = ensure(&root(), name, &[], &path);
        let out = String::from_utf8_lossy(&again.stdout);
        assert!(
            again.status.success() && out.contains("nothing to do"),
            "{name} after a passing --check should have nothing to do: {}",
            text(&again)
        );
    }
}

/// A system python3 in which `kubernetes_validate` is importable whatever PYTHONPATH says,
/// with a pip whose `install --target DIR` makes DIR/kubernetes_validate.
const SYSTEM_PYTHON: &str = r#"#!/bin/bash
case "$1 $2" in
"-m kubernetes_validate") echo "kubernetes-validate 1.29.0"; exit 0 ;;
"-m pip")
    [ "$3" = --version ] && { echo "pip 23.0"; exit 0; }
    while [ $# -gt 0 ]; do
        if [ "$1" = --target ]; then mkdir -p "$2/kubernetes_validate"; echo "pip $*" >>pip.log; exit 0; fi
        shift
    done
    exit 1 ;;
esac
exit 1
"#;

#[test]
fn k8s_tools_ignore_a_kubernetes_validate_in_the_system_python() {
    let tree = scratch_tree(&["ensure-k8s-tools.sh"]);
    let t = tree.path();
    let bin = t.join("fakebin");
    write_exec(&bin.join("python3"), SYSTEM_PYTHON);
    write_exec(
        &t.join("target/k8s-tools/bin/helm"),
        "#!/bin/sh\necho v3.99.0\n",
    );
    let path = format!("{}:/usr/bin:/bin", bin.display());

    let check = ensure(t, "ensure-k8s-tools", &["--check"], &path);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && err.contains("target/k8s-tools/py/kubernetes_validate"),
        "--check must not count the system Python's kubernetes-validate: {}",
        text(&check)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let first = ensure(t, "ensure-k8s-tools", &[], &path);
    assert!(first.status.success(), "first run: {}", text(&first));
    assert!(
        t.join("target/k8s-tools/py/kubernetes_validate").is_dir(),
        "the first run must install into target/k8s-tools/py: {}",
        text(&first)
    );
    let pip = fs::read_to_string(t.join("pip.log")).unwrap_or_default();
    assert!(pip.contains("kubernetes-validate"), "pip ran: {pip:?}");

    let second = ensure(t, "ensure-k8s-tools", &[], &path);
    assert!(
        second.status.success()
            && String::from_utf8_lossy(&second.stdout).contains("nothing to do"),
        "second run: {}",
        text(&second)
    );
    let check = ensure(t, "ensure-k8s-tools", &["--check"], &path);
    assert!(check.status.success(), "--check after: {}", text(&check));
}

/// A PATH with only the basic tools the scripts use: no Redis, Prometheus, Python, Node,
/// npm, apt-get or sudo.
fn bare_path(tree: &Path) -> String {
    let bin = tree.join("barebin");
    fs::create_dir_all(&bin).unwrap();
    for tool in [
        "bash", "env", "dirname", "id", "date", "mktemp", "tail", "head", "rm", "mkdir", "cat",
        "cmp", "cp", "mv", "sed", "awk", "chmod", "tee", "sleep", "seq", "tr",
    ] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found in /usr/bin or /bin"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin.display().to_string()
}

#[test]
fn an_installer_that_cannot_install_says_what_is_missing_in_one_line() {
    let tree = scratch_tree(&[
        "ensure-redis.sh",
        "ensure-clients.sh",
        "ensure-prometheus.sh",
        "ensure-k8s-tools.sh",
    ]);
    let t = tree.path();
    let path = bare_path(t);
    // (script, what --check names, what a run that cannot install names)
    let cases = [
        (
            "ensure-redis",
            "redis-server",
            "apt-get install redis-server",
        ),
        ("ensure-clients", "python", "apt-get install python3"),
        (
            "ensure-prometheus",
            "prometheus",
            "apt-get install prometheus",
        ),
        ("ensure-k8s-tools", "kubernetes_validate", "python3"),
    ];
    for (name, missing, how) in cases {
        let check = ensure(t, name, &["--check"], &path);
        let err = String::from_utf8_lossy(&check.stderr);
        assert!(
            !check.status.success() && err.contains(missing),
            "{name} --check with nothing installed: {}",
            text(&check)
        );
        let run = ensure(t, name, &[], &path);
        let err = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(
            !run.status.success(),
            "{name} cannot install here: {}",
            text(&run)
        );
        assert_eq!(err.lines().count(), 1, "{name}: one line, got:\n{err}");
        assert!(
            err.contains(how),
            "{name}: the line should say how to get it ({how}): {err}"
        );
    }
}

// ---- run-local.sh: a second instance on one host --------------------------------------

/// `scripts/run-local.sh`'s nearcache arguments for `env` (RUN_LOCAL_DRY_RUN=1). `cargo`,
/// `redis-server` and `redis-cli` are stubs that fail: a dry run must not build or start
/// anything.
fn run_local_args(env: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let stubs = TempDir::new("run-local-stubs");
    for tool in ["cargo", "redis-server", "redis-cli"] {
        write_exec(
            &stubs.path().join(tool),
            &format!("#!/bin/sh\necho '{tool} must not run in a dry run' >&2\nexit 1\n"),
        );
    }
    let path = format!(
        "{}:{}",
        stubs.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(root().join("scripts/run-local.sh"));
    cmd.env("PATH", path)
        .env("RUN_LOCAL_DRY_RUN", "1")
        .env_remove("LISTEN_PORT")
        .env_remove("UPSTREAM_PORT")
        .env_remove("METRICS_PORT")
        .env_remove("NEARCACHE_METRICS_LISTEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, "run-local.sh");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// A listen port whose port + 3000 is free as well.
fn listen_port_with_room() -> u16 {
    loop {
        let p = free_port();
        if p <= 62_000 && TcpListener::bind(("127.0.0.1", p + 3000)).is_ok() {
            return p;
        }
    }
}

/// Starts the binary with `args`; returns the child and its first two stdout lines.
fn start(args: &[String]) -> (Child, String, String) {
    let mut cmd = Command::new(nearcache_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NEARCACHE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nearcache");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = || rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let (first, second) = (line(), line());
    (child, first, second)
}

#[test]
fn run_local_gives_a_second_instance_its_own_ports() {
    let syntax = run(
        Command::new("bash")
            .args(["-n"])
            .arg(root().join("scripts/run-local.sh")),
        "bash -n",
    );
    assert!(syntax.status.success(), "bash -n: {}", text(&syntax));

    // The documented defaults: 6380, metrics on 9380, upstream 6379.
    let default = run_local_args(&[]).unwrap();
    assert_eq!(
        default,
        [
            "--listen",
            "127.0.0.1:6380",
            "--upstream",
            "redis://127.0.0.1:6379",
            "--metrics-listen",
            "127.0.0.1:9380"
        ]
    );
    let off = run_local_args(&[("METRICS_PORT", "off")]).unwrap();
    assert!(
        off.ends_with(&["--metrics-listen".into(), "off".into()]),
        "{off:?}"
    );
    let err = run_local_args(&[("LISTEN_PORT", "63000")]).unwrap_err();
    assert!(
        err.contains("METRICS_PORT") && err.lines().count() == 1,
        "{err}"
    );
    let err = run_local_args(&[("LISTEN_PORT", "abc")]).unwrap_err();
    assert!(err.contains("LISTEN_PORT=abc"), "{err}");

    // Two instances in front of one Redis, each given only its LISTEN_PORT: both come up,
    // each with its metrics on LISTEN_PORT + 3000.
    let redis = Redis::start();
    let upstream = redis.port().to_string();
    let first_port = listen_port_with_room();
    let mut second_port = listen_port_with_room();
    while second_port == first_port || second_port.abs_diff(first_port) == 3000 {
        second_port = listen_port_with_room();
    }
    let mut children = Vec::new();
    for port in [first_port, second_port] {
        let args = run_local_args(&[
            ("LISTEN_PORT", &port.to_string()),
            ("UPSTREAM_PORT", &upstream),
        ])
        .unwrap();
        let (child, listening, metrics) = start(&args);
        children.push(child);
        assert_eq!(
            listening,
            format!("nearcache listening on 127.0.0.1:{port}")
        );
        assert_eq!(
            metrics,
            format!("nearcache metrics on 127.0.0.1:{}", port + 3000),
            "{args:?}"
        );
    }
    for port in [first_port, second_port] {
        let metrics: SocketAddr = ([127, 0, 0, 1], port + 3000).into();
        let (status, _) = http_get(metrics, "/healthz");
        assert_eq!(status, 200, "/healthz of the instance on {port}");
    }
    for mut child in children {
        assert!(
            child.try_wait().unwrap().is_none(),
            "both instances still run"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
