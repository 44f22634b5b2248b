//! The chart's monitoring objects: the PrometheusRule (the shipped rules, promtool-checked,
//! runbook URLs absolute), the Grafana dashboard ConfigMap (the shipped dashboard, with the
//! Grafana chart's sidecar label) and the PodMonitor's selector as docs/kubernetes.md states it.

use super::*;

use serde_yaml::Value;

/// The chart's copies are the canonical files (Helm reads only inside the chart).
const RULES: &str = "deploy/helm/nearcache/files/nearcache-rules.yaml";
const DASHBOARD: &str = "deploy/helm/nearcache/files/nearcache-dashboard.json";
const RUNBOOK: &str = "docs/alerts.md";
const BASE: &str = "https://git.example.com/acme/nearcache/blob/v0.1.0/docs/alerts.md";

fn yaml(text: &str, what: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML ({e}):\n{text}"))
}

/// `promtool` from PATH (scripts/ensure-prometheus.sh installs it).
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool is not on PATH: run scripts/ensure-prometheus.sh")
}

/// Every `runbook_url` annotation of a rules document (`groups:` at the top), by alert.
fn runbook_urls(rules: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(alert) = rule["alert"].as_str() {
                let url = rule["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
                out.push((alert.to_string(), url.to_string()));
            }
        }
    }
    out
}

/// The rules with each runbook_url passed through `f`.
fn map_runbooks(mut rules: Value, f: impl Fn(&str) -> String) -> Value {
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            if let Some(url) = rule["annotations"]["runbook_url"].as_str() {
                let new = f(url);
                rule["annotations"]["runbook_url"] = Value::String(new);
            }
        }
    }
    rules
}

#[test]
fn prometheus_rule_is_the_shipped_rules_with_absolute_runbook_urls() {
    let docs = split_docs(&render(&format!(
        "prometheusRule.enabled=true,prometheusRule.labels.release=kube-prometheus-stack,monitoring.runbookBaseUrl={BASE}"
    )));
    validate_docs(&docs, "helm template (prometheusRule)");
    let rule_doc = docs
        .iter()
        .find(|d| d.kind == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(rule_doc.api_version, "monitoring.coreos.com/v1");
    let rendered = yaml(&rule_doc.text, "the PrometheusRule");
    assert_eq!(
        rendered["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack"),
        "prometheusRule.labels reach the object (for the Prometheus's ruleSelector)"
    );
    assert_eq!(rendered["metadata"]["namespace"].as_str(), Some(NAMESPACE));
    let spec = rendered["spec"].clone();

    // The spec is a rules file promtool accepts.
    let dir = TempDir::new("prometheus-rule");
    let file = dir.path().join("spec.yaml");
    fs::write(&file, serde_yaml::to_string(&spec).unwrap()).unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("SUCCESS"),
        "promtool check rules on the PrometheusRule's spec:\n{text}"
    );

    // Every runbook_url is absolute, <base>#<anchor>, the anchor a section of the runbook.
    let runbook = fs::read_to_string(root().join(RUNBOOK)).expect("read docs/alerts.md");
    let anchors: Vec<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_lowercase())
        .collect();
    let urls = runbook_urls(&spec);
    assert!(urls.len() >= 7, "alerts rendered: {urls:?}");
    for (alert, url) in &urls {
        let anchor = url
            .strip_prefix(&format!("{BASE}#"))
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} is not {BASE}#<anchor>"));
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{alert}: #{anchor} is no section of {RUNBOOK}"
        );
    }

    // Apart from the runbook URLs, the spec is the shipped file.
    let shipped = yaml(
        &fs::read_to_string(root().join(RULES)).expect("read the rules"),
        RULES,
    );
    let expected = map_runbooks(shipped, |url| {
        let anchor = url
            .strip_prefix("docs/alerts.md#")
            .unwrap_or_else(|| panic!("{RULES}: runbook_url {url:?} is not docs/alerts.md#..."));
        format!("{BASE}#{anchor}")
    });
    assert!(
        spec == expected,
        "the PrometheusRule's spec differs from {RULES} beyond the runbook URLs"
    );
}

#[test]
fn prometheus_rule_needs_an_absolute_runbook_base() {
    render_refused(
        &["--set", "prometheusRule.enabled=true"],
        "monitoring.runbookBaseUrl",
        "no default base: the repository's address is not known",
    );
    for base in [
        "docs/alerts.md",
        "git.example.com/alerts.md",
        "https://x/a.md#top",
    ] {
        render_refused(
            &[
                "--set",
                "prometheusRule.enabled=true",
                "--set",
                &format!("monitoring.runbookBaseUrl={base}"),
            ],
            "runbookBaseUrl",
            "values.schema.json: an absolute http(s) URL without #",
        );
    }
    // Off by default, and the base alone renders nothing.
    let docs = split_docs(&render(&format!("monitoring.runbookBaseUrl={BASE}")));
    assert!(!kinds_of(&docs).contains(&"PrometheusRule"));
}

#[test]
fn grafana_dashboard_config_map_holds_the_shipped_dashboard() {
    let shipped = fs::read_to_string(root().join(DASHBOARD)).expect("read the dashboard");
    let shipped_json: serde_json::Value =
        serde_json::from_str(&shipped).expect("the shipped dashboard is JSON");
    for (set, namespace) in [
        ("grafanaDashboard.enabled=true", NAMESPACE),
        (
            "grafanaDashboard.enabled=true,grafanaDashboard.namespace=monitoring,grafanaDashboard.annotations.grafana_folder=nearcache",
            "monitoring",
        ),
    ] {
        let docs = split_docs(&render(set));
        validate_docs(&docs, &format!("helm template ({set})"));
        let maps: Vec<&Doc> = docs
            .iter()
            .filter(|d| d.kind == "ConfigMap" && d.name.ends_with("-dashboard"))
            .collect();
        assert_eq!(maps.len(), 1, "{set}: one dashboard ConfigMap");
        let map = yaml(&maps[0].text, "the dashboard ConfigMap");
        assert_eq!(
            map["metadata"]["labels"]["grafana_dashboard"].as_str(),
            Some("1"),
            "{set}: the Grafana chart's sidecar finds dashboards by grafana_dashboard: \"1\""
        );
        assert_eq!(map["metadata"]["namespace"].as_str(), Some(namespace));
        let data = map["data"]["nearcache.json"]
            .as_str()
            .expect("data nearcache.json");
        let json: serde_json::Value = serde_json::from_str(data).expect("the ConfigMap's JSON");
        assert!(json == shipped_json, "{set}: the dashboard differs");
        assert_eq!(data, shipped, "{set}: byte for byte the shipped file");
        if namespace == "monitoring" {
            assert_eq!(
                map["metadata"]["annotations"]["grafana_folder"].as_str(),
                Some("nearcache")
            );
        }
    }
    let docs = split_docs(&render(""));
    assert!(
        !docs.iter().any(|d| d.name.ends_with("-dashboard")),
        "off by default"
    );
}

/// docs/kubernetes.md: the chart's PodMonitor looks at every pod of every namespace by
/// default and keeps the containers named nearcache; podMonitor.selector narrows it.
#[test]
fn pod_monitor_selects_as_the_readme_says() {
    let readme =
        fs::read_to_string(root().join("docs/kubernetes.md")).expect("read docs/kubernetes.md");
    assert!(
        readme.contains("`podMonitor.selector`") && readme.contains("every pod of every namespace"),
        "docs/kubernetes.md documents the PodMonitor's selector"
    );
    let docs = split_docs(&render("podMonitor.enabled=true"));
    let monitor = docs.iter().find(|d| d.kind == "PodMonitor").unwrap();
    let monitor = yaml(&monitor.text, "PodMonitor");
    let spec = &monitor["spec"];
    assert_eq!(
        spec["selector"],
        yaml("{}", "empty"),
        "every pod by default"
    );
    assert_eq!(spec["namespaceSelector"]["any"].as_bool(), Some(true));
    let endpoint = &spec["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("metrics"));
    assert_eq!(
        endpoint["relabelings"][0]["regex"].as_str(),
        Some("nearcache")
    );

    let docs = split_docs(&render(
        "podMonitor.enabled=true,podMonitor.selector.matchLabels.team=shop,podMonitor.namespaceSelector.any=false,podMonitor.namespaceSelector.matchNames[0]=shop",
    ));
    let monitor = docs.iter().find(|d| d.kind == "PodMonitor").unwrap();
    let monitor = yaml(&monitor.text, "PodMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["team"].as_str(),
        Some("shop")
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0].as_str(),
        Some("shop")
    );
}

#[test]
fn all_monitoring_objects_render_valid_together() {
    let docs = split_docs(&render(&format!(
        "podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,certManager.enabled=true,monitoring.runbookBaseUrl={BASE}"
    )));
    validate_docs(&docs, "helm template (every monitoring object)");
    let kinds = kinds_of(&docs);
    for kind in ["PodMonitor", "PrometheusRule"] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    assert_eq!(
        docs.iter().filter(|d| d.kind == "ConfigMap").count(),
        2,
        "the injector's config and the dashboard"
    );
    check_webhooks(&docs, true);
    check_deployment(&docs);
    helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        &format!("podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,monitoring.runbookBaseUrl={BASE}"),
    ]);
}
