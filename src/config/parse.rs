//! Pure parsers for option text: SIZE, DURATION, BOOL, counts, listen address, upstream URL.
//! Each returns the problem without the option name; the caller prefixes `--flag: `.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{LevelFilter, LogFormat, TrackingMode, UpstreamAddr};

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

/// A file path (`--bus-key-file`): not empty.
pub(super) fn path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.trim().is_empty() {
        return Err("the file name is empty".into());
    }
    Ok(s.into())
}

/// `--tracking`: `default` or `off` (case-insensitive).
pub(super) fn tracking(s: &str) -> Result<TrackingMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "default" | "on" => Ok(TrackingMode::Default),
        "off" => Ok(TrackingMode::Off),
        _ => Err(format!("invalid tracking mode {s:?} (use default or off)")),
    }
}

/// `--log-format`: `human` or `json` (case-insensitive).
pub(super) fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("invalid log format {s:?} (use human or json)")),
    }
}

/// `--log-level`: `error`, `warn`, `info`, `debug`, `trace` or `off` (case-insensitive).
pub(super) fn log_level(s: &str) -> Result<LevelFilter, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        "off" => Ok(LevelFilter::OFF),
        _ => Err(format!(
            "invalid log level {s:?} (use error, warn, info, debug, trace or off)"
        )),
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

/// An address, or `off` (`None`).
pub(super) fn optional_socket_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    socket_addr(s).map(Some).map_err(|e| format!("{e}, or off"))
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
            // Only digits are quoted: in `redis://user:password` (the `@host` forgotten)
            // the password stands where the port goes.
            _ if p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!("invalid port {p:?} (must be 1-65535)"))
            }
            _ => return Err("invalid port (must be a number from 1 to 65535)".to_owned()),
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
mod tests;
