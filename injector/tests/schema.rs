//! Every golden output pod validates against the Kubernetes 1.29 schema with
//! `kubernetes-validate --strict`. The validator is a Python module installed under
//! `target/clients/kv`; the test fails with the install command when it is missing.

use std::path::PathBuf;
use std::process::Command;

fn kv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("clients/kv")
}

#[test]
fn injected_pods_pass_kubernetes_validate_strict() {
    let kv = kv_dir();
    let importable = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .env("PYTHONPATH", &kv)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        importable,
        "kubernetes-validate is not importable from {}; install it with:\n  \
         pip install --target {} kubernetes-validate",
        kv.display(),
        kv.display()
    );
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".injected.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "golden outputs missing: {files:?}");
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.29.0"])
        .args(&files)
        .env("PYTHONPATH", &kv)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    let passed = text.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, files.len(), "not every file passed:\n{text}");
}
