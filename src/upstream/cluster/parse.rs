//! Reading a node's view of the cluster into a [`SlotMap`]: the `CLUSTER SHARDS` reply
//! (Redis 7) and the `CLUSTER SLOTS` reply (older servers, or a user the ACL refuses
//! `SHARDS`), both as RESP2 (the discovery connection never sends `HELLO 3`).
//!
//! Endpoints follow the cluster specification: an empty endpoint or `?` means "the host you
//! reached this node at"; otherwise the endpoint (an IP, or a hostname when the cluster
//! prefers them) is the host. In `SHARDS` a TLS upstream takes `tls-port`, a plain one
//! `port` (each the other when the node reports only one); in `SLOTS` the port is what the
//! node reports (its TLS port with `tls-cluster yes`). A failed node of a shard without
//! slots (a killed primary its replica replaced) is left out.

use bytes::Bytes;

use super::map::{Node, Role, SlotMap};
use crate::protocol::decode::{array_elements, integer, is_error, text};

/// The map a `CLUSTER SHARDS` reply describes; `reached` is the address the reply was read
/// from, `tls` whether connections use TLS.
pub fn from_shards(frame: &Bytes, reached: &str, tls: bool) -> Result<SlotMap, String> {
    let shards = elements(frame, "CLUSTER SHARDS")?;
    let mut map = SlotMap::empty();
    let mut ranges = Vec::new();
    for (shard, entry) in shards.iter().enumerate() {
        let fields = array_elements(entry).ok_or("a shard is no array")?;
        let mut slots = Vec::new();
        let mut nodes = Vec::new();
        for pair in fields.chunks_exact(2) {
            match value(&pair[0]).as_deref() {
                Some("slots") => {
                    for bound in array_elements(&pair[1]).ok_or("shard slots are no array")? {
                        slots.push(number(&bound).ok_or("a slot bound is no number")?);
                    }
                }
                Some("nodes") => nodes = array_elements(&pair[1]).ok_or("nodes are no array")?,
                _ => {}
            }
        }
        let mut primary = None;
        for entry in &nodes {
            // A failed node that serves no slot (a killed primary after its replica took
            // over) is no node to keep a connection to: it is left out of the map.
            if slots.is_empty() && failed(entry) {
                continue;
            }
            let node = shard_node(entry, reached, tls, shard)?;
            let primary_here = node.role == Role::Primary;
            let index = map.add_node(node);
            if primary_here && primary.is_none() {
                primary = Some(index);
            }
        }
        if let Some(index) = primary {
            for pair in slots.chunks_exact(2) {
                ranges.push((pair[0], pair[1], index));
            }
        }
    }
    for (first, last, index) in ranges {
        map.assign(first, last, index);
    }
    Ok(map)
}

/// Whether a node of a `SHARDS` reply is reported `health: fail`.
fn failed(entry: &Bytes) -> bool {
    let Some(fields) = array_elements(entry) else {
        return false;
    };
    fields.chunks_exact(2).any(|pair| {
        value(&pair[0]).as_deref() == Some("health") && value(&pair[1]).as_deref() == Some("fail")
    })
}

/// One node of a `SHARDS` reply: a flat array of field names and values.
fn shard_node(entry: &Bytes, reached: &str, tls: bool, shard: usize) -> Result<Node, String> {
    let fields = array_elements(entry).ok_or("a node is no array")?;
    let (mut id, mut role) = (String::new(), String::new());
    let (mut endpoint, mut ip, mut hostname) = (None, None, None);
    let (mut port, mut tls_port) = (None, None);
    for pair in fields.chunks_exact(2) {
        let Some(name) = value(&pair[0]) else {
            continue;
        };
        match name.as_str() {
            "id" => id = value(&pair[1]).unwrap_or_default(),
            "port" => port = number(&pair[1]),
            "tls-port" => tls_port = number(&pair[1]),
            "ip" => ip = value(&pair[1]),
            "endpoint" => endpoint = value(&pair[1]),
            "hostname" => hostname = value(&pair[1]).filter(|h| !h.is_empty()),
            "role" => role = value(&pair[1]).unwrap_or_default(),
            _ => {}
        }
    }
    let chosen = match tls {
        true => tls_port.or(port),
        false => port.or(tls_port),
    };
    let chosen = chosen.ok_or_else(|| format!("node {id} has no port"))?;
    let host = endpoint.or(ip);
    Ok(Node {
        address: address(host.as_deref(), chosen, reached),
        id,
        role: role_of(&role),
        port,
        tls_port,
        hostname,
        shard,
    })
}

/// The map a `CLUSTER SLOTS` reply describes (`[first, last, primary, replicas...]` per
/// range, each node `[endpoint, port, id, metadata]`).
pub fn from_slots(frame: &Bytes, reached: &str) -> Result<SlotMap, String> {
    let ranges = elements(frame, "CLUSTER SLOTS")?;
    let mut map = SlotMap::empty();
    let mut primaries: Vec<String> = Vec::new();
    for entry in &ranges {
        let parts = array_elements(entry).ok_or("a slot range is no array")?;
        let [first, last, nodes @ ..] = parts.as_slice() else {
            return Err("a slot range has no bounds".to_owned());
        };
        let first = number(first).ok_or("a slot bound is no number")?;
        let last = number(last).ok_or("a slot bound is no number")?;
        let mut owner = None;
        let mut shard = 0;
        for (i, node) in nodes.iter().enumerate() {
            let fields = array_elements(node).ok_or("a node is no array")?;
            let [host, port, rest @ ..] = fields.as_slice() else {
                return Err("a node has no endpoint and port".to_owned());
            };
            let port = number(port).ok_or("a node's port is no number")?;
            let address = address(value(host).as_deref(), port, reached);
            if i == 0 {
                shard = match primaries.iter().position(|a| *a == address) {
                    Some(at) => at,
                    None => {
                        primaries.push(address.clone());
                        primaries.len() - 1
                    }
                };
            }
            let hostname = rest.get(1).and_then(|m| {
                let meta = array_elements(m)?;
                meta.chunks_exact(2)
                    .find(|kv| value(&kv[0]).as_deref() == Some("hostname"))
                    .and_then(|kv| value(&kv[1]))
            });
            let index = map.add_node(Node {
                address,
                id: rest.first().and_then(value).unwrap_or_default(),
                role: if i == 0 { Role::Primary } else { Role::Replica },
                port: Some(port),
                tls_port: None,
                hostname,
                shard,
            });
            if i == 0 {
                owner = Some(index);
            }
        }
        if let Some(index) = owner {
            map.assign(first, last, index);
        }
    }
    Ok(map)
}

/// The elements of an array reply; an error reply or anything else is an error naming
/// `what`.
fn elements(frame: &Bytes, what: &str) -> Result<Vec<Bytes>, String> {
    if is_error(frame) {
        let text = String::from_utf8_lossy(frame);
        return Err(format!(
            "{what}: {}",
            text.trim_start_matches('-').trim_end()
        ));
    }
    array_elements(frame).ok_or_else(|| format!("{what}: the reply is no array"))
}

/// A bulk string's or an integer's text.
fn value(frame: &Bytes) -> Option<String> {
    if let Some((t, _)) = text(frame) {
        return Some(String::from_utf8_lossy(t).into_owned());
    }
    integer(frame).map(|n| n.to_string())
}

/// A slot or port: an integer reply or a bulk string of digits, within `u16`.
fn number(frame: &Bytes) -> Option<u16> {
    value(frame)?.parse().ok()
}

fn role_of(role: &str) -> Role {
    match role {
        "master" | "primary" => Role::Primary,
        _ => Role::Replica,
    }
}

/// `host:port`, the host being `endpoint` unless it is absent, empty or `?` (then the host
/// of `reached`); an IPv6 host in brackets.
pub fn address(endpoint: Option<&str>, port: u16, reached: &str) -> String {
    let host = match endpoint {
        Some(h) if !h.is_empty() && h != "?" => h,
        _ => host_of(reached),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

/// The host part of `host:port` (`[v6]:port` keeps its brackets; no port: all of it).
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &address[..end + 2];
        }
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
