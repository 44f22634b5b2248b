//! The image, as far as this machine can check without a container builder or a registry:
//! the Dockerfile copies files that exist (every source of every workspace target), its
//! steps parse, it cross-compiles from the builder's platform, and it installs the
//! workspace's binaries where the chart and the injector run them; the image values reach
//! both the injector and the injected sidecar.

use super::*;

use std::collections::BTreeSet;

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<String> {
    let text = fs::read_to_string(root().join("Dockerfile")).expect("read Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "Dockerfile ends with a continuation");
    out
}

/// `cargo metadata --no-deps` of the workspace.
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(
        Command::new(cargo).args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ]),
        "cargo metadata",
    );
    let json = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("metadata JSON");
    serde_json::from_str(json).expect("cargo metadata prints JSON")
}

#[test]
fn dockerfile_copies_what_exists_and_installs_the_workspace_binaries() {
    let instructions = dockerfile();
    let root = root();
    let ignored: Vec<String> = fs::read_to_string(root.join(".dockerignore"))
        .expect("read .dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        ignored.iter().any(|l| l == "target"),
        "the build context leaves target/ out"
    );

    // COPY sources from the build context: they exist and are not ignored.
    let mut sources = Vec::new();
    for copy in instructions.iter().filter(|i| i.starts_with("COPY ")) {
        let words: Vec<&str> = copy.split_whitespace().skip(1).collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let args: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        for source in &args[..args.len() - 1] {
            let path = source.trim_end_matches('/');
            assert!(
                root.join(path).exists(),
                "Dockerfile: COPY {source}: no such file in the repository"
            );
            assert!(
                !ignored.iter().any(|i| i == path),
                "Dockerfile: COPY {source}, but .dockerignore leaves it out"
            );
            sources.push(path.to_string());
        }
    }

    // Every target of every workspace member is in the context (cargo reads them all).
    let meta = metadata();
    let workspace = meta["workspace_root"].as_str().expect("workspace_root");
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut bins = BTreeSet::new();
    let mut packages = BTreeSet::new();
    for package in meta["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        packages.insert(name.to_string());
        let manifest = package["manifest_path"].as_str().unwrap();
        let mut paths = vec![manifest.to_string()];
        for target in package["targets"].as_array().unwrap() {
            let kinds = target["kind"].as_array().unwrap();
            // Tests and examples are found by looking (tests/, examples/): cargo builds
            // without them, so the image's build leaves the root package's out.
            if !kinds.iter().any(|k| k == "test" || k == "example") {
                paths.push(target["src_path"].as_str().unwrap().to_string());
            }
            if kinds.iter().any(|k| k == "bin") {
                bins.insert((
                    name.to_string(),
                    target["name"].as_str().unwrap().to_string(),
                ));
            }
        }
        for path in paths {
            let rel = path
                .strip_prefix(workspace)
                .map(|p| p.trim_start_matches('/'))
                .unwrap_or(&path);
            assert!(
                sources
                    .iter()
                    .any(|s| rel == s || rel.starts_with(&format!("{s}/"))),
                "{name}: {rel} is not copied into the build stage (COPY sources: {sources:?})"
            );
        }
    }

    // cargo build -p <packages>, each a workspace member; each installed binary is a bin
    // target of one of them.
    let build = instructions
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--locked") && build.contains("--release"),
        "{build}"
    );
    let built: Vec<&str> = build
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1].trim_end_matches(';'))
        .collect();
    assert!(!built.is_empty(), "cargo build -p ...: {build}");
    for p in &built {
        assert!(
            packages.contains(*p),
            "cargo build -p {p}: not a workspace member"
        );
    }
    let installed: BTreeSet<String> = build
        .split("/out/")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for bin in &installed {
        assert!(
            bins.iter()
                .any(|(p, b)| b == bin && built.contains(&p.as_str())),
            "/out/{bin}: no bin target of that name in the packages built ({bins:?})"
        );
        assert!(
            build.contains(&format!("release/{bin}\" /out/{bin}")),
            "{bin} is installed from the build's output: {build}"
        );
    }
    assert!(
        instructions
            .iter()
            .any(|i| i == "COPY --from=build /out/ /usr/local/bin/"),
        "the binaries land in /usr/local/bin"
    );
    // What runs them: the image's entrypoint, the injector Deployment, the injected sidecar.
    let lib = fs::read_to_string(root.join("injector/src/lib.rs")).expect("injector lib.rs");
    let sidecar = lib
        .lines()
        .find_map(|l| l.strip_prefix("pub const SIDECAR_BINARY: &str = \""))
        .and_then(|r| r.strip_suffix("\";"))
        .expect("injector's SIDECAR_BINARY");
    let deployment = fs::read_to_string(root.join(CHART).join("templates/deployment.yaml"))
        .expect("deployment.yaml");
    let entrypoint = instructions
        .iter()
        .find_map(|i| i.strip_prefix("ENTRYPOINT [\""))
        .and_then(|r| r.split('"').next())
        .expect("ENTRYPOINT");
    for (who, path) in [
        ("ENTRYPOINT", entrypoint),
        ("injector SIDECAR_BINARY", sidecar),
        ("chart Deployment", "/usr/local/bin/nearcache-injector"),
    ] {
        let bin = path
            .strip_prefix("/usr/local/bin/")
            .expect("in /usr/local/bin");
        assert!(
            installed.contains(bin),
            "{who} runs {path}, not installed: {installed:?}"
        );
    }
    assert!(deployment.contains("- /usr/local/bin/nearcache-injector\n"));

    // Every RUN is a shell script sh parses (`sh -n`: syntax only, nothing runs).
    for step in instructions.iter().filter(|i| i.starts_with("RUN ")) {
        let script: Vec<&str> = step
            .split_whitespace()
            .skip(1)
            .skip_while(|w| w.starts_with("--mount="))
            .collect();
        run(
            Command::new("sh").args(["-n", "-c", &script.join(" ")]),
            &format!("sh -n of the Dockerfile's {step}"),
        );
    }

    // Cross builds: the build stage runs on the builder's platform and targets TARGETARCH;
    // the runtime stage is the target platform's.
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("FROM --platform=$BUILDPLATFORM ") && froms[0].ends_with(" AS build")
    );
    assert!(!froms[1].contains("--platform"), "{}", froms[1]);
    assert!(build.contains("--target \"$TRIPLE\""), "{build}");
    let setup = instructions
        .iter()
        .find(|i| i.contains("TARGETARCH") && i.starts_with("RUN "))
        .expect("the cross set-up step");
    for needle in [
        "amd64)",
        "arm64)",
        "aarch64-unknown-linux-gnu",
        "rustup target add",
        "_LINKER=",
    ] {
        assert!(
            setup.contains(needle),
            "cross set-up lacks {needle}: {setup}"
        );
    }
}

/// image.* names the injector's image and, unless sidecar.image is set, the sidecar's; the
/// tag defaults to the chart's appVersion.
#[test]
fn image_values_reach_the_injector_and_the_injected_sidecar() {
    let images = |set: &str| {
        let docs = split_docs(&render(set));
        let deployment = docs.iter().find(|d| d.kind == "Deployment").unwrap();
        let config = docs.iter().find(|d| d.kind == "ConfigMap").unwrap();
        (
            scalar(&deployment.text, "image").unwrap(),
            scalar(&config.text, "image").unwrap(),
        )
    };
    let chart = fs::read_to_string(root().join(CHART).join("Chart.yaml")).unwrap();
    let app_version = top_level(&chart, "appVersion").expect("appVersion");
    let default = format!("ghcr.io/nearcache/nearcache:{app_version}");
    assert_eq!(images(""), (default.clone(), default));
    let own = "registry.example:5000/team/nearcache:0.1.0-rc.1";
    assert_eq!(
        images("image.repository=registry.example:5000/team/nearcache,image.tag=0.1.0-rc.1"),
        (own.to_string(), own.to_string())
    );
    assert_eq!(
        images("image.repository=registry.example/team/nearcache,sidecar.image=mirror.example/nearcache:0.1.0"),
        (
            format!("registry.example/team/nearcache:{app_version}"),
            "mirror.example/nearcache:0.1.0".to_string()
        )
    );
    render_refused(
        &["--set", "image.tag=a:b"],
        "tag",
        "values.schema.json: a tag",
    );
}
