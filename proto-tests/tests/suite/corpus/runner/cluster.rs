//! Cluster mode of the corpus: the tested side is the sidecar in front of a Redis Cluster
//! (three primaries, three replicas), emptied before each case straight on every primary.
//!
//! Keys: every key of a command (as the reference's `COMMAND GETKEYS` finds them) gets one
//! common hash tag on both sides, so multi-key commands stay legal in Cluster and replies
//! stay identical; the tag's slot lives on the primary that is not a seed of the sidecar's
//! URL (keys must be routed, not just sent to the first seed). Cases marked untagged keep
//! their keys, which then spread over the nodes (what the sidecar splits).
//!
//! Listed differences (`listed.rs`): where Redis Cluster itself answers otherwise than a
//! standalone Redis, the command (on both sides) or the whole case is left out, each with its
//! reason, printed with the run; where the cluster's own answer is known, a case pins it with
//! [`Case::cluster_differs`] instead. `CORPUS_SELF_CHECK` does not apply (B straight to the
//! nodes would need a cluster-aware client).

use std::collections::HashMap;

use nearcache::upstream::cluster::slot;
use proto_tests::cluster::ClusterGroup;
use proto_tests::{encode_command, show, Conn, Redis, Sidecar};

use super::listed::{LISTED, MODE_REASON, SKIPPED_CASES};
use super::side::reset_with;
use super::Case;

/// What empties the sidecar's L1 after the nodes were emptied directly (their
/// invalidations could still be on their way to it).
pub const L1_FLUSH: &[&[u8]] = &[b"NEARCACHE", b"FLUSH"];

/// The sidecar in front of a cluster (dropped before the cluster: fields drop in order).
pub struct ClusterSide {
    pub sidecar: Sidecar,
    pub group: ClusterGroup,
    /// The primaries' ports.
    primaries: Vec<u16>,
    /// The common hash tag, braces included (`{t3}`).
    tag: Vec<u8>,
}

impl ClusterSide {
    /// Starts the cluster and a sidecar whose seeds are two of its primaries; picks a tag
    /// owned by the third.
    pub fn start() -> ClusterSide {
        let group = ClusterGroup::start();
        let primaries = group.primaries();
        let seeds: Vec<String> = primaries[..2]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let url = format!("redis+cluster://{}", seeds.join(","));
        let tag = (0..)
            .map(|i| format!("{{t{i}}}").into_bytes())
            .find(|t| group.owner(slot(t)) == primaries[2])
            .expect("a tag on the third primary");
        eprintln!(
            "corpus cluster: primaries {primaries:?}, seeds {seeds:?}, tag {} (slot {} on {})",
            String::from_utf8_lossy(&tag),
            slot(&tag),
            primaries[2]
        );
        ClusterSide {
            sidecar: Sidecar::start_url(&url, &[]),
            group,
            primaries,
            tag,
        }
    }

    /// Sends every command of `resets` to every primary directly.
    pub fn reset(&self, resets: &[&[&[u8]]]) -> Result<(), String> {
        for &port in &self.primaries {
            let mut conn = self.group.node(port).conn();
            for reset in resets {
                reset_with(&mut conn, reset).map_err(|e| format!("primary {port}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The cases as they run against the cluster: listed cases and commands left out,
    /// keys tagged (asking `reference` which arguments are keys). Prints what was left out.
    pub fn prepare(&self, reference: &Redis, cases: &[Case]) -> Vec<Case> {
        let mut tagger = Tagger {
            conn: reference.conn(),
            tag: self.tag.clone(),
            cache: HashMap::new(),
            untaggable: Vec::new(),
        };
        let mut removed = vec![0usize; LISTED.len()];
        let mut skipped = Vec::new();
        let mut out = Vec::new();
        for case in cases {
            if let Some((_, why)) = SKIPPED_CASES.iter().find(|(n, _)| case.name == *n) {
                skipped.push(format!("{} ({why})", case.name));
                continue;
            }
            let mut case = case.clone();
            let commands = std::mem::take(&mut case.commands);
            case.commands = commands
                .into_iter()
                .filter(|c| {
                    let hit = LISTED.iter().position(|l| {
                        !c.args.is_empty()
                            && c.cluster_reply.is_none()
                            && (l.matches)(&case, &c.args)
                    });
                    if let Some(i) = hit {
                        removed[i] += 1;
                    }
                    hit.is_none()
                })
                .collect();
            if !case.untagged {
                for cmd in &mut case.commands {
                    if !cmd.args.is_empty() {
                        cmd.args = tagger.rewrite(&cmd.args);
                    }
                }
            }
            out.push(case);
        }
        eprintln!("corpus cluster: listed differences (left out on both sides):");
        for (l, n) in LISTED.iter().zip(&removed) {
            eprintln!("  - {}: {n} command(s): {}", l.what, l.reason);
        }
        for s in &skipped {
            eprintln!("  - case {s}");
        }
        let pinned: Vec<String> = out
            .iter()
            .flat_map(|c| c.commands.iter().map(move |cmd| (c, cmd)))
            .filter_map(|(c, cmd)| {
                let reply = cmd.cluster_reply.as_ref()?;
                let args = super::show_args(&cmd.args);
                Some(format!("{}: `{args}` -> {}", c.name, show(reply)))
            })
            .collect();
        if !pinned.is_empty() {
            eprintln!(
                "corpus cluster: listed differences (compared with Redis Cluster's own reply):"
            );
            for p in &pinned {
                eprintln!("  - {p}");
            }
        }
        eprintln!("corpus cluster: listed differences (normalised on both sides):");
        eprintln!("  - HELLO's mode field: {MODE_REASON}");
        if !tagger.untaggable.is_empty() {
            eprintln!(
                "corpus cluster: {} command(s) left untagged (keys not found in place): {}",
                tagger.untaggable.len(),
                tagger.untaggable.join("; ")
            );
        }
        out
    }
}

/// Rewrites the keys of commands `k` -> `{tag}k`, finding them with the reference's
/// `COMMAND GETKEYS` (one question per distinct command).
struct Tagger {
    conn: Conn,
    tag: Vec<u8>,
    /// The key positions of each command seen (`None`: keyless, refused, or not found).
    cache: HashMap<Vec<Vec<u8>>, Option<Vec<usize>>>,
    /// Commands whose keys could not be placed among their arguments.
    untaggable: Vec<String>,
}

impl Tagger {
    fn rewrite(&mut self, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
        if !self.cache.contains_key(args) {
            let found = self.positions(args);
            self.cache.insert(args.to_vec(), found);
        }
        match &self.cache[args] {
            Some(positions) => self.tagged(args, positions),
            None => args.to_vec(),
        }
    }

    fn tagged(&self, args: &[Vec<u8>], positions: &[usize]) -> Vec<Vec<u8>> {
        let mut out = args.to_vec();
        for &p in positions {
            out[p] = [self.tag.as_slice(), &args[p]].concat();
        }
        out
    }

    /// Where the keys `COMMAND GETKEYS` names are among `args`, in order, checked by
    /// asking again about the rewritten command.
    fn positions(&mut self, args: &[Vec<u8>]) -> Option<Vec<usize>> {
        let keys = self.getkeys(args)?;
        let mut positions = Vec::new();
        let mut from = 1;
        for key in &keys {
            match (from..args.len()).find(|&i| args[i] == *key) {
                Some(i) => {
                    positions.push(i);
                    from = i + 1;
                }
                None => {
                    self.untaggable.push(super::show_args(args));
                    return None;
                }
            }
        }
        let rewritten = self.tagged(args, &positions);
        let want: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| [self.tag.as_slice(), k].concat())
            .collect();
        if self.getkeys(&rewritten).as_ref() != Some(&want) {
            self.untaggable.push(super::show_args(args));
            return None;
        }
        Some(positions)
    }

    /// The keys of `args` per `COMMAND GETKEYS` (`None` when it refuses: no keys, unknown
    /// command, bad arity).
    fn getkeys(&mut self, args: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        let mut request: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        request.extend(args.iter().map(Vec::as_slice));
        self.conn.send(&encode_command(&request));
        let reply = self.conn.read_reply();
        if reply.first() == Some(&b'-') {
            return None;
        }
        Some(bulk_array(&reply).unwrap_or_else(|| panic!("COMMAND GETKEYS: {}", show(&reply))))
    }
}

/// The bulk strings of a RESP2 array of bulk strings (binary safe).
fn bulk_array(reply: &[u8]) -> Option<Vec<Vec<u8>>> {
    fn line(buf: &[u8], at: &mut usize) -> Option<i64> {
        let end = *at + buf[*at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[*at + 1..end]).ok()?.parse().ok()?;
        *at = end + 2;
        Some(n)
    }
    if reply.first() != Some(&b'*') {
        return None;
    }
    let mut at = 0;
    let n = line(reply, &mut at)?;
    let mut out = Vec::new();
    for _ in 0..n {
        if reply.get(at) != Some(&b'$') {
            return None;
        }
        let len = usize::try_from(line(reply, &mut at)?).ok()?;
        out.push(reply.get(at..at + len)?.to_vec());
        at += len + 2;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::runner::tokenize;

    #[test]
    fn keys_are_tagged_where_getkeys_finds_them() {
        let redis = Redis::start();
        let mut tagger = Tagger {
            conn: redis.conn(),
            tag: b"{t}".to_vec(),
            cache: HashMap::new(),
            untaggable: Vec::new(),
        };
        for (line, want) in [
            ("SET k k", "SET {t}k k"),
            ("MSET a 1 b 2", "MSET {t}a 1 {t}b 2"),
            (
                "EVAL 'return 1' 2 k1 k2 k1",
                "EVAL 'return 1' 2 {t}k1 {t}k2 k1",
            ),
            ("BITOP NOT k k", "BITOP NOT {t}k {t}k"),
            ("'' ''", "'' ''"),
            ("PING", "PING"),
            ("GET", "GET"),
            ("NOSUCH k", "NOSUCH k"),
            // The value `b` comes before the key `b`: not placed, left untagged.
            ("MSET a b b 2", "MSET a b b 2"),
        ] {
            assert_eq!(tagger.rewrite(&tokenize(line)), tokenize(want), "{line}");
        }
        assert_eq!(tagger.untaggable, vec!["MSET a b b 2".to_string()]);
    }

    #[test]
    fn bulk_arrays_are_binary_safe() {
        assert_eq!(
            bulk_array(b"*2\r\n$3\r\na\r\n\r\n$0\r\n\r\n"),
            Some(vec![b"a\r\n".to_vec(), Vec::new()])
        );
    }
}
