//! The SIZE and DURATION grammar of the options, shared with the Kubernetes injector so a
//! value it accepts in an annotation is one the sidecar starts with.
//!
//! The errors carry no value: each caller quotes it (or not) as its own messages do.

use std::time::Duration;

/// The forms of a SIZE, for error messages.
pub const SIZE_HINT: &str = "(use e.g. 4096, 64KiB, 256MiB, 1GiB)";
/// The forms of a DURATION, for error messages.
pub const DURATION_HINT: &str = "(use e.g. 500ms, 60s, 5m)";

/// What is wrong with a SIZE or DURATION text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not of the grammar (see [`SIZE_HINT`] and [`DURATION_HINT`]).
    Invalid,
    /// Of the grammar, but beyond what the type holds.
    TooLarge,
}

/// Splits `" 64 KiB "` into `("64", "KiB")`: leading ASCII digits, then the trimmed rest.
fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// SIZE: bytes, optionally with B, KB, KiB, MB, MiB, GB, GiB (case-insensitive, optional
/// space); `0` is allowed here.
pub fn size(s: &str) -> Result<u64, Malformed> {
    let (digits, unit) = split_number(s);
    let unit_bytes: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(Malformed::Invalid),
    };
    if digits.is_empty() {
        return Err(Malformed::Invalid);
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or(Malformed::TooLarge)
}

/// DURATION: integer followed by ms, s, m or h (case-insensitive); a bare integer is
/// seconds; `0` is allowed here.
pub fn duration(s: &str) -> Result<Duration, Malformed> {
    let (digits, unit) = split_number(s);
    let (millis, secs_per_unit) = match unit.to_ascii_lowercase().as_str() {
        "ms" => (true, 0),
        "" | "s" => (false, 1),
        "m" => (false, 60),
        "h" => (false, 3600),
        _ => return Err(Malformed::Invalid),
    };
    if digits.is_empty() {
        return Err(Malformed::Invalid);
    }
    let n: u64 = digits.parse().map_err(|_| Malformed::TooLarge)?;
    if millis {
        return Ok(Duration::from_millis(n));
    }
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or(Malformed::TooLarge)
}
