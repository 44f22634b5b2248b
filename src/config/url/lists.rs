//! The address lists of the multi-node forms: `redis+sentinel://s1,s2/master[/db]` (the
//! sentinels and the primary's name) and `redis+cluster://seed1,seed2[/0]` (the seed nodes,
//! tried in order).

use super::{host_port, DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT, URL_HINT};
use crate::config::{Seeds, Sentinels};

/// `host[:port]` items separated by commas, each with `default_port` when it names none, as
/// `host:port` (IPv6 in brackets), duplicates dropped, the order kept. `what` names an item
/// in problems ("sentinel", "seed").
fn addresses(authority: &str, default_port: u16, what: &str) -> Result<Vec<String>, String> {
    if authority.is_empty() {
        return Err(format!("no {what} address {URL_HINT}"));
    }
    let mut addresses = Vec::new();
    for one in authority.split(',') {
        if one.is_empty() {
            return Err(format!("an empty {what} address in the list {URL_HINT}"));
        }
        let (host, port) = host_port(one, default_port)?;
        let address = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// The sentinels (`host[:port]` separated by commas, port 26379 by default) and the
/// master's name (the path's first segment); returns the rest of the path (the db).
pub(super) fn sentinel_parts<'a>(
    authority: &str,
    path: &'a str,
) -> Result<(Sentinels, &'a str), String> {
    let addresses = addresses(authority, DEFAULT_SENTINEL_PORT, "sentinel")?;
    let (master, rest) = path.split_once('/').unwrap_or((path, ""));
    if rest.contains('/') {
        return Err(format!("too many path segments {URL_HINT}"));
    }
    if master.is_empty() {
        return Err(format!(
            "no master name: a Sentinel URL names the primary as the sentinels know it {URL_HINT}"
        ));
    }
    let valid = |b: u8| b.is_ascii_graphic() && !matches!(b, b'/' | b'%' | b'?' | b'#' | b'@');
    if master.len() > 256 || !master.bytes().all(valid) {
        return Err(
            "invalid master name (printable characters, no '/', '%', '?', '#' or '@')".to_owned(),
        );
    }
    let sentinels = Sentinels {
        addresses,
        master: master.to_owned(),
    };
    Ok((sentinels, rest))
}

/// The seed nodes of a cluster (`host[:port]` separated by commas, port 6379 by default);
/// the path is at most the db (which must then be 0: the caller checks).
pub(super) fn cluster_seeds(authority: &str, path: &str) -> Result<Seeds, String> {
    let addresses = addresses(authority, DEFAULT_REDIS_PORT, "seed")?;
    if path.contains('/') {
        return Err(format!("too many path segments {URL_HINT}"));
    }
    Ok(Seeds { addresses })
}
