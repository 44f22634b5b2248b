//! The Kubernetes deployment files against real tools, offline: `helm lint` and
//! `helm template` on the chart (deploy/helm/nearcache/), and every rendered object, the plain
//! manifests (deploy/kubernetes/) and the injector's golden pods
//! (injector/tests/golden/*.injected.yaml, when there are any) validated against the
//! Kubernetes 1.29 API schemas by `kubernetes-validate --strict`. The webhook configuration is
//! read back and checked: both webhooks, their paths and selectors, `failurePolicy: Ignore`.
//!
//! The submodules check the chart's monitoring objects (kubernetes/monitoring.rs: the
//! PrometheusRule through promtool, the Grafana dashboard ConfigMap, the PodMonitor's
//! selector), the image (kubernetes/image.rs: the Dockerfile against the workspace, the image
//! values) and the packaging (kubernetes/package.rs: `helm package`, the Makefile's recipes,
//! the install notes), and the values for TLS, credentials and Sentinel upstreams
//! (kubernetes/upstream_secrets.rs).
//!
//! Needs target/k8s-tools/ (scripts/ensure-k8s-tools.sh installs helm and
//! kubernetes-validate there) and promtool (scripts/ensure-prometheus.sh): without them the
//! tests fail, they do not skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use proto_tests::tempdir::TempDir;

mod image;
mod monitoring;
mod package;
mod upstream_secrets;

const CHART: &str = "deploy/helm/nearcache";
const RELEASE: &str = "nc";
const NAMESPACE: &str = "nearcache-system";
/// The oldest Kubernetes with native sidecars on by default (the chart's kubeVersion).
const KUBE_VERSION: &str = "1.29.0";

/// Kinds that are CustomResourceDefinitions of other projects: kubernetes-validate has the
/// schemas of the built-in API only and would pass them unchecked (with a warning), so they
/// are left out of validation on purpose, by kind and API group. Any other kind without a
/// schema fails the test.
const SKIPPED_KINDS: &[(&str, &str, &str)] = &[
    (
        "PodMonitor",
        "monitoring.coreos.com/",
        "prometheus-operator CRD: no schema offline",
    ),
    (
        "PrometheusRule",
        "monitoring.coreos.com/",
        "prometheus-operator CRD: no schema offline (its rules are checked by promtool)",
    ),
    (
        "Certificate",
        "cert-manager.io/",
        "cert-manager CRD: no schema offline",
    ),
    (
        "Issuer",
        "cert-manager.io/",
        "cert-manager CRD: no schema offline",
    ),
];

const INSTALL_HINT: &str = "run scripts/ensure-k8s-tools.sh (installs helm and \
    kubernetes-validate into target/k8s-tools/; scripts/test.sh runs it)";

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

fn helm_path() -> PathBuf {
    root().join("target/k8s-tools/bin/helm")
}

fn validate_pythonpath() -> PathBuf {
    root().join("target/k8s-tools/py")
}

/// Fails (with the install hint) when a tool is missing. "Installed" is what
/// `scripts/ensure-k8s-tools.sh --check` says: the installer and the tests share one
/// definition (helm at [`helm_path`] runs, `kubernetes_validate` is under
/// [`validate_pythonpath`] and runs from there), so a run of the installer always makes these
/// tests find their tools.
fn require_tools() {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let out = Command::new(root().join("scripts/ensure-k8s-tools.sh"))
            .arg("--check")
            .output()
            .map_err(|e| format!("scripts/ensure-k8s-tools.sh --check: cannot run ({e})"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    });
    if let Err(why) = result {
        panic!("{why} ({INSTALL_HINT})");
    }
}

/// Runs a command in the workspace root; panics unless it exits 0. Returns stdout + stderr.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); {INSTALL_HINT}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

fn helm(args: &[&str]) -> String {
    require_tools();
    run(
        Command::new(helm_path()).args(args),
        &format!("helm {}", args.join(" ")),
    )
}

/// `helm template` of the chart, with the `--set` given (none when empty); stdout only.
fn render(set: &str) -> String {
    require_tools();
    let mut cmd = Command::new(helm_path());
    cmd.args([
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]);
    if !set.is_empty() {
        cmd.args(["--set", set]);
    }
    let out = cmd
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("helm template: cannot run ({e}); {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "helm template --set {set:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm template prints UTF-8")
}

/// One YAML document of a multi-document stream.
struct Doc {
    kind: String,
    api_version: String,
    name: String,
    text: String,
}

/// Top-level `key: value` of a document (value unquoted), if there is one.
fn top_level(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// Splits a YAML stream on `---` lines; documents with nothing but comments are dropped.
fn split_docs(stream: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let text = std::mem::take(current);
        let has_content = text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if has_content {
            let kind = top_level(&text, "kind").unwrap_or_default();
            let api_version = top_level(&text, "apiVersion").unwrap_or_default();
            // metadata.name: the first "  name:" after "metadata:".
            let name = text
                .split_once("\nmetadata:")
                .and_then(|(_, m)| m.lines().find_map(|l| l.strip_prefix("  name:")))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default();
            docs.push(Doc {
                kind,
                api_version,
                name,
                text,
            });
        }
    };
    for line in stream.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    docs
}

fn skipped_reason(doc: &Doc) -> Option<&'static str> {
    SKIPPED_KINDS
        .iter()
        .find(|(kind, group, _)| doc.kind == *kind && doc.api_version.starts_with(group))
        .map(|(_, _, reason)| *reason)
}

/// Validates the documents that are not CRDs of SKIPPED_KINDS with
/// `kubernetes-validate --strict`; every one must pass, none may lack a schema.
/// Returns the kinds validated.
fn validate_docs(docs: &[Doc], what: &str) -> Vec<String> {
    require_tools();
    let dir = TempDir::new("k8s-validate");
    let mut files = Vec::new();
    let mut kinds = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        assert!(
            !doc.kind.is_empty() && !doc.api_version.is_empty(),
            "{what}: document {i} has no kind or apiVersion:\n{}",
            doc.text
        );
        if let Some(reason) = skipped_reason(doc) {
            eprintln!(
                "{what}: not validated: {} {} ({reason})",
                doc.kind, doc.name
            );
            continue;
        }
        let file = dir.path().join(format!("{i:02}-{}.yaml", doc.kind));
        fs::write(&file, &doc.text).expect("write a document");
        files.push(file);
        kinds.push(doc.kind.clone());
    }
    if files.is_empty() {
        return kinds;
    }
    let out = run(
        Command::new("python3")
            .env("PYTHONPATH", validate_pythonpath())
            .args(["-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION])
            .args(&files),
        &format!("kubernetes-validate --strict -k {KUBE_VERSION} ({what})"),
    );
    assert!(
        !out.contains("Couldn't find schema") && !out.contains("ERROR"),
        "{what}: kubernetes-validate found a kind it has no schema for, or an error:\n{out}"
    );
    let passed = out.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        files.len(),
        "{what}: {} documents, {passed} passed:\n{out}",
        files.len()
    );
    kinds
}

fn kinds_of(docs: &[Doc]) -> Vec<&str> {
    docs.iter().map(|d| d.kind.as_str()).collect()
}

/// The lines under the first line whose trimmed text is `key` (e.g. `objectSelector:`) that
/// are indented deeper than the key, dedented; None when the key is not there.
fn block(text: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim() == key)?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    // For `- key:`, the keys of the same sequence item sit two columns right of the dash.
    let dash = if lines[start].trim_start().starts_with("- ") {
        2
    } else {
        0
    };
    let base = indent(lines[start]) + dash;
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .copied()
        .collect();
    let min = body.iter().map(|l| indent(l)).min().unwrap_or(0);
    Some(
        body.iter()
            .map(|l| &l[min..])
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The lines of `text` without their indentation, comments and blank lines: what the
/// assertions compare, so that they do not depend on how far sequences are indented.
fn flat(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key: value` anywhere in `text` (first match, value unquoted).
fn scalar(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("- ")
            .unwrap_or(l.trim())
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// The webhooks of the MutatingWebhookConfiguration, by name (the text of each entry).
fn webhooks(docs: &[Doc]) -> Vec<(String, String)> {
    let config: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind == "MutatingWebhookConfiguration")
        .collect();
    assert_eq!(
        config.len(),
        1,
        "one MutatingWebhookConfiguration, got kinds {:?}",
        kinds_of(docs)
    );
    assert_eq!(
        config[0].api_version, "admissionregistration.k8s.io/v1",
        "webhook apiVersion"
    );
    let list = block(&config[0].text, "webhooks:").expect("webhooks: in the configuration");
    let mut hooks: Vec<(String, String)> = Vec::new();
    for line in list.lines() {
        if let Some(name) = line.strip_prefix("- name:") {
            hooks.push((name.trim().to_string(), String::new()));
        } else if let Some((_, text)) = hooks.last_mut() {
            text.push_str(line);
            text.push('\n');
        } else {
            panic!("webhooks: does not start with a `- name:` entry:\n{list}");
        }
    }
    hooks
}

/// What both webhooks must have, whatever the certificate.
fn check_webhooks(docs: &[Doc], cert_manager: bool) {
    let hooks = webhooks(docs);
    let names: Vec<&str> = hooks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["pod.nearcache.io", "namespace.nearcache.io"],
        "the two webhooks"
    );
    let fullname = format!("{RELEASE}-nearcache-injector");
    let excluded = format!(
        "- key: kubernetes.io/metadata.name\noperator: NotIn\nvalues:\n- {NAMESPACE}\n- kube-system"
    );
    for (name, hook) in &hooks {
        let get =
            |key: &str| scalar(hook, key).unwrap_or_else(|| panic!("{name}: no {key}:\n{hook}"));
        assert_eq!(get("failurePolicy"), "Ignore", "{name}: failurePolicy");
        assert_eq!(get("sideEffects"), "None", "{name}: sideEffects");
        assert_eq!(get("timeoutSeconds"), "5", "{name}: timeoutSeconds");
        assert_eq!(
            get("reinvocationPolicy"),
            "IfNeeded",
            "{name}: reinvocationPolicy"
        );
        assert_eq!(
            block(hook, "admissionReviewVersions:").as_deref(),
            Some("- v1"),
            "{name}: admissionReviewVersions"
        );
        let rules = block(hook, "rules:").unwrap_or_else(|| panic!("{name}: no rules"));
        assert_eq!(
            block(&rules, "- operations:").as_deref(),
            Some("- CREATE"),
            "{name}: operations"
        );
        assert_eq!(
            block(&rules, "resources:").as_deref(),
            Some("- pods"),
            "{name}: resources"
        );
        assert_eq!(
            block(&rules, "apiGroups:").as_deref(),
            Some("- \"\""),
            "{name}: apiGroups"
        );
        let service = block(hook, "service:").unwrap_or_else(|| panic!("{name}: no service"));
        assert_eq!(
            scalar(&service, "name").as_deref(),
            Some(fullname.as_str()),
            "{name}: service name"
        );
        assert_eq!(
            scalar(&service, "namespace").as_deref(),
            Some(NAMESPACE),
            "{name}: service namespace"
        );
        assert_eq!(
            scalar(&service, "port").as_deref(),
            Some("443"),
            "{name}: service port"
        );
        let ca_bundle = scalar(hook, "caBundle");
        if cert_manager {
            assert!(
                ca_bundle.is_none(),
                "{name}: cert-manager injects the caBundle"
            );
        } else {
            let ca = ca_bundle.unwrap_or_else(|| panic!("{name}: no caBundle"));
            assert!(ca.len() > 100, "{name}: caBundle too short: {ca}");
        }
        let namespaces = flat(
            &block(hook, "namespaceSelector:")
                .unwrap_or_else(|| panic!("{name}: no namespaceSelector")),
        );
        assert!(
            namespaces.contains(&excluded),
            "{name}: the release namespace and kube-system are excluded:\n{namespaces}"
        );
        let objects = flat(
            &block(hook, "objectSelector:").unwrap_or_else(|| panic!("{name}: no objectSelector")),
        );
        match name.as_str() {
            "pod.nearcache.io" => {
                assert_eq!(get("path"), "/mutate", "{name}: path");
                assert_eq!(
                    objects, "matchLabels:\nnearcache.io/inject: \"true\"",
                    "{name}: objectSelector"
                );
                assert!(
                    !namespaces.contains("nearcache.io/injection"),
                    "{name}: any namespace (but the excluded):\n{namespaces}"
                );
            }
            _ => {
                assert_eq!(get("path"), "/mutate/namespace", "{name}: path");
                assert_eq!(
                    objects,
                    "matchExpressions:\n- key: nearcache.io/inject\noperator: NotIn\nvalues:\n- \"false\"",
                    "{name}: objectSelector"
                );
                assert!(
                    namespaces.contains(
                        "- key: nearcache.io/injection\noperator: In\nvalues:\n- enabled"
                    ),
                    "{name}: namespaces labelled nearcache.io/injection=enabled:\n{namespaces}"
                );
            }
        }
    }
    let config = docs
        .iter()
        .find(|d| d.kind == "MutatingWebhookConfiguration")
        .expect("webhook configuration");
    let inject_ca = format!("cert-manager.io/inject-ca-from: {NAMESPACE}/{fullname}");
    assert_eq!(
        config.text.contains(&inject_ca),
        cert_manager,
        "cert-manager.io/inject-ca-from annotation (cert-manager: {cert_manager}):\n{}",
        config.text
    );
}

/// What the injector Deployment must have.
fn check_deployment(docs: &[Doc]) {
    let deployment = docs
        .iter()
        .find(|d| d.kind == "Deployment")
        .expect("the injector Deployment");
    let text = &flat(&deployment.text);
    for want in [
        "replicas: 2",
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- /usr/local/bin/nearcache-injector",
        "containerPort: 8443",
        "preferredDuringSchedulingIgnoredDuringExecution:",
        "- --tls-cert\n- /etc/nearcache-injector/tls/tls.crt",
        "- --tls-key\n- /etc/nearcache-injector/tls/tls.key",
        "- --config\n- /etc/nearcache-injector/config.yaml",
        "- --listen\n- 0.0.0.0:8443",
    ] {
        assert!(text.contains(want), "Deployment lacks {want:?}:\n{text}");
    }
    for probe in ["livenessProbe:", "readinessProbe:"] {
        let p = block(&deployment.text, probe).unwrap_or_else(|| panic!("Deployment: no {probe}"));
        assert_eq!(scalar(&p, "path").as_deref(), Some("/healthz"), "{probe}");
        assert_eq!(scalar(&p, "scheme").as_deref(), Some("HTTPS"), "{probe}");
        assert_eq!(scalar(&p, "port").as_deref(), Some("https"), "{probe}");
    }
    let service = docs
        .iter()
        .find(|d| d.kind == "Service")
        .expect("the injector Service");
    assert!(
        service.text.contains("port: 443") && service.text.contains("targetPort: https"),
        "Service 443 -> https (8443):\n{}",
        service.text
    );
    let pdb = docs
        .iter()
        .find(|d| d.kind == "PodDisruptionBudget")
        .expect("a PodDisruptionBudget");
    assert!(pdb.text.contains("minAvailable: 1"), "{}", pdb.text);
    let config = docs
        .iter()
        .find(|d| d.kind == "ConfigMap")
        .expect("the injector ConfigMap");
    let body = block(&config.text, "config.yaml: |").expect("config.yaml in the ConfigMap");
    for (key, want) in [
        ("image", "ghcr.io/nearcache/nearcache:0.1.0"),
        ("imagePullPolicy", "IfNotPresent"),
        ("urlEnv", "REDIS_URL"),
        ("l1MaxBytes", "64MiB"),
        ("l1Ttl", "60s"),
        ("cpuRequest", "50m"),
    ] {
        assert_eq!(
            scalar(&body, key).as_deref(),
            Some(want),
            "config.yaml {key}:\n{body}"
        );
    }
    let system = block(&body, "systemNamespaces:").expect("systemNamespaces in config.yaml");
    for ns in ["kube-system", NAMESPACE] {
        assert!(
            system.contains(&format!("- \"{ns}\"")),
            "systemNamespaces has {ns}:\n{system}"
        );
    }
}

#[test]
fn helm_lint_passes() {
    helm(&["lint", "--strict", CHART]);
    helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "certManager.enabled=true,podMonitor.enabled=true",
    ]);
}

/// `helm template` with these arguments must fail with `want` in its stderr.
fn render_refused(args: &[&str], want: &str, why: &str) {
    require_tools();
    let out = Command::new(helm_path())
        .args(["template", RELEASE, CHART])
        .args(args)
        .current_dir(root())
        .output()
        .expect("run helm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(want),
        "helm template {args:?} must fail ({why}) naming {want:?}: {} {stderr}",
        out.status
    );
}

#[test]
fn chart_refuses_old_kubernetes_and_bad_values() {
    render_refused(
        &["--kube-version", "1.28.0"],
        "kubeVersion",
        "no native sidecars before 1.29",
    );
    render_refused(
        &["--set", "webhook.failurePolicy=Bogus"],
        "failurePolicy",
        "values.schema.json",
    );
    render_refused(
        &["--set", "replicaCount=0"],
        "replicaCount",
        "values.schema.json",
    );
    render_refused(
        &["--set", "sidecar.busKeySecret=no-key-named"],
        "busKeySecret",
        "values.schema.json: <secret>/<key>",
    );
}

/// The schema has the injector's grammar (injector/src/parse.rs): a value the injector would
/// refuse at start (it would CrashLoop, and pods would go uninjected) is refused by `helm
/// template`, naming the value; a value it accepts renders, as the injector reads it.
#[test]
fn sidecar_values_follow_the_injectors_grammar() {
    for (set, key) in [
        ("sidecar.l1Ttl=abc", "l1Ttl"),
        ("sidecar.l1Ttl=1d", "l1Ttl"),
        ("sidecar.l1Ttl=-5s", "l1Ttl"),
        ("sidecar.l1MaxBytes=0", "l1MaxBytes"),
        ("sidecar.l1MaxBytes=64Mi", "l1MaxBytes"),
        ("sidecar.l1MaxBytes=lots", "l1MaxBytes"),
        ("sidecar.cpuRequest=0", "cpuRequest"),
        ("sidecar.cpuRequest=50Mi", "cpuRequest"),
        ("sidecar.cpuRequest=fast", "cpuRequest"),
        ("sidecar.cpuRequest=1.", "cpuRequest"),
        ("sidecar.image=a b", "image"),
        ("image.repository=a b", "repository"),
        ("sidecar.urlEnv=1X", "urlEnv"),
        (
            "sidecar.systemNamespaces[0]=Kube_System",
            "systemNamespaces",
        ),
    ] {
        render_refused(&["--set", set], key, "values.schema.json");
    }
    for (set, rendered) in [
        ("sidecar.l1Ttl=500ms", "l1Ttl: \"500ms\""),
        ("sidecar.l1Ttl=5m", "l1Ttl: \"5m\""),
        ("sidecar.l1Ttl=90", "l1Ttl: \"90\""),
        ("sidecar.l1Ttl=0", "l1Ttl: \"0\""),
        ("sidecar.l1MaxBytes=256MiB", "l1MaxBytes: \"256MiB\""),
        ("sidecar.l1MaxBytes=1GiB", "l1MaxBytes: \"1GiB\""),
        ("sidecar.l1MaxBytes=134217728", "l1MaxBytes: \"134217728\""),
        ("sidecar.cpuRequest=100m", "cpuRequest: \"100m\""),
        ("sidecar.cpuRequest=0.5", "cpuRequest: \"0.5\""),
        ("sidecar.cpuRequest=2", "cpuRequest: \"2\""),
        (
            "sidecar.image=registry.example:5000/nearcache@sha256:abc",
            "image: \"registry.example:5000/nearcache@sha256:abc\"",
        ),
    ] {
        let docs = split_docs(&render(set));
        let config = docs
            .iter()
            .find(|d| d.kind == "ConfigMap")
            .expect("the injector's ConfigMap");
        assert!(config.text.contains(rendered), "{set}: {}", config.text);
    }
}

#[test]
fn a_bus_key_secret_reaches_the_injector_config() {
    let docs = split_docs(&render("sidecar.busKeySecret=nearcache-bus/key"));
    validate_docs(&docs, "helm template (bus key)");
    let config = docs
        .iter()
        .find(|d| d.kind == "ConfigMap")
        .expect("the injector's ConfigMap");
    assert!(
        config.text.contains("busKeySecret: \"nearcache-bus/key\""),
        "{}",
        config.text
    );
    let default = split_docs(&render(""));
    let config = default.iter().find(|d| d.kind == "ConfigMap").unwrap();
    assert!(!config.text.contains("busKeySecret"), "{}", config.text);
}

#[test]
fn the_startup_probe_choice_reaches_the_injector_config() {
    let config_of = |set: &str| {
        let docs = split_docs(&render(set));
        let config = docs.iter().find(|d| d.kind == "ConfigMap").unwrap();
        config.text.clone()
    };
    let default = config_of("");
    assert!(
        default.contains("startupRequiresUpstream: false"),
        "{default}"
    );
    let strict = config_of("sidecar.startupRequiresUpstream=true");
    assert!(strict.contains("startupRequiresUpstream: true"), "{strict}");
    render_refused(
        &["--set", "sidecar.startupRequiresUpstream=sometimes"],
        "startupRequiresUpstream",
        "values.schema.json: a boolean",
    );
}

#[test]
fn default_render_is_valid_with_a_chart_made_certificate() {
    let docs = split_docs(&render(""));
    let mut kinds = validate_docs(&docs, "helm template (default)");
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
        "the objects of the default install"
    );
    check_webhooks(&docs, false);
    check_deployment(&docs);
    let secret = docs
        .iter()
        .find(|d| d.kind == "Secret")
        .expect("TLS Secret");
    assert_eq!(
        top_level(&secret.text, "type").as_deref(),
        Some("kubernetes.io/tls")
    );
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let value = scalar(&secret.text, key).unwrap_or_default();
        assert!(value.len() > 100, "Secret {key} is empty or short: {value}");
    }
    // The caBundle is the CA that signed the certificate in the Secret.
    let ca = scalar(&secret.text, "ca.crt").unwrap();
    for (name, hook) in webhooks(&docs) {
        assert_eq!(
            scalar(&hook, "caBundle").as_deref(),
            Some(ca.as_str()),
            "{name}"
        );
    }
}

#[test]
fn cert_manager_and_pod_monitor_render_is_valid() {
    let docs = split_docs(&render("certManager.enabled=true,podMonitor.enabled=true"));
    let kinds = validate_docs(&docs, "helm template (cert-manager, podMonitor)");
    assert!(
        !kinds.iter().any(|k| k == "Secret"),
        "cert-manager makes the Secret, the chart must not: {kinds:?}"
    );
    let all = kinds_of(&docs);
    for kind in ["Issuer", "Certificate", "PodMonitor"] {
        assert!(all.contains(&kind), "{kind} rendered: {all:?}");
    }
    check_webhooks(&docs, true);
    check_deployment(&docs);
    let cert = docs.iter().find(|d| d.kind == "Certificate").unwrap();
    assert!(
        cert.text
            .contains(&format!("secretName: {RELEASE}-nearcache-injector-tls"))
            && cert
                .text
                .contains(&format!("- {RELEASE}-nearcache-injector.{NAMESPACE}.svc\n")),
        "Certificate for the Service, into the Secret the Deployment mounts:\n{}",
        cert.text
    );
    let monitor = docs.iter().find(|d| d.kind == "PodMonitor").unwrap();
    let endpoints = flat(&monitor.text);
    assert!(
        endpoints.contains("- port: metrics\n")
            && endpoints.contains(
                "- sourceLabels:\n- __meta_kubernetes_pod_container_name\nregex: nearcache\naction: keep"
            ),
        "PodMonitor scrapes port metrics of the containers named nearcache:\n{}",
        monitor.text
    );
}

#[test]
fn pod_monitor_alone_and_an_existing_issuer_render_valid() {
    let docs = split_docs(&render("podMonitor.enabled=true"));
    validate_docs(&docs, "helm template (podMonitor)");
    assert!(kinds_of(&docs).contains(&"PodMonitor"));
    check_webhooks(&docs, false);

    let docs = split_docs(&render(
        "certManager.enabled=true,certManager.issuerRef.name=corp-ca,certManager.issuerRef.kind=ClusterIssuer",
    ));
    validate_docs(&docs, "helm template (cert-manager, existing issuer)");
    assert!(
        !kinds_of(&docs).contains(&"Issuer"),
        "no Issuer of the chart's own with issuerRef given"
    );
    let cert = docs.iter().find(|d| d.kind == "Certificate").unwrap();
    assert!(
        cert.text.contains("name: corp-ca") && cert.text.contains("kind: ClusterIssuer"),
        "{}",
        cert.text
    );
}

#[test]
fn plain_manifests_are_valid() {
    let dir = root().join("deploy/kubernetes");
    let mut docs = Vec::new();
    for name in ["sidecar-deployment.yaml", "podmonitor.yaml"] {
        let text = fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("deploy/kubernetes/{name}: {e}"));
        docs.extend(split_docs(&text));
    }
    let kinds = validate_docs(&docs, "deploy/kubernetes");
    assert_eq!(kinds, ["Deployment"]);
    let deployment = &docs[0].text;
    let sidecar = flat(&block(deployment, "initContainers:").expect("initContainers"));
    assert!(sidecar.starts_with("- name: nearcache\n"), "{sidecar}");
    assert_eq!(
        scalar(&sidecar, "restartPolicy").as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    for env in [
        "NEARCACHE_LISTEN",
        "NEARCACHE_UPSTREAM",
        "NEARCACHE_L1_MAX_BYTES",
        "NEARCACHE_L1_TTL",
        "NEARCACHE_METRICS_LISTEN",
        "NEARCACHE_SHUTDOWN_GRACE",
    ] {
        assert!(
            sidecar.contains(&format!("- name: {env}\n")),
            "sidecar env {env}"
        );
    }
    assert!(sidecar.contains("value: \"127.0.0.1:6380\""), "{sidecar}");
    assert!(sidecar.contains("value: \"0.0.0.0:9380\""), "{sidecar}");
    assert!(sidecar.contains("name: metrics\n"), "{sidecar}");
    assert!(
        sidecar
            .matches("- /usr/local/bin/nearcache\n- probe")
            .count()
            >= 2,
        "exec probes run `nearcache probe`:\n{sidecar}"
    );
    let app = flat(&block(deployment, "containers:").expect("containers"));
    assert!(
        app.contains("- name: REDIS_URL\nvalue: \"redis://127.0.0.1:6380\""),
        "the app talks to the sidecar:\n{app}"
    );
}

#[test]
fn injector_golden_pods_are_valid() {
    let dir = root().join("injector/tests/golden");
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("read injector/tests/golden").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".injected.yaml"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() {
        eprintln!("no injector/tests/golden/*.injected.yaml yet: nothing to validate");
        return;
    }
    for file in files {
        let text = fs::read_to_string(&file).expect("read a golden file");
        let docs = split_docs(&text);
        assert!(!docs.is_empty(), "{}: empty", file.display());
        validate_docs(&docs, &file.display().to_string());
    }
}
