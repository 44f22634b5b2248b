//! The chart as an operator gets it: `helm package` works and the package renders (the
//! monitoring files included), the Makefile's build, push and package recipes expand to the
//! documented commands, and the install notes name the image and the monitoring objects.

use super::*;

#[test]
fn chart_packages_and_renders_from_the_package() {
    let dir = TempDir::new("helm-package");
    let out_dir = dir.path().to_str().unwrap().to_string();
    helm(&["package", CHART, "-d", &out_dir]);
    let chart = fs::read_to_string(root().join(CHART).join("Chart.yaml")).unwrap();
    let version = top_level(&chart, "version").expect("version");
    let tgz = dir.path().join(format!("nearcache-{version}.tgz"));
    assert!(tgz.is_file(), "helm package wrote {}", tgz.display());
    let listing = run(Command::new("tar").arg("tzf").arg(&tgz), "tar tzf");
    for file in [
        "nearcache/files/nearcache-rules.yaml",
        "nearcache/files/nearcache-dashboard.json",
        "nearcache/values.schema.json",
        "nearcache/templates/prometheusrule.yaml",
    ] {
        assert!(
            listing.lines().any(|l| l == file),
            "{file} packaged:\n{listing}"
        );
    }
    assert!(
        !listing.contains(".test.yaml"),
        "promtool's unit tests stay out of the package:\n{listing}"
    );
    let tgz = tgz.to_str().unwrap();
    helm(&["lint", "--strict", tgz]);
    let rendered = helm(&[
        "template",
        RELEASE,
        tgz,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "prometheusRule.enabled=true,grafanaDashboard.enabled=true,monitoring.runbookBaseUrl=https://wiki.example/nearcache/alerts",
    ]);
    assert!(rendered.contains("kind: PrometheusRule") && rendered.contains("\"title\": "));
    assert!(rendered
        .contains("runbook_url: \"https://wiki.example/nearcache/alerts#nearcacheupstreamdown\""));

    // A release of one's own: chart and app version set at packaging.
    helm(&[
        "package",
        CHART,
        "-d",
        &out_dir,
        "--version",
        "0.1.1",
        "--app-version",
        "0.1.1-acme",
    ]);
    let tgz = dir.path().join("nearcache-0.1.1.tgz");
    let rendered = helm(&[
        "template",
        RELEASE,
        tgz.to_str().unwrap(),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "image.repository=registry.example/team/nearcache",
    ]);
    assert_eq!(
        rendered
            .matches("registry.example/team/nearcache:0.1.1-acme\"")
            .count(),
        2,
        "the injector and the sidecar run the packaged appVersion:\n{rendered}"
    );
}

/// The Makefile recipes the README and docs/kubernetes.md give expand to the documented commands.
#[test]
fn make_recipes_build_push_and_package() {
    let make = |args: &[&str]| run(Command::new("make").arg("-n").args(args), "make -n");
    let out = make(&[
        "image-multiarch",
        "IMAGE=registry.example/team/nearcache",
        "VERSION=0.1.0",
    ]);
    assert!(
        out.contains("docker buildx build --platform linux/amd64,linux/arm64 -t registry.example/team/nearcache:0.1.0 --push ."),
        "{out}"
    );
    let out = make(&[
        "image",
        "CONTAINER_TOOL=podman",
        "IMAGE=registry.example/team/nearcache",
        "VERSION=0.1.0",
    ]);
    assert!(
        out.contains("podman build -t registry.example/team/nearcache:0.1.0 ."),
        "{out}"
    );
    let out = make(&[
        "image-push",
        "IMAGE=registry.example/team/nearcache",
        "VERSION=0.1.0",
    ]);
    assert!(
        out.contains("docker push registry.example/team/nearcache:0.1.0"),
        "{out}"
    );
    let chart = fs::read_to_string(root().join(CHART).join("Chart.yaml")).unwrap();
    let version = top_level(&chart, "version").unwrap();
    let out = make(&["chart-push", "CHART_REGISTRY=registry.example/charts"]);
    assert!(
        out.contains(&format!("package {CHART} -d target/charts"))
            && out.contains(&format!(
                "push target/charts/nearcache-{version}.tgz oci://registry.example/charts"
            )),
        "{out}"
    );
}

/// NOTES.txt says which image runs, warns while it is the unpublished default, and says
/// which monitoring objects are installed.
#[test]
fn install_notes_name_the_image_and_the_monitoring() {
    let notes = |set: &str| {
        let out = helm(&[
            "install",
            RELEASE,
            CHART,
            "--dry-run=client",
            "--namespace",
            NAMESPACE,
            "--set",
            set,
        ]);
        out.split_once("NOTES:")
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| panic!("no NOTES in:\n{out}"))
    };
    let default = notes("replicaCount=2");
    assert!(
        default.contains("Nothing publishes ghcr.io/nearcache/nearcache")
            && default.contains("PrometheusRule:             off"),
        "{default}"
    );
    let own = notes(
        "image.repository=registry.example/team/nearcache,image.tag=1.0.0,prometheusRule.enabled=true,monitoring.runbookBaseUrl=https://wiki.example/alerts,grafanaDashboard.enabled=true",
    );
    assert!(
        own.contains("Image: registry.example/team/nearcache:1.0.0 (the injector) and every injected sidecar")
            && !own.contains("Nothing publishes")
            && own.contains("runbooks at https://wiki.example/alerts")
            && own.contains("Grafana dashboard:          ConfigMap in namespace"),
        "{own}"
    );
}
