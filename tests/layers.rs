//! The layer rule of ARCHITECTURE.md, checked from the code's own imports: every top-level
//! module of `src/` belongs to exactly one layer, and a module imports (`crate::x`) only from
//! layers below its own. So the modules cannot form a cycle, and a new upward edge fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, bottom first, as ARCHITECTURE.md lists them between its markers.
fn layers() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text
        .find("<!-- layers -->")
        .expect("<!-- layers --> marker");
    let end = text
        .find("<!-- /layers -->")
        .expect("<!-- /layers --> marker");
    text[start..end]
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(|line| {
            // "- `protocol` `glob`: what they own" -> [protocol, glob]
            let names = line.split(':').next().unwrap_or("");
            names
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level modules of `src/` (files and folders; not lib.rs or main.rs).
fn modules(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            out.push(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                out.push(stem.to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (tests may reach
/// anywhere to build what they check).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(cut) => &text[..cut],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code names through `crate::` (paths and `use` groups).
fn imports(code: &str, known: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out.retain(|m| known.contains(m));
    out
}

#[test]
fn every_module_imports_only_from_layers_below_its_own() {
    let src = root().join("src");
    let layers = layers();
    let mut rank = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for m in layer {
            assert!(rank.insert(m.clone(), i).is_none(), "{m} is in two layers");
        }
    }
    let known = modules(&src);
    let unlisted: Vec<_> = known.iter().filter(|m| !rank.contains_key(*m)).collect();
    assert!(
        unlisted.is_empty(),
        "modules in no layer of ARCHITECTURE.md: {unlisted:?}"
    );
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut upward = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        let Some(&own) = rank.get(&top) else { continue };
        // Test code (`tests.rs`, `*_tests.rs`, a `tests/` folder; each declared under
        // `#[cfg(test)]`) may build what it checks from anywhere.
        let in_tests = rel.components().any(|c| c.as_os_str() == "tests");
        if in_tests
            || rel
                .file_name()
                .is_some_and(|f| f.to_string_lossy().ends_with("tests.rs"))
        {
            continue;
        }
        for m in imports(&code(&path), &known) {
            if m != top && rank[&m] >= own {
                upward.push(format!("{} imports crate::{m}", rel.display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports from the same or a higher layer (see ARCHITECTURE.md):\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_import_reader_sees_paths_and_groups_and_skips_comments() {
    let known: Vec<String> = ["cache", "upstream", "acl"].map(String::from).to_vec();
    let text = "use crate::cache::L1;\n// crate::acl\nuse crate::{upstream::Pool, acl};";
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.rs");
    std::fs::write(&file, format!("{text}\n#[cfg(test)]\nuse crate::upstream;")).unwrap();
    let mut found = imports(&code(&file), &known);
    found.sort();
    assert_eq!(found, ["acl", "cache", "upstream"]);
    let only_comment = imports(&code(&file).replace("acl}", "}"), &known);
    assert!(!only_comment.contains(&"acl".to_owned()));
    std::fs::remove_dir_all(dir).unwrap();
}
