//! What one cluster node says about the cluster ([`View`], from its `CLUSTER NODES`) and
//! the text forms of the replies the group reads.

use std::collections::BTreeMap;

use super::SLOTS;

/// What one node says about the cluster: each slot's owner (a primary's port, 0 for none)
/// and each replica's primary (ports).
#[derive(Clone, PartialEq, Eq)]
pub struct View {
    /// The owner's port of each slot (0: unassigned).
    pub owners: Vec<u16>,
    /// Replica port -> its primary's port.
    pub replicas: BTreeMap<u16, u16>,
}

impl std::fmt::Debug for View {
    /// The owned ranges and the replicas, not 16384 owners.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("ranges", &self.ranges())
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl View {
    /// The owned ranges in slot order: `(first, last, owner port)`.
    pub fn ranges(&self) -> Vec<(u16, u16, u16)> {
        let mut out: Vec<(u16, u16, u16)> = Vec::new();
        for (slot, &port) in self.owners.iter().enumerate() {
            let slot = slot as u16;
            match out.last_mut() {
                _ if port == 0 => {}
                Some((_, last, p)) if *last + 1 == slot && *p == port => *last = slot,
                _ => out.push((slot, slot, port)),
            }
        }
        out
    }
}

/// A `CLUSTER NODES` text as a [`View`].
pub(super) fn parse_nodes(text: &str) -> View {
    let mut ports = BTreeMap::new();
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let port: u16 = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"));
        ports.insert(fields[0].to_owned(), port);
        lines.push((port, fields));
    }
    let mut view = View {
        owners: vec![0; SLOTS],
        replicas: BTreeMap::new(),
    };
    for (port, fields) in lines {
        if fields[3] != "-" {
            if let Some(&primary) = ports.get(fields[3]) {
                view.replicas.insert(port, primary);
            }
        }
        for range in fields.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
            for owner in &mut view.owners[first..=last] {
                *owner = port;
            }
        }
    }
    view
}

/// A RESP2 reply in the plain text form `redis-cli` prints when its output is not a
/// terminal: a status, error, integer or bulk string as its text (nothing for a null),
/// an array one element a line. The group reads plain and TLS nodes (reached through
/// `redis-cli --tls`) alike in this form.
pub(super) fn cli_text(reply: &[u8]) -> String {
    use redis_protocol::resp2::{decode::decode, types::OwnedFrame};
    fn text(frame: &OwnedFrame, out: &mut Vec<String>) {
        match frame {
            OwnedFrame::SimpleString(b) | OwnedFrame::BulkString(b) => {
                out.push(String::from_utf8_lossy(b).into_owned())
            }
            OwnedFrame::Error(e) => out.push(e.clone()),
            OwnedFrame::Integer(n) => out.push(n.to_string()),
            OwnedFrame::Array(items) => items.iter().for_each(|f| text(f, out)),
            OwnedFrame::Null => {}
        }
    }
    let (frame, _) = decode(reply)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not one RESP2 reply: {}", crate::show(reply)));
    let mut out = Vec::new();
    text(&frame, &mut out);
    out.join("\n").trim().to_owned()
}
