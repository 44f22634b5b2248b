//! Pure parsers for option text: SIZE, DURATION, BOOL, counts, listen address (the upstream URL is
//! in [`super::url`], shared with the injector).
//! Each returns the problem without the option name; the caller prefixes `--flag: `.

use std::net::SocketAddr;
use std::time::Duration;

use super::{LevelFilter, LogFormat, TrackingMode};

use super::grammar::{self, Malformed, DURATION_HINT, SIZE_HINT};

/// SIZE: bytes, optionally with B, KB, KiB, MB, MiB, GB, GiB (case-insensitive, optional space).
pub(super) fn size(s: &str) -> Result<u64, String> {
    grammar::size(s).map_err(|e| match e {
        Malformed::Invalid => format!("invalid size {s:?} {SIZE_HINT}"),
        Malformed::TooLarge => format!("size {s:?} is too large"),
    })
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
    grammar::duration(s).map_err(|e| match e {
        Malformed::Invalid => format!("invalid duration {s:?} {DURATION_HINT}"),
        Malformed::TooLarge => format!("duration {s:?} is too large"),
    })
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

/// `--upstream-tls-server-name`: a DNS name or an IP address, without spaces.
pub(super) fn server_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid server name {s:?}"));
    }
    Ok(s.to_owned())
}

/// An ACL user name (`--sentinel-username`): not empty, no spaces or control characters.
pub(super) fn user_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid user name {s:?} (not empty, no spaces or control characters)"
        ));
    }
    Ok(s.to_owned())
}

/// A password given as a value (`--sentinel-password`): not empty. Never quoted back.
pub(super) fn secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(s.to_owned())
}

/// What `--print-config` and `Debug` show instead of a password given as a value.
pub(super) fn redacted(_: &str) -> String {
    "***".to_owned()
}

/// A file path (`--bus-key-file`): not empty.
pub(super) fn path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.trim().is_empty() {
        return Err("the file name is empty".into());
    }
    Ok(s.into())
}

/// `--tracking`: `default`, `bcast` or `off` (case-insensitive).
pub(super) fn tracking(s: &str) -> Result<TrackingMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "default" | "on" => Ok(TrackingMode::Default),
        "bcast" => Ok(TrackingMode::Bcast),
        "off" => Ok(TrackingMode::Off),
        _ => Err(format!(
            "invalid tracking mode {s:?} (use default, bcast or off)"
        )),
    }
}

/// `--tracking-prefixes`: key prefixes separated by commas, each trimmed; an empty text is
/// no prefix (every key). Refused as Redis would refuse them in one `CLIENT TRACKING`: an
/// empty prefix among others, or two where one starts the other (`user:` and `user:1`).
pub(super) fn tracking_prefixes(s: &str) -> Result<Vec<String>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let prefixes: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    if prefixes.iter().any(String::is_empty) {
        return Err(format!(
            "an empty prefix in {s:?} (leave the list empty to track every key)"
        ));
    }
    for (i, a) in prefixes.iter().enumerate() {
        if a.chars().any(char::is_control) {
            return Err(format!("invalid prefix {a:?} (no control characters)"));
        }
        for b in &prefixes[i + 1..] {
            if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
                return Err(format!(
                    "prefixes {a:?} and {b:?} overlap (Redis refuses a prefix that starts \
                     another: keep the shorter one)"
                ));
            }
        }
    }
    Ok(prefixes)
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

#[cfg(test)]
mod tests;
