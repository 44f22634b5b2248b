//! Each family of options: tracking, the bus, metrics, logs, the profiler, namespaces,
//! warming.

use super::*;

/// The example file in docs/configuration.md is a valid configuration with the values it shows.
#[test]
fn docs_example_file_is_valid() {
    let doc = include_str!("../../../docs/configuration.md");
    let start = doc
        .find("```toml\n")
        .expect("a toml block in docs/configuration.md")
        + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").expect("closing fence")];
    let c = Config::from_parts(&flags_with_file(), Some(text)).unwrap();
    assert_eq!(c.l1_max_bytes, 512 << 20);
    assert_eq!(c.l1_ttl, std::time::Duration::from_secs(30));
    assert_eq!(c.threads, 1);
    assert_eq!(c.audit_rate, 0.001);
    assert_eq!(c.upstream.username.as_deref(), Some("app"));
}

#[test]
fn tracking_defaults_on_and_can_be_turned_off() {
    let c = Config::from_parts(&Flags::default(), None).unwrap();
    assert_eq!(c.tracking, TrackingMode::Default);
    assert_eq!(c.invalidation_heartbeat, Duration::from_secs(1));
    let flags = Flags {
        tracking: Some("OFF".into()),
        ..flags_with_file()
    };
    let c = Config::from_parts(&flags, Some("invalidation_heartbeat = \"250ms\"\n")).unwrap();
    assert_eq!(c.tracking, TrackingMode::Off);
    assert_eq!(c.invalidation_heartbeat.as_millis(), 250);
    let got = problems(&flags_with_file(), Some("tracking = \"broadcast\"\n"));
    assert!(
        got[0].starts_with("--tracking: invalid tracking mode"),
        "{got:?}"
    );
}

#[test]
fn invalidation_channel_defaults_and_comes_from_flag_or_file() {
    let c = Config::from_parts(&Flags::default(), None).unwrap();
    assert_eq!(c.invalidation_channel, "nearcache:invalidate");
    let c = Config::from_parts(
        &flags_with_file(),
        Some("invalidation_channel = \"app:inv\"\n"),
    )
    .unwrap();
    assert_eq!(c.invalidation_channel, "app:inv");
    let flags = Flags {
        invalidation_channel: Some("flag:inv".into()),
        ..flags_with_file()
    };
    let c = Config::from_parts(&flags, Some("invalidation_channel = \"app:inv\"\n")).unwrap();
    assert_eq!(c.invalidation_channel, "flag:inv");
    let flags = Flags {
        invalidation_channel: Some(String::new()),
        ..flags_with_file()
    };
    let got = problems(&flags, None);
    assert!(
        got[0].starts_with("--invalidation-channel: the channel name is empty"),
        "{got:?}"
    );
    let got = problems(&flags_with_file(), Some("invalidation_channel = \"a b\"\n"));
    assert!(
        got[0].starts_with("--invalidation-channel: invalid channel name \"a b\""),
        "{got:?}"
    );
}

#[test]
fn metrics_listen_is_an_address_or_off() {
    let with = |v: &str| Flags {
        metrics_listen: Some(v.into()),
        ..Default::default()
    };
    let default = Config::load(&Flags::default()).unwrap();
    assert_eq!(default.metrics_listen, Some(DEFAULT_METRICS_LISTEN));
    let on = Config::load(&with("0.0.0.0:9100")).unwrap();
    assert_eq!(on.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
    assert_eq!(Config::load(&with("OFF")).unwrap().metrics_listen, None);
    let bad = Config::load(&with("9100")).unwrap_err().problems;
    assert!(
        bad[0].starts_with("--metrics-listen: invalid address"),
        "{bad:?}"
    );
}

#[test]
fn log_options_default_to_human_and_no_level() {
    let c = Config::from_parts(&Flags::default(), None).unwrap();
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(c.log_level, None, "unset: RUST_LOG, else info, applies");
    assert_eq!(DEFAULT_LOG_LEVEL, LevelFilter::INFO);
}

#[test]
fn log_options_come_from_the_file_and_flags_beat_it() {
    let text = "log_format = \"json\"\nlog_level = \"debug\"\n";
    let c = Config::from_parts(&flags_with_file(), Some(text)).unwrap();
    assert_eq!(
        (c.log_format, c.log_level),
        (LogFormat::Json, Some(LevelFilter::DEBUG))
    );
    let flags = Flags {
        log_format: Some("human".into()),
        log_level: Some("warn".into()),
        ..flags_with_file()
    };
    let c = Config::from_parts(&flags, Some(text)).unwrap();
    assert_eq!(
        (c.log_format, c.log_level),
        (LogFormat::Human, Some(LevelFilter::WARN))
    );
}

#[test]
fn bad_log_options_are_problems_naming_the_flag() {
    let flags = Flags {
        log_format: Some("xml".into()),
        ..flags_with_file()
    };
    assert_eq!(
        problems(&flags, Some("log_level = \"loud\"")),
        [
            "--log-format: invalid log format \"xml\" (use human or json)",
            "--log-level: invalid log level \"loud\" (use error, warn, info, debug, trace or off) \
             (in nearcache.toml)",
        ]
    );
}

#[test]
fn profiler_options_come_from_flag_or_file_and_are_checked() {
    let text = "slow_threshold = \"50ms\"\nslowlog_max_len = 16\n\
                n_plus_one_threshold = 5\nn_plus_one_window = \"1s\"\n";
    let c = Config::from_parts(&flags_with_file(), Some(text)).unwrap();
    assert_eq!(c.slow_threshold, Duration::from_millis(50));
    assert_eq!(c.slowlog_max_len, 16);
    assert_eq!(c.n_plus_one_threshold, 5);
    assert_eq!(c.n_plus_one_window, Duration::from_secs(1));
    let flags = Flags {
        slow_threshold: Some("0".into()),
        ..flags_with_file()
    };
    let c = Config::from_parts(&flags, Some(text)).unwrap();
    assert_eq!(c.slow_threshold, Duration::ZERO, "0 logs every call");
    let flags = Flags {
        slow_threshold: Some("fast".into()),
        slowlog_max_len: Some("0".into()),
        n_plus_one_threshold: Some("-1".into()),
        n_plus_one_window: Some("0ms".into()),
        ..Default::default()
    };
    assert_eq!(
        problems(&flags, None),
        [
            "--slow-threshold: invalid duration \"fast\" (use e.g. 500ms, 60s, 5m)",
            "--slowlog-max-len: must be at least 1, got \"0\"",
            "--n-plus-one-threshold: invalid number \"-1\" (use a whole number >= 1)",
            "--n-plus-one-window: must be greater than 0, got \"0ms\"",
        ]
    );
}

#[test]
fn namespaces_keep_their_order_and_leave_absent_options_to_the_defaults() {
    let file = r#"
l1_max_bytes = "64MiB"
[[namespace]]
name = "session"
pattern = "session:*"
cache = false
[[namespace]]
name = "flags"
pattern = "flag:*"
l1_ttl = "5m"
cache_nil = false
compress_min_bytes = "8KiB"
max_bytes = "32MiB"
"#;
    let c = Config::from_parts(&flags_with_file(), Some(file)).unwrap();
    let names: Vec<_> = c.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["session", "flags"]);
    let session = &c.namespaces[0];
    assert!(!session.cache);
    assert_eq!(
        (session.l1_ttl, session.cache_nil, session.max_bytes),
        (None, None, None)
    );
    let flags = &c.namespaces[1];
    assert_eq!(flags.pattern, "flag:*");
    assert!(flags.cache);
    assert_eq!(flags.l1_ttl, Some(Duration::from_secs(300)));
    assert_eq!(flags.cache_nil, Some(false));
    assert_eq!(flags.compress_min_bytes, Some(8192));
    assert_eq!(flags.max_bytes, Some(32 << 20));
    assert!(Config::from_parts(&Flags::default(), None)
        .unwrap()
        .namespaces
        .is_empty());
}

#[test]
fn bad_namespaces_are_refused_naming_each_namespace() {
    let file = r#"
[[namespace]]
name = "a"
pattern = "a:*"
[[namespace]]
name = "z"
pattern = "z:[xy"
[[namespace]]
name = "b"
pattern = "b:*"
ttl = "5m"
[[namespace]]
name = "a"
pattern = "c:*"
[[namespace]]
pattern = "d:*"
[[namespace]]
name = "e"
pattern = "e:*"
l1_ttl = "soon"
max_bytes = "1TiB"
[[namespace]]
name = "default"
pattern = ""
"#;
    let p = problems(&flags_with_file(), Some(file));
    let has = |needle: &str| p.iter().any(|l| l.contains(needle));
    assert!(has(r#"namespace "z": bad pattern "z:[xy""#), "{p:#?}");
    assert!(has(r#"namespace "b": ttl: unknown key"#), "{p:#?}");
    assert!(has(r#"namespace "a": duplicate name"#), "{p:#?}");
    assert!(has("namespace #5: missing name"), "{p:#?}");
    assert!(has(r#"namespace "e": l1_ttl: invalid duration"#), "{p:#?}");
    assert!(has(r#"namespace "e": max_bytes: invalid size"#), "{p:#?}");
    assert!(
        has(r#"namespace "default": name "default" is the label"#),
        "{p:#?}"
    );
    assert!(
        has(r#"namespace "default": bad pattern "": the pattern is empty"#),
        "{p:#?}"
    );
}

#[test]
fn namespace_shares_cannot_exceed_l1() {
    let file = r#"
l1_max_bytes = "10MiB"
[[namespace]]
name = "a"
pattern = "a:*"
max_bytes = "6MiB"
[[namespace]]
name = "b"
pattern = "b:*"
max_bytes = "6MiB"
"#;
    let p = problems(&flags_with_file(), Some(file));
    assert!(
        p.iter().any(|l| l.contains("max_bytes add up to")),
        "{p:#?}"
    );
}

#[test]
fn warm_defaults_and_file_values() {
    let c = Config::from_parts(&Flags::default(), None).unwrap();
    assert_eq!(c.warm, WarmConfig::defaults(c.l1_max_bytes));
    assert!(c.warm.patterns.is_empty() && c.warm.from_peers && c.warm.rewarm);
    let file = r#"
[warm]
patterns = ["flag:*", "config:*"]
max_keys = 500
max_bytes = "1MiB"
rate = 200
batch = 50
warm_before_ready = true
from_peers = false
peer_keys = 10
peer_wait = "2s"
rewarm = false
"#;
    let w = Config::from_parts(&flags_with_file(), Some(file))
        .unwrap()
        .warm;
    assert_eq!(w.patterns, ["flag:*", "config:*"]);
    assert_eq!(
        (w.max_keys, w.max_bytes, w.rate, w.batch),
        (500, 1 << 20, 200, 50)
    );
    assert!(w.warm_before_ready && !w.from_peers && !w.rewarm);
    assert_eq!((w.peer_keys, w.peer_wait), (10, Duration::from_secs(2)));
    let bad = r#"
[warm]
patterns = ["ok:*", "x\\"]
rate = 0
speed = 3
"#;
    let p = problems(&flags_with_file(), Some(bad));
    let has = |needle: &str| p.iter().any(|l| l.contains(needle));
    assert!(has(r#"[warm] patterns: bad pattern "x\\""#), "{p:#?}");
    assert!(has("[warm] rate: must be at least 1"), "{p:#?}");
    assert!(has("[warm] speed: unknown key"), "{p:#?}");
}

#[test]
fn sentinel_credentials_need_a_sentinel_upstream() {
    let flags = Flags {
        sentinel_password: Some("pw".into()),
        sentinel_username_file: Some("/run/u".into()),
        ..Flags::default()
    };
    let got = problems(&flags, None);
    assert!(
        got.iter().any(|p| p == "--sentinel-password: the upstream is not a Sentinel one (use a redis+sentinel:// URL)"),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| p.starts_with("--sentinel-username-file:")),
        "{got:?}"
    );
    let flags = Flags {
        upstream: Some("redis+sentinel://127.0.0.1:26379/mymaster".into()),
        sentinel_password: Some("pw".into()),
        ..Flags::default()
    };
    let c = Config::from_parts(&flags, None).unwrap();
    assert_eq!(c.sentinel_password.as_deref(), Some("pw"));
}
