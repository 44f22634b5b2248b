//! Validation of annotation and config values. Sizes and durations are read by the
//! sidecar's own grammar ([`nearcache::config::grammar`]), so a value accepted here starts
//! the sidecar.

use nearcache::config::grammar::{self, Malformed, DURATION_HINT, SIZE_HINT};

/// Largest L1 bound taken: keeps the derived memory limit (1.5 × + 32 MiB) far from
/// overflow.
const MAX_SIZE: u64 = 1 << 50;

/// SIZE: bytes, optionally with B, KB, KiB, MB, MiB, GB, GiB; at least 1.
pub fn positive_size(s: &str) -> Result<u64, String> {
    match grammar::size(s) {
        Ok(0) => Err("must be at least 1 byte".to_owned()),
        Ok(n) if n <= MAX_SIZE => Ok(n),
        Ok(_) | Err(Malformed::TooLarge) => Err("size is too large".to_owned()),
        Err(Malformed::Invalid) => Err(format!("invalid size {SIZE_HINT}")),
    }
}

/// DURATION: integer followed by ms, s, m or h; a bare integer is seconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    match grammar::duration(s) {
        Ok(d) => u64::try_from(d.as_millis()).map_err(|_| "duration is too large".to_owned()),
        Err(Malformed::TooLarge) => Err("duration is too large".to_owned()),
        Err(Malformed::Invalid) => Err(format!("invalid duration {DURATION_HINT}")),
    }
}

/// An upstream the sidecar serves (`redis://`, `rediss://`, `redis+sentinel://`,
/// `rediss+sentinel://`, `redis+cluster://`, `rediss+cluster://`): the sidecar's own parser
/// ([`nearcache::config::url::upstream`]), so both refuse exactly the same URLs.
pub fn upstream_url(s: &str) -> Result<(), String> {
    nearcache::config::url::upstream(s).map(|_| ())
}

/// The URL's scheme in lower case, unless it is not written out (`$(VAR)`) or missing.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.trim().split_once("://")?;
    (!scheme.contains('$')).then(|| scheme.to_ascii_lowercase())
}

/// Whether a scheme is a TLS one (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`).
pub fn is_tls_scheme(scheme: &str) -> bool {
    scheme == "rediss" || scheme == "rediss+sentinel" || scheme == "rediss+cluster"
}

/// Whether a scheme is a Sentinel one.
pub fn is_sentinel_scheme(scheme: &str) -> bool {
    scheme == "redis+sentinel" || scheme == "rediss+sentinel"
}

/// Whether a (valid) upstream URL is the sidecar's own listen address, which would loop.
pub fn is_sidecar_address(url: &str) -> bool {
    nearcache::config::url::upstream(url).is_ok_and(|a| {
        a.port == nearcache::config::DEFAULT_LISTEN.port() && {
            let host = a.host.to_ascii_lowercase();
            host == "localhost" || host == "::1" || host == "127.0.0.1"
        }
    })
}

/// The URL with its password hidden, for warnings (they are shown to whoever creates pods).
pub fn redact_url(url: &str) -> String {
    nearcache::config::url::redact(url)
}

/// `<secret-name>/<key>`.
pub fn secret_ref(s: &str) -> Result<(&str, &str), String> {
    let s = s.trim();
    let Some((name, key)) = s.split_once('/') else {
        return Err("expected <secret-name>/<key>".to_owned());
    };
    secret_name(name)?;
    let key_ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !key_ok {
        return Err(format!("{key:?} is not a valid Secret key"));
    }
    Ok((name, key))
}

/// A Secret's name: a DNS subdomain (lower case, digits, `-`, `.`; at most 253).
pub fn secret_name(name: &str) -> Result<(), String> {
    let dns_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if dns_ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid Secret name"))
    }
}

/// The name the upstream's certificate must be valid for: what the sidecar's
/// `--upstream-tls-server-name` takes, checked by the sidecar's own configuration.
pub fn tls_server_name(s: &str) -> Result<(), String> {
    use nearcache::config::{Config, Flags};
    let flags = Flags {
        upstream: Some("rediss://redis".to_owned()),
        upstream_tls_server_name: Some(s.to_owned()),
        ..Default::default()
    };
    match Config::from_parts(&flags, None) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.problems.join("; ")),
    }
}

/// A C identifier-like environment variable name.
pub fn env_name(s: &str) -> Result<(), String> {
    let s = s.trim();
    let ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("not a valid environment variable name".to_owned())
    }
}

/// A non-empty image reference without spaces.
pub fn image(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("not a valid image reference".to_owned())
    } else {
        Ok(())
    }
}

/// `<number>[suffix]` as Kubernetes quantities are written; returns the suffix.
fn quantity(s: &str) -> Result<&str, String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = (&s[..end], &s[end..]);
    let num_ok = !num.is_empty()
        && num.matches('.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && !num.ends_with('.');
    if !num_ok {
        return Err("not a Kubernetes quantity".to_owned());
    }
    if num.chars().all(|c| c == '0' || c == '.') {
        return Err("must be greater than zero".to_owned());
    }
    Ok(suffix)
}

/// CPU: `250m`, `0.5`, `1`.
pub fn cpu_quantity(s: &str) -> Result<(), String> {
    match quantity(s)? {
        "" | "m" => Ok(()),
        _ => Err("not a CPU quantity (use e.g. 50m, 0.5, 1)".to_owned()),
    }
}

/// Memory: `256Mi`, `1Gi`, `500M`, `134217728`.
pub fn memory_quantity(s: &str) -> Result<(), String> {
    memory_bytes(s).map(|_| ())
}

/// A memory quantity in bytes (rounded down).
pub fn memory_bytes(s: &str) -> Result<u64, String> {
    let unit: u64 = match quantity(s)? {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err("not a memory quantity (use e.g. 256Mi, 1Gi)".to_owned()),
    };
    let s = s.trim();
    let number: f64 = s[..s.len()
        - s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .len()]
        .parse()
        .map_err(|_| "not a Kubernetes quantity".to_owned())?;
    Ok((number * unit as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(positive_size("64MiB"), Ok(64 << 20));
        assert_eq!(positive_size(" 4096 "), Ok(4096));
        assert!(positive_size("0").is_err());
        assert!(positive_size("64Mi").is_err());
        assert!(positive_size("lots").is_err());
        assert_eq!(duration_ms("60s"), Ok(60_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert!(duration_ms("1d").is_err());
    }

    #[test]
    fn urls_secrets_quantities() {
        assert!(upstream_url("redis://redis.default.svc:6379/0").is_ok());
        assert!(upstream_url("redis://:pw@r:6379").is_ok());
        assert!(upstream_url("rediss://r:6379").is_ok());
        assert!(upstream_url("http://r").is_err());
        assert!(upstream_url("redis://").is_err());
        assert!(is_sidecar_address("redis://:pw@LOCALHOST:6380/0"));
        assert!(is_sidecar_address("redis://127.0.0.1:6380"));
        assert!(!is_sidecar_address("redis://127.0.0.1:6379"));
        assert_eq!(secret_ref("redis-auth/url"), Ok(("redis-auth", "url")));
        assert!(secret_ref("Redis/url").is_err());
        assert!(secret_ref("redis").is_err());
        assert!(cpu_quantity("50m").is_ok());
        assert!(cpu_quantity("0.5").is_ok());
        assert!(cpu_quantity("50Mi").is_err());
        assert!(memory_quantity("256Mi").is_ok());
        assert!(memory_quantity("256mb").is_err());
        assert!(memory_quantity("0").is_err());
        assert_eq!(memory_bytes("1Ki"), Ok(1024));
        assert_eq!(memory_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(memory_bytes("500M"), Ok(500_000_000));
        assert!(env_name("CACHE_URL").is_ok());
        assert!(env_name("1X").is_err());
    }
}
