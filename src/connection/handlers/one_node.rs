//! The sidecar in front of a Redis Cluster, seen by a cluster-mode client: one node, at the
//! address the client connected to, owning every slot. `CLUSTER SLOTS|SHARDS|NODES|INFO|
//! MYID|KEYSLOT` are answered here in the shapes Redis 7 gives them (RESP2 and RESP3), so
//! such clients (redis-py `RedisCluster`, ioredis `Cluster`) send everything to the sidecar;
//! `SELECT` of a database other than 0 is refused as Redis Cluster refuses it. Only where
//! requests are routed by slot: a single upstream answers `CLUSTER` itself.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::Ctx;
use crate::protocol::{is, write_bulk, write_decimal, Resp, OK};
use crate::upstream::cluster::{slot, SLOTS};
use crate::upstream::Router;

/// Redis Cluster's reply to `SELECT` of a database other than 0.
const SELECT_REFUSED: &[u8] = b"-ERR SELECT is not allowed in cluster mode\r\n";

/// The `CLUSTER` subcommands answered by the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::connection) enum Cluster {
    Slots,
    Shards,
    Nodes,
    Info,
    MyId,
    KeySlot,
}

impl Cluster {
    /// The subcommand `args` is, with the arguments it takes (any other form goes upstream,
    /// where the node words the error).
    pub(in crate::connection) fn of(args: &[Bytes]) -> Option<Cluster> {
        if !is(&args[0], b"CLUSTER") || args.len() < 2 {
            return None;
        }
        let sub = &args[1][..];
        Some(match args.len() {
            2 if is(sub, b"SLOTS") => Cluster::Slots,
            2 if is(sub, b"SHARDS") => Cluster::Shards,
            2 if is(sub, b"NODES") => Cluster::Nodes,
            2 if is(sub, b"INFO") => Cluster::Info,
            2 if is(sub, b"MYID") => Cluster::MyId,
            3 if is(sub, b"KEYSLOT") => Cluster::KeySlot,
            _ => return None,
        })
    }
}

/// This sidecar's node id: 40 hex digits, random at start, the same for its whole run.
pub(in crate::connection) fn node_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 20];
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // No system randomness: the process's hash seed, time and pid still tell
            // sidecars apart.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                h.write_usize(i);
                let v = h.finish().to_be_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The node a client sees: the sidecar's address as the client reached it.
struct Me {
    ip: String,
    port: u16,
}

impl Me {
    fn of(local: Option<SocketAddr>) -> Me {
        match local {
            Some(a) => Me {
                ip: a.ip().to_string(),
                port: a.port(),
            },
            None => Me {
                ip: "127.0.0.1".to_owned(),
                port: 0,
            },
        }
    }

    /// The cluster bus port Redis would announce (`port + 10000`; 0 when past 65535).
    fn bus_port(&self) -> u32 {
        let bus = u32::from(self.port) + 10000;
        if bus > 65535 {
            0
        } else {
            bus
        }
    }
}

/// Appends a `:n` integer.
fn int(out: &mut BytesMut, n: i64) {
    out.extend_from_slice(b":");
    write_decimal(out, n);
}

/// Appends an aggregate header: a map in RESP3 (`%`, `pairs`), else a flat array.
fn map(out: &mut BytesMut, resp: Resp, pairs: usize) {
    match resp {
        Resp::V3 => {
            out.extend_from_slice(b"%");
            write_decimal(out, pairs as i64);
        }
        Resp::V2 => {
            out.extend_from_slice(b"*");
            write_decimal(out, 2 * pairs as i64);
        }
    }
}

/// Appends a text reply: a verbatim string in RESP3, else a bulk string.
fn text(out: &mut BytesMut, resp: Resp, s: &str) {
    match resp {
        Resp::V3 => {
            out.extend_from_slice(b"=");
            write_decimal(out, s.len() as i64 + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Resp::V2 => write_bulk(out, s.as_bytes()),
    }
}

/// The reply to a `CLUSTER` subcommand (`args` the request's) for a client that reached
/// the sidecar at `local`.
pub(in crate::connection) fn reply(
    cluster: Cluster,
    args: &[Bytes],
    resp: Resp,
    local: Option<SocketAddr>,
) -> Bytes {
    let me = Me::of(local);
    let id = node_id();
    let last = SLOTS as i64 - 1;
    let mut out = BytesMut::with_capacity(256);
    match cluster {
        Cluster::Slots => {
            out.extend_from_slice(b"*1\r\n*3\r\n");
            int(&mut out, 0);
            int(&mut out, last);
            out.extend_from_slice(b"*4\r\n");
            write_bulk(&mut out, me.ip.as_bytes());
            int(&mut out, i64::from(me.port));
            write_bulk(&mut out, id.as_bytes());
            map(&mut out, resp, 0);
        }
        Cluster::Shards => {
            out.extend_from_slice(b"*1\r\n");
            map(&mut out, resp, 2);
            write_bulk(&mut out, b"slots");
            out.extend_from_slice(b"*2\r\n");
            int(&mut out, 0);
            int(&mut out, last);
            write_bulk(&mut out, b"nodes");
            out.extend_from_slice(b"*1\r\n");
            map(&mut out, resp, 7);
            write_bulk(&mut out, b"id");
            write_bulk(&mut out, id.as_bytes());
            write_bulk(&mut out, b"port");
            int(&mut out, i64::from(me.port));
            write_bulk(&mut out, b"ip");
            write_bulk(&mut out, me.ip.as_bytes());
            write_bulk(&mut out, b"endpoint");
            write_bulk(&mut out, me.ip.as_bytes());
            write_bulk(&mut out, b"role");
            write_bulk(&mut out, b"master");
            write_bulk(&mut out, b"replication-offset");
            int(&mut out, 0);
            write_bulk(&mut out, b"health");
            write_bulk(&mut out, b"online");
        }
        Cluster::Nodes => {
            let line = format!(
                "{id} {}:{}@{} myself,master - 0 0 0 connected 0-{last}\n",
                me.ip,
                me.port,
                me.bus_port()
            );
            text(&mut out, resp, &line);
        }
        Cluster::Info => text(&mut out, resp, &info()),
        Cluster::MyId => write_bulk(&mut out, id.as_bytes()),
        Cluster::KeySlot => int(&mut out, i64::from(slot(&args[2]))),
    }
    out.freeze()
}

/// `CLUSTER INFO` of a healthy one-node cluster.
fn info() -> String {
    let fields: [(&str, usize); 11] = [
        ("cluster_slots_assigned", SLOTS),
        ("cluster_slots_ok", SLOTS),
        ("cluster_slots_pfail", 0),
        ("cluster_slots_fail", 0),
        ("cluster_known_nodes", 1),
        ("cluster_size", 1),
        ("cluster_current_epoch", 0),
        ("cluster_my_epoch", 0),
        ("cluster_stats_messages_sent", 0),
        ("cluster_stats_messages_received", 0),
        ("total_cluster_links_buffer_limit_exceeded", 0),
    ];
    let mut s = String::from("cluster_state:ok\r\n");
    for (name, value) in fields {
        s.push_str(&format!("{name}:{value}\r\n"));
    }
    s
}

/// A database number as Redis reads one (`-?[1-9][0-9]*` or `0`, within 32 bits).
fn redis_int(arg: &[u8]) -> Option<i32> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    let canonical = match digits {
        [b'0'] => arg.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    canonical
        .then(|| std::str::from_utf8(arg).ok()?.parse().ok())
        .flatten()
}

impl<R: Router> Ctx<R> {
    /// `SELECT` in a Redis Cluster: database 0 is the only one (`+OK`); another number is
    /// refused as Redis Cluster refuses it. False when the argument is not a number Redis
    /// reads: the node then words the error.
    pub(in crate::connection) fn select_in_cluster(&mut self, args: &[Bytes]) -> bool {
        let Some(db) = args.get(1).filter(|_| args.len() == 2) else {
            return false;
        };
        match redis_int(db) {
            Some(0) => match self.set_route(0, self.session.resp, self.session.user) {
                Ok(()) => self.replies.ready(OK),
                Err(e) => self.replies.error(&e),
            },
            Some(_) => self.replies.ready(SELECT_REFUSED),
            None => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_numbers_are_read_as_redis_reads_them() {
        assert_eq!(redis_int(b"0"), Some(0));
        assert_eq!(redis_int(b"15"), Some(15));
        assert_eq!(redis_int(b"-1"), Some(-1));
        for bad in [&b"01"[..], b"-0", b"+1", b"", b"x", b"1 ", b"99999999999"] {
            assert_eq!(redis_int(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn the_node_id_is_forty_hex_digits_and_stable() {
        let id = node_id();
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(node_id(), id);
    }

    #[test]
    fn one_node_replies_match_redis_7() {
        let at: SocketAddr = "127.0.0.1:6380".parse().unwrap();
        let id = node_id();
        let slots = reply(Cluster::Slots, &[], Resp::V2, Some(at));
        let want = format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n{id}\r\n*0\r\n"
        );
        assert_eq!(slots, want.as_bytes());
        let v3 = reply(Cluster::Slots, &[], Resp::V3, Some(at));
        assert!(v3.ends_with(b"%0\r\n"));
        let nodes = reply(Cluster::Nodes, &[], Resp::V2, Some(at));
        let line = format!("{id} 127.0.0.1:6380@16380 myself,master - 0 0 0 connected 0-16383\n");
        assert_eq!(nodes, format!("${}\r\n{line}\r\n", line.len()).as_bytes());
        let info = reply(Cluster::Info, &[], Resp::V3, Some(at));
        assert!(
            info.starts_with(b"=316\r\ntxt:cluster_state:ok\r\n"),
            "{info:?}"
        );
        let keyslot = reply(
            Cluster::KeySlot,
            &[Bytes::new(), Bytes::new(), "foo".into()],
            Resp::V2,
            None,
        );
        assert_eq!(&keyslot[..], b":12182\r\n");
    }
}
