//! Unit tests of `parse`.

use super::*;

#[test]
fn size_accepts_plain_and_suffixed_bytes() {
    for (text, want) in [
        ("4096", 4096),
        ("0", 0),
        ("64KiB", 64 << 10),
        ("256MiB", 256 << 20),
        ("1GiB", 1 << 30),
        ("10MB", 10_000_000),
        ("10kb", 10_000),
        ("3 gb", 3_000_000_000),
        ("7B", 7),
        (" 2 mib ", 2 << 20),
    ] {
        assert_eq!(size(text), Ok(want), "{text}");
    }
}

#[test]
fn size_refuses_garbage_units_and_overflow() {
    for text in ["", "abc", "KiB", "-1", "1.5MiB", "10 TB", "10 KiBs", "1e6"] {
        assert!(
            size(text).unwrap_err().starts_with("invalid size"),
            "{text}"
        );
    }
    assert!(size("18446744073709551616")
        .unwrap_err()
        .contains("too large"));
    assert!(size("17179869184GiB").unwrap_err().contains("too large"));
    assert!(positive_size("0").unwrap_err().contains("at least 1"));
    assert_eq!(positive_size("1KiB"), Ok(1024));
}

#[test]
fn duration_accepts_units_and_bare_seconds() {
    for (text, want) in [
        ("500ms", Duration::from_millis(500)),
        ("60s", Duration::from_secs(60)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("30", Duration::from_secs(30)),
        ("0", Duration::ZERO),
        ("2 MS", Duration::from_millis(2)),
    ] {
        assert_eq!(duration(text), Ok(want), "{text}");
    }
}

#[test]
fn duration_refuses_garbage_and_overflow() {
    for text in ["", "abc", "s", "-1s", "1.5s", "5d", "10 sec"] {
        let err = duration(text).unwrap_err();
        assert_eq!(err, format!("invalid duration {text:?} {DURATION_HINT}"));
    }
    assert!(duration("18446744073709551615h")
        .unwrap_err()
        .contains("too large"));
    assert!(positive_duration("0ms")
        .unwrap_err()
        .contains("greater than 0"));
    assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
}

#[test]
fn boolean_accepts_the_usual_words() {
    for t in ["true", "TRUE", "1", "yes", "on", " On "] {
        assert_eq!(boolean(t), Ok(true), "{t}");
    }
    for t in ["false", "False", "0", "no", "off"] {
        assert_eq!(boolean(t), Ok(false), "{t}");
    }
    for t in ["", "maybe", "2", "y", "enabled"] {
        assert!(
            boolean(t).unwrap_err().starts_with("invalid boolean"),
            "{t}"
        );
    }
}

#[test]
fn count_needs_a_whole_number_of_at_least_one() {
    assert_eq!(count("1"), Ok(1));
    assert_eq!(count(" 10000 "), Ok(10_000));
    assert!(count("0").unwrap_err().contains("at least 1"));
    for t in ["", "-1", "1.0", "4k", "x", "99999999999999999999999"] {
        assert!(count(t).unwrap_err().starts_with("invalid number"), "{t}");
    }
}

#[test]
fn fraction_is_a_number_from_zero_to_one() {
    for (text, want) in [("0", 0.0), ("1", 1.0), ("0.001", 0.001), (" 1e-3 ", 0.001)] {
        assert_eq!(fraction(text), Ok(want), "{text}");
    }
    for t in ["1.5", "-0.1", "2", "inf", "NaN"] {
        assert!(
            fraction(t).unwrap_err().starts_with("must be from 0 to 1"),
            "{t}"
        );
    }
    for t in ["", "x", "1/1000", "0.1%"] {
        assert!(
            fraction(t).unwrap_err().starts_with("invalid fraction"),
            "{t}"
        );
    }
}

#[test]
fn socket_addr_needs_ip_and_port() {
    assert_eq!(
        socket_addr("127.0.0.1:0"),
        Ok("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(socket_addr("[::1]:6380"), Ok("[::1]:6380".parse().unwrap()));
    for t in ["127.0.0.1", "localhost:6380", ":6380", "1.2.3.4:70000"] {
        assert!(
            socket_addr(t).unwrap_err().starts_with("invalid address"),
            "{t}"
        );
    }
}

#[test]
fn log_format_is_human_or_json() {
    for (text, want) in [
        ("human", LogFormat::Human),
        ("HUMAN", LogFormat::Human),
        (" json ", LogFormat::Json),
        ("Json", LogFormat::Json),
    ] {
        assert_eq!(log_format(text), Ok(want), "{text}");
    }
    for t in ["", "text", "plain", "logfmt", "jsonl"] {
        assert_eq!(
            log_format(t).unwrap_err(),
            format!("invalid log format {t:?} (use human or json)")
        );
    }
}

#[test]
fn log_level_is_one_level_name_or_off() {
    for (text, want) in [
        ("error", LevelFilter::ERROR),
        ("WARN", LevelFilter::WARN),
        ("warning", LevelFilter::WARN),
        (" info ", LevelFilter::INFO),
        ("Debug", LevelFilter::DEBUG),
        ("trace", LevelFilter::TRACE),
        ("off", LevelFilter::OFF),
    ] {
        assert_eq!(log_level(text), Ok(want), "{text}");
    }
    for t in [
        "",
        "verbose",
        "3",
        "info,nearcache=debug",
        "nearcache=debug",
    ] {
        assert!(
            log_level(t).unwrap_err().starts_with("invalid log level"),
            "{t}"
        );
    }
}
