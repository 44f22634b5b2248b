//! The upstream URL grammar, shared by the sidecar (`--upstream`) and the Kubernetes injector,
//! so a URL the injector copies into a sidecar is one the sidecar starts with.
//!
//! `redis://[[username][:password]@]host[:port][/db][?param=value&...][#fragment]`, as the
//! common clients (redis-py, ioredis, node-redis, go-redis) write it, and `rediss://` with
//! the same parts for TLS (see the `--upstream-tls-*` options):
//! - the user info ends at the last `@` before the query, so an unencoded `@`, `/`, `:` or `#`
//!   in a password still works (a `?` must be written `%3F`, as in every client);
//! - `%XX` escapes are decoded in the user info and the query; a `%` not followed by two hex
//!   digits is kept as is (as redis-py does); the result must be UTF-8;
//! - query parameters the sidecar applies: `db`, `username`, `password` (as redis-py and
//!   ioredis take them); each may be given once, and not also in the URL's path or user info
//!   with another value;
//! - query parameters that tune the client itself are accepted and ignored (see
//!   [`IGNORED_PARAMS`]): `protocol=2|3` (the sidecar speaks each client's own protocol),
//!   timeouts such as `timeout=5s` (the sidecar's own are `--connect-timeout` and
//!   `--upstream-timeout`; a client keeps its own towards the sidecar), pool sizes, retries;
//! - any other parameter is refused, named, so a typo never goes unseen;
//! - a `#fragment` is ignored, as every client ignores it.
//!
//! `redis+sentinel://` and `redis+cluster://` (and their `rediss+` TLS forms) take a list of
//! addresses instead of one host (see [`lists`]).
//!
//! Problems never quote the user info or a query value, so a password cannot leak into them.

mod lists;

use std::net::Ipv6Addr;

use super::UpstreamAddr;
use lists::{cluster_seeds, sentinel_parts};

/// The URL's shape, for error messages.
pub const URL_HINT: &str = "(use redis://[[username][:password]@]host[:port][/db][?db=N], \
     rediss:// for TLS, redis+sentinel://[[username][:password]@]host[:port][,host[:port]...]/master[/db], \
     or redis+cluster://[[username][:password]@]host[:port][,host[:port]...][/0])";
pub(super) const DEFAULT_REDIS_PORT: u16 = 6379;
pub(super) const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Query parameters that configure the client, not the connection's identity: accepted and
/// ignored (only `protocol` is checked: `2` or `3`).
pub const IGNORED_PARAMS: &[&str] = &[
    "protocol",
    "timeout",
    "connect_timeout",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "dial_timeout",
    "read_timeout",
    "write_timeout",
    "pool_size",
    "pool_timeout",
    "pool_fifo",
    "min_idle_conns",
    "max_idle_conns",
    "max_active_conns",
    "conn_max_idle_time",
    "conn_max_lifetime",
    "max_connections",
    "max_retries",
    "min_retry_backoff",
    "max_retry_backoff",
    "retry_on_timeout",
    "health_check_interval",
    "client_name",
    "name",
    "family",
    "decode_responses",
    "encoding",
];

/// Parses an upstream URL (see the module docs).
pub fn upstream(s: &str) -> Result<UpstreamAddr, String> {
    let s = s.trim();
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains spaces or control characters".to_owned());
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("not a redis:// URL {URL_HINT}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let (tls, kind) = match scheme.as_str() {
        "redis" => (false, Kind::Single),
        "rediss" => (true, Kind::Single),
        "redis+sentinel" => (false, Kind::Sentinel),
        "rediss+sentinel" => (true, Kind::Sentinel),
        "redis+cluster" => (false, Kind::Cluster),
        "rediss+cluster" => (true, Kind::Cluster),
        _ => return Err(format!("unsupported scheme {scheme:?} {URL_HINT}")),
    };
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostpart) = match main.rfind('@') {
        Some(at) => (Some(&main[..at]), &main[at + 1..]),
        None => (None, main),
    };
    // A '#' before the '?' starts the fragment, and the "query" is part of it.
    let (hostpart, query) = match hostpart.split_once('#') {
        Some((h, _)) => (h, ""),
        None => (hostpart, query.split('#').next().unwrap_or("")),
    };
    let (authority, path) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let first = authority.split(',').next().unwrap_or("");
    let (host, port, path, sentinels, seeds) = match kind {
        Kind::Single => {
            let (host, port) = host_port(authority, DEFAULT_REDIS_PORT)?;
            (host, port, path, None, None)
        }
        Kind::Sentinel => {
            let (sentinels, path) = sentinel_parts(authority, path)?;
            let (host, port) = host_port(first, DEFAULT_SENTINEL_PORT)?;
            (host, port, path, Some(sentinels), None)
        }
        Kind::Cluster => {
            let seeds = cluster_seeds(authority, path)?;
            let (host, port) = host_port(first, DEFAULT_REDIS_PORT)?;
            (host, port, path, None, Some(seeds))
        }
    };
    let path_db = match path {
        "" => None,
        db => Some(
            db.parse::<u32>()
                .map_err(|_| format!("invalid db {db:?} (must be a number)"))?,
        ),
    };
    let (mut username, mut password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, "")))
    {
        None => (None, None),
        Some((user, pass)) => (
            decode(user, "username", false)?,
            decode(pass, "password", false)?,
        ),
    };
    let params = Params::parse(query)?;
    let db = match (path_db, params.db) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("two dbs: /{a} in the path and db={b} in the query"))
        }
        (a, b) => a.or(b).unwrap_or(0),
    };
    merge(&mut username, params.username, "username")?;
    merge(&mut password, params.password, "password")?;
    if seeds.is_some() && db != 0 {
        return Err(format!(
            "db {db} with a cluster upstream: Redis Cluster has only db 0"
        ));
    }
    Ok(UpstreamAddr {
        host,
        port,
        username,
        password,
        db,
        tls,
        sentinel: sentinels,
        cluster: seeds,
    })
}

/// Which form of URL: one server, a Sentinel-managed primary, or a Cluster.
#[derive(Clone, Copy)]
enum Kind {
    Single,
    Sentinel,
    Cluster,
}

/// Takes a query value for a field the user info may already hold (it must then agree).
fn merge(field: &mut Option<String>, query: Option<String>, what: &str) -> Result<(), String> {
    match (field.as_ref(), query) {
        (Some(a), Some(b)) if *a != b => Err(format!(
            "two different {what}s: one in the user info, one in the query"
        )),
        (_, Some(b)) => {
            *field = Some(b);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The query parameters that matter to the sidecar.
#[derive(Default)]
struct Params {
    db: Option<u32>,
    username: Option<String>,
    password: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        let mut p = Params::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key, "query parameter name", true)?.unwrap_or_default();
            let value = decode(raw_value, "query value", true)?;
            let named = || {
                if key.len() <= 64 && key.bytes().all(|b| b.is_ascii_graphic()) {
                    format!("{key:?}")
                } else {
                    "(unprintable)".to_owned()
                }
            };
            let once = |taken: bool| {
                if taken {
                    Err(format!("query parameter {} given twice", named()))
                } else {
                    Ok(())
                }
            };
            match key.to_ascii_lowercase().as_str() {
                "db" => {
                    once(p.db.is_some())?;
                    let v = value.unwrap_or_default();
                    p.db = Some(v.parse().map_err(|_| {
                        format!("invalid db {v:?} in the query (must be a number)")
                    })?);
                }
                "username" | "user" => {
                    once(p.username.is_some())?;
                    p.username = value;
                }
                "password" => {
                    once(p.password.is_some())?;
                    p.password = value;
                }
                "protocol" => match value.as_deref() {
                    Some("2" | "3" | "resp2" | "resp3" | "RESP2" | "RESP3") => {}
                    _ => return Err("invalid protocol in the query (use 2 or 3)".to_owned()),
                },
                k if IGNORED_PARAMS.contains(&k) => {}
                "" => return Err("a query parameter without a name".to_owned()),
                _ => {
                    return Err(format!(
                        "unknown query parameter {} (the sidecar applies db, username and \
                         password, and ignores client options such as protocol and timeout)",
                        named()
                    ))
                }
            }
        }
        Ok(p)
    }
}

/// `host[:port]` or `[ipv6][:port]` into (host without brackets, port).
pub(super) fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
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
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.contains(['[', ']']) {
            return Err("unbalanced '[' or ']' in the host".to_owned());
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(format!(
                "invalid host {host:?} (use a host name, an IPv4 address or [IPv6])"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("empty host {URL_HINT}"));
    }
    let port = match port {
        None => default_port,
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

/// Percent-decodes (`%40` -> `@`; in a query, `+` -> space); an empty result is `None`. A `%`
/// not followed by two hex digits is kept as is.
fn decode(s: &str, what: &str, query: bool) -> Result<Option<String>, String> {
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
            (b'+', _) if query => {
                out.push(b' ');
                i += 1;
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
pub fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let redacted = match rest
        .rfind('@')
        .map(|at| rest[..at].split_once(':').map(|(u, _)| (u, at)))
    {
        Some(Some((user, at))) => format!("{scheme}://{user}:***{}", &rest[at..]),
        _ => s.to_owned(),
    };
    // A password in the query is hidden too.
    match redacted.split_once('?') {
        Some((head, q)) if q.to_ascii_lowercase().contains("password") => {
            format!("{head}?***")
        }
        _ => redacted,
    }
}

/// The URL as `--print-config` shows it: rebuilt from what was parsed
/// (`redis://[user[:***]@]host:port/db`), so the password never shows and the text is still a
/// URL this module accepts; client-only query parameters are left out. A URL that does not
/// parse is shown as [`redact`] shows it.
pub fn printable(s: &str) -> String {
    let Ok(a) = upstream(s) else {
        return redact(s);
    };
    let user: String = a
        .username
        .as_deref()
        .unwrap_or_default()
        .bytes()
        .map(
            |b| match b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                true => char::from(b).to_string(),
                false => format!("%{b:02X}"),
            },
        )
        .collect();
    let userinfo = match (&a.username, &a.password) {
        (None, None) => String::new(),
        (_, None) => format!("{user}@"),
        (_, Some(_)) => format!("{user}:***@"),
    };
    format!("{}://{userinfo}{}/{}", a.scheme(), a.location(), a.db)
}

#[cfg(test)]
mod tests;
