//! The options table checked against what is derived from it and what documents it: clap's
//! flags and env vars, the TOML keys, the defaults, docs/configuration.md's and the README's
//! option tables, and `--print-config`.

use clap::CommandFactory;

use super::*;

fn flags_with_file() -> Flags {
    Flags {
        config: Some("nearcache.toml".into()),
        ..Default::default()
    }
}

/// `| a | b | c |` into its trimmed cells.
fn cells(row: &str) -> Vec<&str> {
    row.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// A default as the docs write it: backquoted, or `none` bare.
fn documented_default(spec: &OptionSpec) -> String {
    match spec.default.shown() {
        "none" => "none".to_owned(),
        text => format!("`{text}`"),
    }
}

/// The rows of the markdown option tables of `doc` (every line starting ``| `--``).
fn option_rows(doc: &str) -> Vec<(String, Vec<&str>)> {
    doc.lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|row| {
            let flag = row[3..].split([' ', '`']).next().unwrap().to_owned();
            (flag, cells(row))
        })
        .collect()
}

/// docs/configuration.md's table has one row per option with its flag and value name,
/// environment variable, TOML key and default, plus `--config`, and nothing else; the
/// README's short table names only options, each with the declared env var and default.
#[test]
fn option_tables_in_the_docs_match_the_declared_options() {
    let doc = include_str!("../../docs/configuration.md");
    let rows = option_rows(doc);
    for spec in OPTIONS {
        let flag = spec.flag();
        let (_, cells) = rows
            .iter()
            .find(|(f, _)| *f == flag)
            .unwrap_or_else(|| panic!("{flag}: no row in docs/configuration.md's table"));
        let want = [
            format!("`{flag} {}`", spec.value_name),
            format!("`{}`", spec.env),
            format!("`{}`", spec.key),
            documented_default(spec),
        ];
        assert_eq!(
            cells[..4],
            want.map(|c| c),
            "{flag} in docs/configuration.md"
        );
    }
    for (flag, cells) in &rows {
        if flag == "--config" {
            assert_eq!(
                cells[..4],
                ["`--config FILE`", "`NEARCACHE_CONFIG`", "—", "none"]
            );
            continue;
        }
        assert!(
            OPTIONS.iter().any(|s| s.flag() == *flag),
            "docs/configuration.md documents {flag}, which is not an option"
        );
    }
    assert_eq!(rows.len(), OPTIONS.len() + 1, "one row per option");

    let readme = include_str!("../../README.md");
    let rows = option_rows(readme);
    assert!(rows.len() >= 5, "the README's option table");
    for (flag, cells) in rows {
        if flag == "--config" {
            continue;
        }
        let spec = OPTIONS
            .iter()
            .find(|s| s.flag() == flag)
            .unwrap_or_else(|| panic!("the README documents {flag}, which is not an option"));
        let want = [
            format!("`{flag} {}`", spec.value_name),
            format!("`{}`", spec.env),
            documented_default(spec),
        ];
        assert_eq!(cells[..3], want.map(|c| c), "{flag} in the README");
    }
}

/// Every example-file key in docs/configuration.md is an option and every option but
/// `--config` is in it.
#[test]
fn docs_example_file_has_every_key() {
    let doc = include_str!("../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("the example file");
    let example = &doc[start..start + 8 + doc[start + 8..].find("```").expect("closing fence")];
    for spec in OPTIONS {
        assert!(
            example.lines().any(|l| l
                .trim_start_matches("# ")
                .starts_with(&format!("{} = ", spec.key))),
            "{} missing from the example file",
            spec.key
        );
    }
}

/// clap's arguments are the table's, with its env vars, placeholders and defaults in the
/// help; a secret's env value is hidden from `--help`.
#[test]
fn clap_flags_are_the_declared_options() {
    let cmd = Flags::command();
    cmd.clone().debug_assert();
    let args: Vec<_> = cmd
        .get_arguments()
        .filter(|a| {
            !matches!(
                a.get_long(),
                Some("help" | "version" | "config" | "print-config")
            )
        })
        .collect();
    assert_eq!(args.len(), OPTIONS.len());
    for (arg, spec) in args.iter().zip(OPTIONS) {
        let flag = spec.flag();
        assert_eq!(arg.get_long().map(|l| format!("--{l}")), Some(flag.clone()));
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(spec.env),
            "{flag}"
        );
        assert_eq!(
            spec.env,
            format!("NEARCACHE_{}", spec.key.to_uppercase()),
            "{flag}"
        );
        let names = arg.get_value_names().unwrap_or_default();
        assert_eq!(
            names.first().map(|n| n.as_str()),
            Some(spec.value_name),
            "{flag}"
        );
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert_eq!(
            help,
            format!("{} [default: {}]", spec.help, spec.default.shown())
        );
        assert_eq!(
            arg.is_hide_env_values_set(),
            spec.redact.is_some(),
            "{flag}"
        );
    }
}

/// Every option but `--config` is a file key: a file setting each to garbage names each
/// option, in declaration order (a path or a prefix list is any text: the key file is checked by `load`,
/// the TLS files when the sidecar starts; so is a user name or a password).
#[test]
fn every_option_is_a_file_key_and_names_itself_in_problems() {
    // Paths, a password, and a prefix list (any text is a prefix): any text is one.
    let paths = [
        "tracking_prefixes",
        "upstream_username_file",
        "upstream_password_file",
        "sentinel_password",
        "sentinel_username_file",
        "sentinel_password_file",
        "bus_key_file",
        "upstream_tls_ca",
        "upstream_tls_cert",
        "upstream_tls_key",
        "sentinel_username",
        "sentinel_password",
    ];
    let garbled: Vec<&OptionSpec> = OPTIONS.iter().filter(|s| !paths.contains(&s.key)).collect();
    let text: String = garbled
        .iter()
        .map(|s| format!("{} = \"bad value\"\n", s.key))
        .collect();
    let got = Config::from_parts(&flags_with_file(), Some(&text))
        .unwrap_err()
        .problems;
    assert_eq!(got.len(), garbled.len(), "{got:?}");
    for (problem, spec) in got.iter().zip(garbled) {
        assert!(
            problem.starts_with(&format!("{}: ", spec.flag())),
            "{problem}"
        );
        assert!(problem.ends_with(" (in nearcache.toml)"), "{problem}");
    }
}

/// Every declared default parses, and the named constants other modules use agree with it.
#[test]
fn declared_defaults_parse_and_match_the_named_constants() {
    let c = Config::from_parts(&Flags::default(), None).unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert_eq!(c.metrics_listen, Some(DEFAULT_METRICS_LISTEN));
    assert_eq!(
        spec::log_level.default.shown(),
        DEFAULT_LOG_LEVEL.to_string().to_lowercase()
    );
    assert_eq!(c.log_level, None);
    assert_eq!(c.bus_key_file, None);
    // Every default given as a flag changes nothing.
    let printed = Config::print(&Flags::default()).unwrap();
    for spec in OPTIONS {
        let DefaultText::Value(text) = spec.default else {
            continue;
        };
        let file = format!("{} = \"{text}\"\n", spec.key);
        let c = Config::resolve(&flags_with_file(), Some(&file)).unwrap();
        assert_eq!(print::render(&c.1), printed, "{}", spec.key);
    }
}

/// What `--print-config` prints for these flags and this file.
fn printed(flags: &Flags, file: Option<&str>) -> String {
    let (_, printable) = Config::resolve(flags, file).expect("valid");
    print::render(&printable)
}

#[test]
fn print_config_shows_flags_file_and_defaults_and_reads_back_the_same() {
    let flags = Flags {
        l1_ttl: Some("5m".into()),
        upstream: Some("redis://app:s3cr%40t@db.example:6400/2?timeout=1s".into()),
        ..flags_with_file()
    };
    let file = r#"
        max_clients = 50
        l1_cache_nil = false
        l1_ttl = "1s"
        bus_key_file = "/etc/nearcache/bus.key"
        [warm]
        patterns = ["user:*"]
        [[namespace]]
        name = "sessions"
        pattern = "session:*"
        cache = false
        [[namespace]]
        name = "cfg"
        pattern = "cfg:*"
        l1_ttl = "10m"
    "#;
    let out = printed(&flags, Some(file));
    for line in [
        "l1_ttl = \"5m\"",
        "upstream = \"redis://app:***@db.example:6400/2\"",
        "max_clients = \"50\"",
        "l1_cache_nil = \"false\"",
        "bus_key_file = \"/etc/nearcache/bus.key\"",
        "listen = \"127.0.0.1:6380\"",
        "[warm]",
        "[[namespace]]",
        "pattern = \"cfg:*\"",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    assert!(!out.contains("s3cr"), "{out}");
    assert!(
        !out.contains("log_level"),
        "unset options are left out:\n{out}"
    );
    // Fed back as the file (no flags), it prints the same.
    let again = printed(&flags_with_file(), Some(&out));
    assert_eq!(again, out);
    let c = Config::from_parts(&flags_with_file(), Some(&out)).unwrap();
    assert_eq!(c.namespaces.len(), 2);
}

#[test]
fn printable_url_hides_every_password_and_stays_a_url() {
    for (given, shown) in [
        ("redis://h", "redis://h:6379/0"),
        ("redis://:pw@h:7000/3", "redis://:***@h:7000/3"),
        ("redis://u%3Ax:pw@[::1]", "redis://u%3Ax:***@[::1]:6379/0"),
        ("redis://u@h?password=pw&db=4", "redis://u:***@h:6379/4"),
        ("redis://h?username=u", "redis://u@h:6379/0"),
    ] {
        assert_eq!(url::printable(given), shown, "{given}");
        let back = url::upstream(shown).unwrap();
        let first = url::upstream(given).unwrap();
        assert_eq!(
            (&back.host, back.port, &back.username, back.db),
            (&first.host, first.port, &first.username, first.db)
        );
    }
    let debug = format!(
        "{:?}",
        Flags {
            upstream: Some("redis://:pw@h".into()),
            ..Default::default()
        }
    );
    assert!(!debug.contains("pw"), "{debug}");
}

/// The options a SIGHUP applies (`crate::reload`); every other one differing is reported
/// as needing a restart.
#[test]
fn live_options_are_the_ones_reload_applies() {
    let live: Vec<&str> = OPTIONS.iter().filter(|s| s.live).map(|s| s.key).collect();
    assert_eq!(
        live,
        [
            "acl_recheck",
            "audit_rate",
            "log_level",
            "slow_threshold",
            "slowlog_max_len",
            "n_plus_one_threshold",
            "n_plus_one_window"
        ]
    );
    let a = Config::from_parts(&Flags::default(), None).unwrap();
    let flags = Flags {
        threads: Some("2".into()),
        audit_rate: Some("0.5".into()),
        ..Default::default()
    };
    let b = Config::from_parts(&flags, None).unwrap();
    assert_eq!(a.differing(&b), ["threads", "audit_rate"]);
    assert!(a.differing(&a.clone()).is_empty());
}
