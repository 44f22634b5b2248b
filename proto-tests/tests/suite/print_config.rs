//! `nearcache --print-config`: the effective configuration from flags, environment and
//! `--config` file, printed as TOML that `--config` accepts back, secrets redacted, exit 0;
//! an invalid configuration exits 64 with the usual problems. No server is started.

use std::fs;
use std::time::Duration;

use proto_tests::*;

/// Printing needs no network: generous for a loaded machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

const PASSWORD: &str = "s3cret-Pa55";

/// `--print-config` with `args` and `env`; exit 0 and its stdout.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let out = run_nearcache(&all, env, RUN_TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{all:?}: stderr:\n{}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    out.stdout
}

fn has_line(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
}

#[test]
fn print_config_shows_what_flags_env_and_file_set_and_never_the_password() {
    let dir = tempdir::TempDir::new("print-config");
    let file = dir.path().join("nearcache.toml");
    fs::write(
        &file,
        "l1_ttl = \"5m\"\nmax_clients = 50\nthreads = 3\n\
         [[namespace]]\nname = \"sessions\"\npattern = \"session:*\"\ncache = false\n",
    )
    .unwrap();
    let upstream = format!("redis://app:{PASSWORD}@db.example:6400/2");
    let out = print_config(
        &["--config", file.to_str().unwrap(), "--threads", "2"],
        &[
            ("NEARCACHE_UPSTREAM", &upstream),
            ("NEARCACHE_L1_MAX_BYTES", "64MiB"),
        ],
    );
    has_line(&out, "threads = \"2\""); // the flag over the file
    has_line(&out, "l1_max_bytes = \"64MiB\""); // the environment
    has_line(&out, "l1_ttl = \"5m\""); // the file
    has_line(&out, "max_clients = \"50\"");
    has_line(&out, "listen = \"127.0.0.1:6380\""); // a default
    has_line(&out, "upstream = \"redis://app:***@db.example:6400/2\"");
    has_line(&out, "[[namespace]]");
    has_line(&out, "pattern = \"session:*\"");
    assert!(!out.contains(PASSWORD), "the password shows:\n{out}");
    assert!(
        !out.contains("config ="),
        "--config is not a file key:\n{out}"
    );
}

#[test]
fn print_config_output_read_back_prints_the_same() {
    let (dir, key_file) = bus_key_file(&[BUS_KEY]);
    let upstream = format!("redis://:{PASSWORD}@127.0.0.1:7000/1?timeout=3s");
    let first = print_config(
        &[
            "--upstream",
            &upstream,
            "--bus-key-file",
            &key_file,
            "--log-level",
            "debug",
            "--metrics-listen",
            "off",
            "--l1-cache-nil",
            "no",
        ],
        &[],
    );
    assert!(!first.contains(PASSWORD), "{first}");
    assert!(
        !first.contains(BUS_KEY),
        "the bus key's contents show:\n{first}"
    );
    has_line(&first, &format!("bus_key_file = \"{key_file}\""));
    has_line(&first, "log_level = \"debug\"");
    let file = dir.path().join("printed.toml");
    fs::write(&file, &first).unwrap();
    let second = print_config(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(second, first);
}

#[test]
fn print_config_of_an_invalid_configuration_exits_64_naming_each_problem() {
    let out = run_nearcache(
        &["--print-config", "--l1-ttl", "soon", "--max-clients", "0"],
        &[("NEARCACHE_UPSTREAM", "redis://:pw@h:6379?bogus=1")],
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(64), "stderr:\n{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    for flag in ["--l1-ttl: ", "--max-clients: ", "--upstream: "] {
        assert!(out.stderr.contains(flag), "{flag}:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("pw"), "{}", out.stderr);
    // A bus key file that cannot be read stops it too, as it stops a start.
    let out = run_nearcache(
        &["--print-config", "--bus-key-file", "/nonexistent/bus.key"],
        &[],
        RUN_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(64), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("--bus-key-file"), "{}", out.stderr);
}
