//! Pure parsers for option text: SIZE, DURATION, BOOL, counts, listen address, upstream URL.
//! Each returns the problem without the option name; the caller prefixes `--flag: `.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{TrackingMode, UpstreamAddr};

const SIZE_HINT: &str = "(use e.g. 4096, 64KiB, 256MiB, 1GiB)";
const DURATION_HINT: &str = "(use e.g. 500ms, 60s, 5m)";
const URL_HINT: &str = "(use redis://[[username][:password]@]host[:port][/db])";
const DEFAULT_REDIS_PORT: u16 = 6379;

/// Splits `" 64 KiB "` into `("64", "KiB")`: leading ASCII digits, then the trimmed rest.
fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// SIZE: bytes, optionally with B, KB, KiB, MB, MiB, GB, GiB (case-insensitive, optional space).
pub(super) fn size(s: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(s);
    let unit_bytes: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(format!("invalid size {s:?} {SIZE_HINT}")),
    };
    if digits.is_empty() {
        return Err(format!("invalid size {s:?} {SIZE_HINT}"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// SIZE that must be at least 1 and fit in memory (`usize`).
pub(super) fn positive_size(s: &str) -> Result<usize, String> {
    match usize::try_from(size(s)?) {
        Ok(0) => Err(format!("must be at least 1, got {s:?}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("size {s:?} is too large")),
    }
}

/// DURATION: integer followed by ms, s, m or h; a bare integer is seconds; `0` is allowed.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(s);
    let bad = || format!("invalid duration {s:?} {DURATION_HINT}");
    let (millis, secs_per_unit) = match unit.to_ascii_lowercase().as_str() {
        "ms" => (true, 0),
        "" | "s" => (false, 1),
        "m" => (false, 60),
        "h" => (false, 3600),
        _ => return Err(bad()),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let too_large = || format!("duration {s:?} is too large");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    if millis {
        return Ok(Duration::from_millis(n));
    }
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(too_large)
}

/// `--invalidation-channel`: a non-empty channel name without spaces or control characters.
pub(super) fn channel(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the channel name is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid channel name {s:?} (no spaces or control characters)"
        ));
    }
    Ok(s.to_owned())
}

/// `--tracking`: `default` or `off` (case-insensitive).
pub(super) fn tracking(s: &str) -> Result<TrackingMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "default" | "on" => Ok(TrackingMode::Default),
        "off" => Ok(TrackingMode::Off),
        _ => Err(format!("invalid tracking mode {s:?} (use default or off)")),
    }
}

/// DURATION that must be greater than zero (timeouts).
pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("must be greater than 0, got {s:?}")),
        d => Ok(d),
    }
}

/// BOOL: true/false, 1/0, yes/no, on/off (case-insensitive).
pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid boolean {s:?} (use true or false)")),
    }
}

/// A count where 0 makes no sense: a whole number >= 1.
pub(super) fn count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err(format!("must be at least 1, got {s:?}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid number {s:?} (use a whole number >= 1)")),
    }
}

/// FRACTION: a decimal number from 0 to 1 inclusive (`0.001`, `1e-3`, `1`).
pub(super) fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Ok(_) => Err(format!("must be from 0 to 1, got {s:?}")),
        Err(_) => Err(format!("invalid fraction {s:?} (use e.g. 0.001, 0 or 1)")),
    }
}

/// Listen address: `IP:PORT`, IPv6 in brackets.
pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid address {s:?} (use IP:PORT, e.g. 127.0.0.1:6380)"))
}

/// Upstream URL `redis://[[username][:password]@]host[:port][/db]`. Messages never quote
/// the whole URL, so a password cannot leak into them.
pub(super) fn upstream(s: &str) -> Result<UpstreamAddr, String> {
    let Some((scheme, rest)) = s.trim().split_once("://") else {
        return Err(format!("not a redis:// URL {URL_HINT}"));
    };
    if scheme.eq_ignore_ascii_case("rediss") {
        return Err("TLS upstreams (rediss://) are not supported yet".to_owned());
    }
    if !scheme.eq_ignore_ascii_case("redis") {
        return Err(format!("unsupported scheme {scheme:?} {URL_HINT}"));
    }
    // The last '@' ends the user info, so an unencoded '@' or '/' in a password still works.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (authority, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = host_port(authority)?;
    let db = match db {
        "" => 0,
        db => db
            .parse()
            .map_err(|_| format!("invalid db {db:?} (must be a number)"))?,
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        None => (None, None),
        Some((user, pass)) => (decode(user, "username")?, decode(pass, "password")?),
    };
    Ok(UpstreamAddr {
        host,
        port,
        username,
        password,
        db,
    })
}

/// `host[:port]` or `[ipv6][:port]` into (host without brackets, port).
fn host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in IPv6 host".to_owned())?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {host:?}"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after IPv6 host")),
            },
        }
    } else if authority.matches(':').count() > 1 {
        return Err("IPv6 hosts must be in brackets, e.g. redis://[::1]:6379".to_owned());
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("empty host {URL_HINT}"));
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("invalid port {p:?} (must be 1-65535)")),
        },
    };
    Ok((host.to_owned(), port))
}

/// Percent-decodes (`%40` -> `@`) user info; an empty result is `None`. A `%` not followed by
/// two hex digits is kept as is.
fn decode(s: &str, what: &str) -> Result<Option<String>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(h)) => {
                let h = std::str::from_utf8(h).unwrap_or_default();
                out.push(u8::from_str_radix(h, 16).unwrap_or_default());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) if text.is_empty() => Ok(None),
        Ok(text) => Ok(Some(text)),
        Err(_) => Err(format!(
            "the {what} is not valid UTF-8 after percent-decoding"
        )),
    }
}

/// The URL text with any password replaced by `***`, for `Debug` of raw flags.
pub(super) fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    match rest
        .rfind('@')
        .map(|at| rest[..at].split_once(':').map(|(u, _)| (u, at)))
    {
        Some(Some((user, at))) => format!("{scheme}://{user}:***{}", &rest[at..]),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
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

    fn addr(
        host: &str,
        port: u16,
        user: Option<&str>,
        pass: Option<&str>,
        db: u32,
    ) -> UpstreamAddr {
        UpstreamAddr {
            host: host.to_owned(),
            port,
            username: user.map(str::to_owned),
            password: pass.map(str::to_owned),
            db,
        }
    }

    #[test]
    fn upstream_url_forms() {
        for (url, want) in [
            ("redis://127.0.0.1", addr("127.0.0.1", 6379, None, None, 0)),
            ("redis://cache:7000/3", addr("cache", 7000, None, None, 3)),
            ("REDIS://cache/", addr("cache", 6379, None, None, 0)),
            ("redis://:s3cret@h:1", addr("h", 1, None, Some("s3cret"), 0)),
            (
                "redis://bob:pw@h/2",
                addr("h", 6379, Some("bob"), Some("pw"), 2),
            ),
            ("redis://bob@h", addr("h", 6379, Some("bob"), None, 0)),
            (
                "redis://bob:p%40ss%3Aw@h",
                addr("h", 6379, Some("bob"), Some("p@ss:w"), 0),
            ),
            (
                "redis://u:a@b/c:d@h",
                addr("h", 6379, Some("u"), Some("a@b/c:d"), 0),
            ),
            (
                "redis://u:100%@h",
                addr("h", 6379, Some("u"), Some("100%"), 0),
            ),
            ("redis://[::1]", addr("::1", 6379, None, None, 0)),
            (
                "redis://:pw@[::1]:6390/1",
                addr("::1", 6390, None, Some("pw"), 1),
            ),
        ] {
            assert_eq!(upstream(url), Ok(want), "{url}");
        }
        assert_eq!(addr("::1", 7, None, None, 0).host_port(), "[::1]:7");
        assert_eq!(addr("h", 7, None, None, 0).host_port(), "h:7");
    }

    #[test]
    fn upstream_url_problems() {
        for (url, want) in [
            (
                "rediss://h:6379",
                "TLS upstreams (rediss://) are not supported yet",
            ),
            ("http://h", "unsupported scheme \"http\""),
            ("h:6379", "not a redis:// URL"),
            ("redis://", "empty host"),
            ("redis://:pw@:6379", "empty host"),
            ("redis://h:abc", "invalid port \"abc\""),
            ("redis://h:0", "invalid port \"0\""),
            ("redis://h:65536", "invalid port \"65536\""),
            ("redis://h:", "invalid port \"\""),
            ("redis://h/x", "invalid db \"x\""),
            ("redis://h/-1", "invalid db \"-1\""),
            ("redis://::1", "IPv6 hosts must be in brackets"),
            ("redis://[::1", "unclosed '['"),
            ("redis://[nope]:1", "invalid IPv6 address"),
            ("redis://[::1]x", "unexpected \"x\""),
            ("redis://:%FF@h", "password is not valid UTF-8"),
        ] {
            let err = upstream(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn upstream_problems_never_quote_the_password() {
        for url in [
            "redis://u:hunter2@h:x",
            "redis://u:hunter2@h/x",
            "redis://u:hunter2@",
        ] {
            assert!(!upstream(url).unwrap_err().contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(redact_url("redis://u:hunter2@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:a@b@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://u@h"), "redis://u@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
