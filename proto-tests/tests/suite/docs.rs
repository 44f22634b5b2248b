//! The documentation checked against the real binary: every NEARCACHE subcommand the sidecar
//! lists in `NEARCACHE HELP` is in docs/nearcache-command.md, every field a sidecar reports in
//! its `# Nearcache*` INFO sections is in docs/info.md, the README's quick-start `redis-cli`
//! lines succeed against a real sidecar, and `make help` and the README name the same make
//! targets, the links between README.md and docs/ reach a file and a heading, and the
//! README's "Dependencies" section names every crate of the sidecar's and the injector's
//! `[dependencies]`. (Every option in docs/configuration.md's and the README's tables:
//! src/config/table_tests.rs.)

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use proto_tests::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The lines of an array reply of bulk or simple strings (RESP2), in order.
fn bulk_lines(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n");
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            out.push(lines.next().unwrap_or_default().to_owned());
        } else if let Some(simple) = line.strip_prefix('+') {
            out.push(simple.to_owned());
        }
    }
    out
}

/// The text of a bulk string reply.
fn bulk_text(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply).into_owned();
    let body = text.split_once("\r\n").expect("a bulk header").1;
    body.trim_end_matches("\r\n").to_owned()
}

/// The section of a markdown file from the heading `heading` to the next heading of its level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &text[start + 1..];
    let level = heading.split(' ').next().unwrap();
    let end = rest[1..]
        .find(&format!("\n{level} "))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// The fenced blocks of `text` with the info string `lang`, each as its lines.
fn blocks(text: &str, lang: &str) -> Vec<Vec<String>> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("closing fence");
        out.push(body[..end].lines().map(str::to_owned).collect());
        rest = &body[end..];
    }
    out
}

#[test]
fn every_nearcache_subcommand_is_documented() {
    let (_redis, sidecar) = start_pair(&[]);
    let help = bulk_lines(&sidecar.conn().cmd_str(&["NEARCACHE", "HELP"]));
    let doc = read("docs/nearcache-command.md");
    // One line per subcommand, its description indented below it; the first is the header.
    let subcommands: Vec<&String> = help
        .iter()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert!(subcommands.len() >= 9, "{help:?}");
    for line in subcommands {
        let name = line.split(' ').next().unwrap();
        assert!(
            doc.contains(&format!("`NEARCACHE {name}")),
            "docs/nearcache-command.md has no row for NEARCACHE {name}"
        );
        // SLOWLOG GET [<count>] | LEN | RESET | HELP: each alternative is documented too.
        for alternative in line.split(" | ").skip(1) {
            let word = alternative.split(' ').next().unwrap();
            assert!(
                doc.contains(&format!("{name} {word}")) || doc.contains(&format!("`{word}`")),
                "docs/nearcache-command.md does not document NEARCACHE {name} {word}"
            );
        }
    }
}

/// The field names documented in docs/info.md: every backquoted name in a table's first
/// column.
fn documented_info_fields() -> BTreeSet<String> {
    let doc = read("docs/info.md");
    let mut fields = BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                fields.insert(part.to_owned());
            }
        }
    }
    fields
}

#[test]
fn every_info_field_is_documented() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    // Some traffic, so that nothing is left out for being zero or absent.
    c.cmd_str(&["SET", "k", "v"]);
    c.cmd_str(&["GET", "k"]);
    c.cmd_str(&["GET", "k"]);
    let documented = documented_info_fields();
    let mut reported = BTreeSet::new();
    for request in [&["INFO", "nearcache"][..], &["INFO", "everything"][..]] {
        let text = bulk_text(&c.cmd_str(request));
        let mut ours = false;
        for line in text.lines() {
            if let Some(header) = line.strip_prefix("# ") {
                ours = header.starts_with("Nearcache");
            } else if let Some((name, _)) = line.split_once(':') {
                if ours {
                    reported.insert(name.to_owned());
                }
            }
        }
    }
    assert!(reported.len() > 40, "{reported:?}");
    // `namespace_<name>` stands for one field per namespace.
    let prefixes: Vec<&str> = documented
        .iter()
        .filter_map(|f| f.strip_suffix("<name>"))
        .collect();
    let missing: Vec<&String> = reported
        .iter()
        .filter(|f| !documented.contains(*f) && !prefixes.iter().any(|p| f.starts_with(p)))
        .collect();
    assert!(
        missing.is_empty(),
        "INFO fields not in docs/info.md: {missing:?}"
    );
    drop(redis);
}

#[test]
fn the_quick_starts_redis_cli_lines_succeed_against_a_sidecar() {
    let readme = read("README.md");
    let quick = section(&readme, "## Quick start");
    let lines: Vec<String> = blocks(quick, "sh")
        .into_iter()
        .filter(|b| b.iter().all(|l| l.starts_with("redis-cli -p 6380 ")))
        .flatten()
        .collect();
    assert!(
        lines.len() >= 3,
        "runnable redis-cli lines in the quick start"
    );
    let (_redis, sidecar) = start_pair(&[]);
    let port = sidecar.port().to_string();
    for line in &lines {
        assert!(
            !line.contains(['"', '\'', '$', '\\']),
            "plain words only: {line}"
        );
        let args: Vec<&str> = line.split_whitespace().skip(3).collect();
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(&args)
            .output()
            .expect("run redis-cli");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.starts_with("ERR") && !stdout.contains("(error)"),
            "{line}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn make_help_and_the_readme_name_the_same_targets() {
    let out = Command::new("make")
        .arg("-s")
        .arg("help")
        .current_dir(root())
        .output()
        .expect("make help");
    assert!(out.status.success());
    let help: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("make "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert!(help.contains("run") && help.contains("test"), "{help:?}");
    let readme = read("README.md");
    let named: BTreeSet<String> = readme
        .split("`make ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let development = section(&readme, "## Development");
    for target in &help {
        assert!(
            development.contains(&format!("| `make {target}")),
            "make help lists {target}, the README's Development table does not"
        );
    }
    for target in &named {
        assert!(
            help.contains(target),
            "the README names make {target}, make help does not"
        );
    }
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces
/// as `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn links_between_the_docs_resolve() {
    let mut files = vec![root().join("README.md")];
    for entry in fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap();
            if target.starts_with("http") || target.starts_with('<') {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            assert!(
                linked.exists(),
                "{}: link to {target}: no such file",
                file.display()
            );
            if !fragment.is_empty() {
                let body = fs::read_to_string(&linked).unwrap();
                assert!(
                    body.lines()
                        .filter_map(|l| l.strip_prefix('#'))
                        .any(|h| anchor(h.trim_start_matches('#').trim()) == fragment),
                    "{}: link to {target}: no such heading",
                    file.display()
                );
            }
        }
    }
}

/// The crate names of a Cargo.toml's `[dependencies]` table.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let text = read(manifest);
    let start = text.find("\n[dependencies]\n").expect("[dependencies]");
    text[start + 16..]
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn readme_dependencies_name_every_crate_and_only_those() {
    let readme = read("README.md");
    let deps = section(&readme, "## Dependencies");
    let mut named = BTreeSet::new();
    for row in deps.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                named.insert(part.to_owned());
            }
        }
    }
    let mut all = dependencies("Cargo.toml");
    all.extend(dependencies("injector/Cargo.toml"));
    let missing: Vec<&String> = all.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "README's Dependencies lacks {missing:?}"
    );
    let extra: Vec<&String> = named.difference(&all).collect();
    assert!(
        extra.is_empty(),
        "README's Dependencies names {extra:?}, not a dependency"
    );
    assert!(deps.contains("`fred`"), "why not fred");
}
