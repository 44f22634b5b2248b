//! Discovery: one node's view of the cluster, and the view a refresh may take, asked of
//! the seeds in order and cross-checked against a second node before it takes slots away
//! from the current map.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::map::{Role, SlotMap};
use super::parse::{from_shards, from_slots};
use crate::protocol::decode::is_error;
use crate::protocol::write_command;
use crate::upstream::handshake::read_frame;
use crate::upstream::outbound::Outbound;
use crate::upstream::sentinel::ask::open;
use crate::upstream::CredentialSource;

/// Most nodes asked to confirm a view that takes slots away (answering or not).
const MAX_WITNESSES: usize = 4;

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `host:port` of each seed node, in the order they are tried.
    pub seeds: Vec<String>,
    /// The data credentials (`AUTH` on every discovery connection).
    pub credentials: CredentialSource,
    /// Bound on one connect + exchange with one node.
    pub timeout: Duration,
}

/// Why no view was taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// No seed answered with a view.
    #[error("no seed answered: {0}")]
    Unreachable(String),
    /// The view the seeds gave takes slots from the current map and no second node agrees.
    #[error("no two nodes agree on taking slots from the map: {0}")]
    Disputed(String),
}

/// A view discovery took, and from where.
#[derive(Debug, Clone)]
pub struct Found {
    /// The view.
    pub map: SlotMap,
    /// The node that answered it.
    pub from: String,
    /// The node that confirmed it, when it took slots away from the current map.
    pub confirmed_by: Option<String>,
    /// Whether a view that was asked for was refused (a node whose view takes slots away
    /// and no other node confirms).
    pub disputed: bool,
}

/// Asks nodes for their view of the cluster (`CLUSTER SHARDS`, else `CLUSTER SLOTS`).
pub struct Discovery {
    options: ClusterOptions,
    outbound: Arc<Outbound>,
    /// Views asked for (one per node asked).
    asked: AtomicU64,
}

impl Discovery {
    /// Discovery from `options`' seeds, connecting through `outbound` (TLS when it has a
    /// TLS client).
    pub fn new(options: ClusterOptions, outbound: Arc<Outbound>) -> Discovery {
        Discovery {
            options,
            outbound,
            asked: AtomicU64::new(0),
        }
    }

    /// How many views were asked for (nodes asked, answering or not).
    pub fn asked(&self) -> u64 {
        self.asked.load(Relaxed)
    }

    /// The view of the node at `address`: `CLUSTER SHARDS`, or `CLUSTER SLOTS` when that
    /// is answered with an error (a server before 7.0, an ACL without `cluster|shards`);
    /// all within the options' bound.
    pub async fn view(&self, address: &str) -> Result<SlotMap, String> {
        self.asked.fetch_add(1, Relaxed);
        let creds = self.options.credentials.current();
        let tls = self.outbound.tls().is_some();
        let exchange = async {
            let (mut stream, mut buf) = open(
                &self.outbound,
                address,
                creds.as_ref(),
                self.options.timeout,
            )
            .await?;
            let mut out = BytesMut::new();
            write_command(&mut out, &[b"CLUSTER", b"SHARDS"]);
            stream.send(&out).await.map_err(|e| e.to_string())?;
            let reply = read_frame(&mut stream, &mut buf)
                .await
                .map_err(|e| e.to_string())?;
            if !is_error(&reply) {
                return from_shards(&reply, address, tls);
            }
            out.clear();
            write_command(&mut out, &[b"CLUSTER", b"SLOTS"]);
            stream.send(&out).await.map_err(|e| e.to_string())?;
            let reply = read_frame(&mut stream, &mut buf)
                .await
                .map_err(|e| e.to_string())?;
            from_slots(&reply, address)
        };
        let result = tokio::time::timeout(self.options.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        result.map_err(|e| crate::upstream::redact(&e, creds.as_ref()))
    }

    /// The view a refresh of `current` takes: the first seed's that answers, when it only
    /// adds owners for slots `current` leaves unassigned; else the first view that a
    /// second node agrees with on every slot it takes from `current`. The second nodes are
    /// the current map's (primaries first), then the new view's, then the other seeds.
    pub async fn discover(&self, current: &SlotMap) -> Result<Found, DiscoveryError> {
        let mut failures = Vec::new();
        let mut first = None;
        for seed in &self.options.seeds {
            match self.view(seed).await {
                Ok(map) => {
                    first = Some((seed.clone(), map));
                    break;
                }
                Err(e) => failures.push(format!("{seed}: {e}")),
            }
        }
        let Some((from, map)) = first else {
            return Err(DiscoveryError::Unreachable(failures.join("; ")));
        };
        if current.taken_away(&map).is_empty() {
            return Ok(Found {
                map,
                from,
                confirmed_by: None,
                disputed: false,
            });
        }
        let witnesses = witnesses(current, &map, &self.options.seeds, &from);
        let mut answers = vec![(from, map)];
        for witness in witnesses.into_iter().take(MAX_WITNESSES) {
            let map = match self.view(&witness).await {
                Ok(map) => map,
                Err(e) => {
                    failures.push(format!("{witness}: {e}"));
                    continue;
                }
            };
            if current.taken_away(&map).is_empty() {
                return Ok(Found {
                    map,
                    from: witness,
                    confirmed_by: None,
                    disputed: true,
                });
            }
            for (i, (earlier, seen)) in answers.iter().enumerate() {
                if agree(current, seen, &map) {
                    return Ok(Found {
                        map: seen.clone(),
                        from: earlier.clone(),
                        confirmed_by: Some(witness),
                        disputed: i > 0,
                    });
                }
                if agree(current, &map, seen) {
                    return Ok(Found {
                        map,
                        from: witness,
                        confirmed_by: Some(earlier.clone()),
                        disputed: true,
                    });
                }
            }
            failures.push(format!("{witness}: a different view"));
            answers.push((witness, map));
        }
        let (from, map) = &answers[0];
        Err(DiscoveryError::Disputed(format!(
            "{from} takes {} slots from the map; {}",
            current.taken_away(map).len(),
            failures.join("; ")
        )))
    }
}

/// Whether `b` agrees with `a` on every slot `a` takes from `current` (same owner).
fn agree(current: &SlotMap, a: &SlotMap, b: &SlotMap) -> bool {
    current
        .taken_away(a)
        .into_iter()
        .all(|s| a.owner_key(s) == b.owner_key(s))
}

/// The nodes to ask for a second view, without `asked` and without repeats: the current
/// map's primaries, the new view's primaries, the replicas of both, then the seeds.
fn witnesses(current: &SlotMap, view: &SlotMap, seeds: &[String], asked: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let by_role = |map: &SlotMap, role: Role| -> Vec<String> {
        map.nodes()
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.address.clone())
            .collect()
    };
    let candidates = [
        by_role(current, Role::Primary),
        by_role(view, Role::Primary),
        by_role(current, Role::Replica),
        by_role(view, Role::Replica),
        seeds.to_vec(),
    ];
    for address in candidates.into_iter().flatten() {
        if address != asked && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::Node;

    /// A node of a test map: address, role, shard, the slots it owns.
    type Row<'a> = (&'a str, Role, usize, Option<(u16, u16)>);

    fn map(owners: &[Row]) -> SlotMap {
        let mut map = SlotMap::empty();
        for (address, role, shard, slots) in owners {
            let index = map.add_node(Node {
                address: (*address).to_owned(),
                id: String::new(),
                role: *role,
                port: None,
                tls_port: None,
                hostname: None,
                shard: *shard,
            });
            if let Some((first, last)) = slots {
                map.assign(*first, *last, index);
            }
        }
        map
    }

    #[test]
    fn witnesses_are_the_current_primaries_first_then_the_view_then_replicas_then_seeds() {
        let current = map(&[
            ("a:1", Role::Primary, 0, Some((0, 8191))),
            ("b:1", Role::Replica, 0, None),
            ("c:1", Role::Primary, 1, Some((8192, 16383))),
        ]);
        let view = map(&[
            ("a:1", Role::Primary, 0, Some((0, 16383))),
            ("d:1", Role::Primary, 1, None),
            ("e:1", Role::Replica, 1, None),
        ]);
        let seeds = ["s:1".to_owned(), "a:1".to_owned(), "c:1".to_owned()];
        assert_eq!(
            witnesses(&current, &view, &seeds, "a:1"),
            ["c:1", "d:1", "b:1", "e:1", "s:1"]
        );
    }

    #[test]
    fn agreement_is_on_the_slots_taken_from_the_current_map() {
        let current = map(&[
            ("a:1", Role::Primary, 0, Some((0, 8191))),
            ("c:1", Role::Primary, 1, Some((8192, 16383))),
        ]);
        // `takes` gives c's slots to a: a view saying the same agrees, one keeping them on
        // c does not; a view that takes nothing is agreed with by any.
        let takes = map(&[("a:1", Role::Primary, 0, Some((0, 16383)))]);
        let same = map(&[("a:1", Role::Primary, 0, Some((0, 16383)))]);
        let other = map(&[
            ("a:1", Role::Primary, 0, Some((0, 8191))),
            ("c:1", Role::Primary, 1, Some((8192, 16383))),
        ]);
        assert!(agree(&current, &takes, &same));
        assert!(!agree(&current, &takes, &other));
        assert!(agree(&current, &other, &takes), "other takes nothing");
    }
}
