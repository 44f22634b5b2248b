//! Precedence (flag, then file, then default), the file's problems, secrecy, loading.

use super::*;

#[test]
fn defaults_when_nothing_given() {
    for file in [None, Some(""), Some("# only a comment\n")] {
        let c = Config::from_parts(&Flags::default(), file).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:6380");
        assert_eq!(c.upstream.host_port(), "127.0.0.1:6379");
        assert_eq!(
            (c.upstream.db, &c.upstream.username, &c.upstream.password),
            (0, &None, &None)
        );
        assert_eq!(c.l1_max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.l1_ttl, Duration::from_secs(60));
        assert_eq!(c.l1_compress_min_bytes, 4096);
        assert!(c.l1_cache_nil);
        assert!(!c.serve_stale_when_down);
        assert_eq!(c.acl_recheck, Duration::from_secs(1));
        assert_eq!(c.upstream_connections, 4);
        assert_eq!(c.upstream_timeout, Duration::from_secs(5));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.upstream_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.max_upstream_routes, 64);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.max_pinned, 1024);
        let want = Limits {
            max_bulk_bytes: 512 << 20,
            max_array_len: 1 << 20,
            max_inline_bytes: 65536,
        };
        assert_eq!(c.limits, want);
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.audit_rate, 0.001);
        assert_eq!(c.slow_threshold, Duration::from_millis(10));
        assert_eq!(c.slowlog_max_len, 128);
        assert_eq!(c.n_plus_one_threshold, 10);
        assert_eq!(c.n_plus_one_window, Duration::from_millis(100));
    }
}

#[test]
fn file_beats_default() {
    let text = r#"
        listen = "0.0.0.0:7000"
        upstream = "redis://:pw@10.0.0.1:6400/2"
        l1_max_bytes = "1GiB"
        l1_ttl = "500ms"
        l1_compress_min_bytes = "1KiB"
        l1_cache_nil = "off"
        serve_stale_when_down = "yes"
        acl_recheck = "200ms"
        upstream_connections = "8"
        upstream_timeout = "2s"
        connect_timeout = "250ms"
        max_clients = "100"
        max_pinned = "3"
        max_bulk_bytes = "1MiB"
        max_array_len = "1000"
        max_inline_bytes = "4KiB"
        shutdown_grace = "1m"
        audit_rate = "0.25"
    "#;
    let c = Config::from_parts(&flags_with_file(), Some(text)).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.upstream.to_string(), "redis://10.0.0.1:6400/2");
    assert_eq!(c.upstream.password.as_deref(), Some("pw"));
    assert_eq!(c.l1_max_bytes, 1 << 30);
    assert_eq!(c.l1_ttl, Duration::from_millis(500));
    assert_eq!(c.l1_compress_min_bytes, 1024);
    assert!(!c.l1_cache_nil);
    assert!(c.serve_stale_when_down);
    assert_eq!(c.acl_recheck, Duration::from_millis(200));
    assert_eq!(c.upstream_connections, 8);
    assert_eq!(c.upstream_timeout, Duration::from_secs(2));
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.max_clients, 100);
    assert_eq!(c.max_pinned, 3);
    let want = Limits {
        max_bulk_bytes: 1 << 20,
        max_array_len: 1000,
        max_inline_bytes: 4096,
    };
    assert_eq!(c.limits, want);
    assert_eq!(c.shutdown_grace, Duration::from_secs(60));
    assert_eq!(c.audit_rate, 0.25);
}

#[test]
fn file_accepts_native_toml_integers_and_booleans() {
    let text = "l1_ttl = 0\nl1_max_bytes = 1024\nl1_cache_nil = false\nmax_clients = 5\n\
                audit_rate = 0.01\n";
    let c = Config::from_parts(&flags_with_file(), Some(text)).unwrap();
    assert_eq!(c.audit_rate, 0.01);
    assert_eq!(c.l1_ttl, Duration::ZERO);
    assert_eq!(c.l1_max_bytes, 1024);
    assert!(!c.l1_cache_nil);
    assert_eq!(c.max_clients, 5);
}

#[test]
fn flag_beats_file() {
    let flags = Flags {
        l1_ttl: Some("5s".into()),
        upstream: Some("redis://flag-host".into()),
        l1_cache_nil: Some("true".into()),
        ..flags_with_file()
    };
    let text =
        "l1_ttl = \"9s\"\nupstream = \"redis://file-host\"\nl1_cache_nil = false\nmax_clients = 7";
    let c = Config::from_parts(&flags, Some(text)).unwrap();
    assert_eq!(c.l1_ttl, Duration::from_secs(5));
    assert_eq!(c.upstream.host, "flag-host");
    assert!(c.l1_cache_nil);
    assert_eq!(
        c.max_clients, 7,
        "a key the flags leave alone still comes from the file"
    );
}

#[test]
fn flag_over_a_bad_file_value_hides_it() {
    let flags = Flags {
        l1_ttl: Some("5s".into()),
        ..flags_with_file()
    };
    let c = Config::from_parts(&flags, Some("l1_ttl = \"garbage\"")).unwrap();
    assert_eq!(c.l1_ttl, Duration::from_secs(5));
}

#[test]
fn unknown_toml_key_is_one_problem_naming_the_file() {
    let got = problems(
        &flags_with_file(),
        Some("l1_ttl = \"5s\"\nl1_tll = \"5s\"\n"),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("--config: nearcache.toml line 2, column 1: unknown field `l1_tll`"),
        "{got:?}"
    );
}

#[test]
fn toml_syntax_and_type_errors_are_one_problem_each_with_flag_problems_too() {
    let flags = Flags {
        max_clients: Some("many".into()),
        ..flags_with_file()
    };
    for (text, want) in [
        ("l1_ttl = ", "line 1, column 10: invalid TOML syntax"),
        ("l1_ttl = \n", "line 1, column 10: invalid string expected"),
        (
            "\nl1_ttl = \"5s\" x",
            "line 2, column 15: expected newline, `#`",
        ),
        (
            "l1_ttl = [1]\n",
            "line 1, column 10: invalid type: sequence, expected a string, number or",
        ),
        (
            "[l1_ttl]\n",
            "line 1, column 1: invalid type: map, expected a string, number or",
        ),
        (
            "l1_ttl = 1\nl1_ttl = 2",
            "line 2, column 1: duplicate key `l1_ttl`",
        ),
    ] {
        let got = problems(&flags, Some(text));
        assert_eq!(got.len(), 2, "{text}: {got:?}");
        assert!(
            got[0].starts_with(&format!("--config: nearcache.toml {want}")),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("--max-clients: invalid number \"many\""),
            "{got:?}"
        );
    }
}

#[test]
fn a_toml_float_is_parsed_like_the_flag_text() {
    assert_eq!(
        problems(&flags_with_file(), Some("l1_ttl = 1.5")),
        ["--l1-ttl: invalid duration \"1.5\" (use e.g. 500ms, 60s, 5m) (in nearcache.toml)"]
    );
}

#[test]
fn several_bad_values_are_reported_together() {
    let flags = Flags {
        listen: Some("nope".into()),
        upstream: Some("rediss://cache:6379/x".into()),
        l1_ttl: Some("abc".into()),
        l1_max_bytes: Some("lots".into()),
        max_clients: Some("0".into()),
        ..flags_with_file()
    };
    let text = "serve_stale_when_down = \"maybe\"\nshutdown_grace = -3";
    let got = problems(&flags, Some(text));
    assert_eq!(
        got,
        [
            "--listen: invalid address \"nope\" (use IP:PORT, e.g. 127.0.0.1:6380)",
            "--upstream: invalid db \"x\" (must be a number)",
            "--l1-max-bytes: invalid size \"lots\" (use e.g. 4096, 64KiB, 256MiB, 1GiB)",
            "--l1-ttl: invalid duration \"abc\" (use e.g. 500ms, 60s, 5m)",
            "--serve-stale-when-down: invalid boolean \"maybe\" (use true or false) (in nearcache.toml)",
            "--max-clients: must be at least 1, got \"0\"",
            "--shutdown-grace: invalid duration \"-3\" (use e.g. 500ms, 60s, 5m) (in nearcache.toml)",
        ]
    );
}

#[test]
fn zero_is_refused_where_it_makes_no_sense() {
    let zero = || Some("0".to_owned());
    let flags = Flags {
        l1_compress_min_bytes: zero(),
        upstream_connections: zero(),
        upstream_timeout: zero(),
        connect_timeout: Some("0ms".into()),
        max_clients: zero(),
        max_pinned: zero(),
        max_bulk_bytes: zero(),
        max_array_len: zero(),
        max_inline_bytes: zero(),
        ..Default::default()
    };
    let got = problems(&flags, None);
    let flags_named: Vec<&str> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(
        flags_named,
        [
            "--l1-compress-min-bytes",
            "--upstream-connections",
            "--upstream-timeout",
            "--connect-timeout",
            "--max-clients",
            "--max-pinned",
            "--max-bulk-bytes",
            "--max-array-len",
            "--max-inline-bytes",
        ]
    );
    let allowed = Flags {
        l1_ttl: zero(),
        l1_max_bytes: zero(),
        shutdown_grace: zero(),
        acl_recheck: zero(),
        ..Default::default()
    };
    let c = Config::from_parts(&allowed, None).unwrap();
    assert_eq!(
        (c.l1_ttl, c.l1_max_bytes, c.shutdown_grace, c.acl_recheck),
        (Duration::ZERO, 0, Duration::ZERO, Duration::ZERO)
    );
}

#[test]
fn audit_rate_is_a_fraction_from_zero_to_one() {
    for (text, want) in [("0", 0.0), ("1", 1.0), ("0.001", 0.001)] {
        let flags = Flags {
            audit_rate: Some(text.into()),
            ..Default::default()
        };
        assert_eq!(Config::from_parts(&flags, None).unwrap().audit_rate, want);
    }
    let c = Config::from_parts(&flags_with_file(), Some("audit_rate = 1")).unwrap();
    assert_eq!(c.audit_rate, 1.0);
    let flags = Flags {
        audit_rate: Some("1.5".into()),
        ..flags_with_file()
    };
    assert_eq!(
        problems(&flags, Some("audit_rate = -0.5")),
        ["--audit-rate: must be from 0 to 1, got \"1.5\""]
    );
    assert_eq!(
        problems(&flags_with_file(), Some("audit_rate = -0.5")),
        ["--audit-rate: must be from 0 to 1, got \"-0.5\" (in nearcache.toml)"]
    );
    assert_eq!(
        problems(&flags_with_file(), Some("audit_rate = \"often\"")),
        ["--audit-rate: invalid fraction \"often\" (use e.g. 0.001, 0 or 1) (in nearcache.toml)"]
    );
}

#[test]
fn error_display_is_one_problem_per_line() {
    let err = ConfigError {
        problems: vec!["--a: x".into(), "--b: y".into()],
    };
    assert_eq!(err.to_string(), "--a: x\n--b: y");
}

#[test]
fn password_never_shows_in_display_debug_or_problems() {
    let url = "redis://bob:hunter2@cache:6390/4".to_owned();
    let flags = Flags {
        upstream: Some(url.clone()),
        ..Default::default()
    };
    let c = Config::from_parts(&flags, None).unwrap();
    assert_eq!(c.upstream.password.as_deref(), Some("hunter2"));
    assert_eq!(c.upstream.to_string(), "redis://cache:6390/4");
    for shown in [
        format!("{c:?}"),
        format!("{:?}", c.upstream),
        format!("{flags:?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cache"), "{shown}");
    }
    let bad = Flags {
        upstream: Some("redis://bob:hunter2@cache:x".into()),
        ..Default::default()
    };
    let err = Config::from_parts(&bad, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--upstream: invalid port (must be a number from 1 to 65535)"
    );
}

#[test]
fn load_reads_the_config_file() {
    let path = std::env::temp_dir().join(format!("nearcache-config-{}.toml", std::process::id()));
    std::fs::write(&path, "l1_ttl = \"7s\"\n").unwrap();
    let loaded = Config::load(&Flags {
        config: Some(path.clone()),
        ..Default::default()
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap().l1_ttl, Duration::from_secs(7));
}

#[test]
fn load_reports_an_unreadable_file_with_the_other_problems() {
    let flags = Flags {
        config: Some("/nonexistent/nearcache.toml".into()),
        l1_ttl: Some("x".into()),
        ..Default::default()
    };
    let got = Config::load(&flags).unwrap_err().problems;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("--config: cannot read /nonexistent/nearcache.toml: "),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("--l1-ttl: invalid duration \"x\""),
        "{got:?}"
    );
}

#[test]
fn load_refuses_a_missing_or_bad_bus_key_file() {
    let path = std::env::temp_dir().join(format!("nearcache-bus-key-{}", std::process::id()));
    let flags = Flags {
        bus_key_file: Some(path.display().to_string()),
        ..Default::default()
    };
    let got = Config::load(&flags).unwrap_err().problems;
    assert!(
        got[0].starts_with("--bus-key-file: cannot read "),
        "{got:?}"
    );
    std::fs::write(&path, "short\n").unwrap();
    let got = Config::load(&flags).unwrap_err().problems;
    assert!(got[0].contains("shorter than 16 bytes"), "{got:?}");
    std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
    let loaded = Config::load(&flags).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.bus_key_file, Some(path));
}
