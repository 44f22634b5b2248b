//! The command table, read from a `COMMAND` reply: what each command may write, from its
//! key specs (Redis 7) or its key positions (before). The upstream's own table is exact for
//! its version and modules; a built-in Redis 7 table stands in until it is loaded.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

use super::keyspec::{Keys, Writes};
use crate::cache::KeyHasher;

/// Command names to specs, hashed with the cache's cheap hasher (SipHash cost more than the
/// rest of classifying a command).
type Specs = HashMap<Vec<u8>, Spec, KeyHasher>;

/// The raw RESP2 `COMMAND` reply of redis-server 7.0 (`scripts/gen-command-table.sh`).
pub(super) const REDIS7: &[u8] = include_bytes!("redis7.resp");

static BUILTIN: LazyLock<CommandTable> = LazyLock::new(|| {
    let mut table = CommandTable::parse(REDIS7).expect("the built-in table parses");
    table.builtin = true;
    table
});

/// What the sidecar needs to know of one command.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What it may write.
    pub writes: Writes,
    /// The command's index in the counted commands ([`crate::metrics::commands::index`]),
    /// a subcommand's being its container's.
    pub metric: u16,
    /// True when the command's name needs no other decision than forwarding with its
    /// [`Spec::writes`] evicted (not L1-served, local, pinned, refused or special-cased in
    /// [`super::classify`]).
    pub plain: bool,
    /// True when running the command again cannot change anything or be noticed: it is
    /// `readonly` in the table's flags, neither blocking, pub/sub, a script nor an admin
    /// command, and not one whose effect is on the connection or the server
    /// ([`super::retryable`]). A call of such commands only is retried once when its
    /// upstream connection is lost.
    pub retryable: bool,
    /// The position of the command's first key (the legacy first-key field of `COMMAND`),
    /// `None` for a command without keys or whose keys move (`movablekeys`): the key whose
    /// slot routes it in a Redis Cluster.
    pub first_key: Option<u16>,
    /// Where every key of the command is, read or written (its key specs): listed only for
    /// a request routed by slot, to find the slots it touches.
    pub keys: Keys,
    /// Subcommands by lower-case name (`CONFIG` -> `set`, `get`, ...).
    subcommands: Specs,
}

impl PartialEq for Spec {
    fn eq(&self, other: &Spec) -> bool {
        self.writes == other.writes
            && self.metric == other.metric
            && self.plain == other.plain
            && self.retryable == other.retryable
            && self.first_key == other.first_key
            && self.keys == other.keys
            && self.subcommands.len() == other.subcommands.len()
            && self
                .subcommands
                .iter()
                .all(|(k, v)| other.subcommands.get(k) == Some(v))
    }
}

impl Eq for Spec {}

/// Commands by lower-case name.
#[derive(Debug, Default)]
pub struct CommandTable {
    commands: Specs,
    builtin: bool,
}

impl CommandTable {
    /// Parses a RESP2 `COMMAND` reply.
    pub fn parse(reply: &[u8]) -> Option<CommandTable> {
        let (frame, _) = decode(reply).ok()??;
        let OwnedFrame::Array(entries) = frame else {
            return None;
        };
        let commands = entries.iter().filter_map(parse_entry).collect();
        Some(CommandTable {
            commands,
            builtin: false,
        })
    }

    /// The table shipped with the sidecar (Redis 7.0), used until the upstream's is loaded.
    pub fn builtin() -> &'static CommandTable {
        &BUILTIN
    }

    /// True for the built-in table: a command it does not know may be the upstream's
    /// (a module's), not an error.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// The spec of a command given its arguments (resolving subcommands); `None` for an
    /// unknown command or an unknown subcommand of a known container.
    pub fn lookup(&self, args: &[Bytes]) -> Option<&Spec> {
        let spec = get_lowercase(&self.commands, &args[0])?;
        if spec.subcommands.is_empty() || args.len() < 2 {
            return Some(spec);
        }
        get_lowercase(&spec.subcommands, &args[1])
    }

    /// Number of top-level commands known.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Looks a name up case-insensitively, lower-casing on the stack (command names are short).
fn get_lowercase<'a>(map: &'a Specs, name: &[u8]) -> Option<&'a Spec> {
    let mut buf = [0u8; 32];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return map.get(&name.to_ascii_lowercase());
    };
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    map.get(&lower[..])
}

/// One entry: `[name, arity, flags, first, last, step, acl categories, tips, key specs,
/// subcommands]` (Redis 7; Redis 6 stops after the categories).
fn parse_entry(entry: &OwnedFrame) -> Option<(Vec<u8>, Spec)> {
    let OwnedFrame::Array(fields) = entry else {
        return None;
    };
    let name = match fields.first()? {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => b.to_ascii_lowercase(),
        _ => return None,
    };
    let int = |i: usize| match fields.get(i) {
        Some(OwnedFrame::Integer(n)) => Some(*n),
        _ => None,
    };
    let has_flag = |flag: &[u8]| match fields.get(2) {
        Some(OwnedFrame::Array(flags)) => flags.iter().any(|f| match f {
            OwnedFrame::SimpleString(s) | OwnedFrame::BulkString(s) => s.eq_ignore_ascii_case(flag),
            _ => false,
        }),
        _ => false,
    };
    let subcommands = match fields.get(9) {
        Some(OwnedFrame::Array(subs)) => subs
            .iter()
            .filter_map(parse_entry)
            .map(|(full, spec)| {
                // Subcommands are named "parent|sub".
                let sub = full.rsplit(|&b| b == b'|').next().unwrap_or(&full).to_vec();
                (sub, spec)
            })
            .collect(),
        _ => Specs::default(),
    };
    let write = has_flag(b"write");
    let writes = match fields.get(8) {
        Some(OwnedFrame::Array(specs)) if !specs.is_empty() => Writes::from_specs(&name, specs),
        _ => Writes::from_positions(write, has_flag(b"movablekeys"), int(3)?, int(4)?, int(5)?),
    };
    let keys = match fields.get(8) {
        Some(OwnedFrame::Array(specs)) if !specs.is_empty() => Keys::from_specs(&name, specs),
        _ => Keys::from_positions(has_flag(b"movablekeys"), int(3)?, int(4)?, int(5)?),
    };
    let first_key = match int(3)? {
        first if first > 0 && !has_flag(b"movablekeys") => u16::try_from(first).ok(),
        _ => None,
    };
    let metric = crate::metrics::commands::index(&name) as u16;
    let plain = super::plain(&name);
    // Any of these makes a read-only command unsafe to run twice.
    let effects = [
        &b"blocking"[..],
        b"pubsub",
        b"noscript",
        b"may_replicate",
        b"admin",
    ];
    let named = super::retryable(&name);
    let retryable = named && has_flag(b"readonly") && !effects.iter().any(|f| has_flag(f));
    let subcommands = subcommands
        .into_iter()
        .map(|(sub, spec)| {
            let spec = Spec {
                metric,
                plain,
                retryable: spec.retryable && named,
                ..spec
            };
            (sub, spec)
        })
        .collect();
    Some((
        name,
        Spec {
            writes,
            metric,
            plain,
            retryable,
            first_key,
            keys,
            subcommands,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable(args: &[&str]) -> bool {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        CommandTable::builtin()
            .lookup(&args)
            .is_some_and(|s| s.retryable)
    }

    #[test]
    fn only_side_effect_free_reads_are_retryable() {
        for read in [
            &["GET", "k"][..],
            &["mget", "a", "b"],
            &["HGETALL", "h"],
            &["ZRANGE", "z", "0", "-1"],
            &["SCAN", "0"],
            &["OBJECT", "ENCODING", "k"],
            &["XINFO", "STREAM", "s"],
        ] {
            assert!(retryable(read), "{read:?}");
        }
        for other in [
            &["SET", "k", "v"][..],
            &["INCR", "k"],
            &["XREAD", "STREAMS", "s", "0"],
            &["EVAL_RO", "return 1", "0"],
            &["FCALL_RO", "f", "0"],
            &["PUBLISH", "c", "m"],
            &["PUBSUB", "CHANNELS"],
            &["CLIENT", "LIST"],
            &["SCRIPT", "EXISTS", "x"],
            &["FUNCTION", "LIST"],
            &["WAIT", "1", "0"],
            &["CONFIG", "GET", "x"],
            &["OBJECT"],
            &["BLPOP", "l", "0"],
            &["PING"],
        ] {
            assert!(!retryable(other), "{other:?}");
        }
    }

    #[test]
    fn the_first_key_is_the_legacy_first_key_unless_keys_move() {
        let first = |args: &[&str]| {
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
            CommandTable::builtin().lookup(&args).unwrap().first_key
        };
        assert_eq!(first(&["GET", "k"]), Some(1));
        assert_eq!(first(&["SET", "k", "v"]), Some(1));
        assert_eq!(first(&["MGET", "a", "b"]), Some(1));
        assert_eq!(first(&["OBJECT", "ENCODING", "k"]), Some(2));
        assert_eq!(first(&["PING"]), None);
        assert_eq!(first(&["EVAL", "return 1", "1", "k"]), None);
        assert_eq!(first(&["ZUNION", "2", "a", "b"]), None);
    }

    /// The keys the built-in table lists for a request, or `None` when it cannot tell.
    fn keys(args: &[&str]) -> Option<Vec<String>> {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        let spec = CommandTable::builtin().lookup(&args).unwrap();
        let mut at = Vec::new();
        spec.keys.positions(&args, &mut at).ok()?;
        let key = |i: usize| String::from_utf8(args[i].to_vec()).unwrap();
        Some(at.into_iter().map(key).collect())
    }

    #[test]
    fn every_key_is_listed_read_or_written_movable_or_not() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["GET", "k"], &["k"]),
            (&["PING"], &[]),
            (&["MGET", "a", "b", "c"], &["a", "b", "c"]),
            (&["MSET", "a", "1", "b", "2"], &["a", "b"]),
            (&["DEL", "a", "b"], &["a", "b"]),
            (&["EXISTS", "a", "b"], &["a", "b"]),
            (&["TOUCH", "a", "b"], &["a", "b"]),
            (&["RENAME", "a", "b"], &["a", "b"]),
            (&["SUNION", "a", "b"], &["a", "b"]),
            (&["SMOVE", "a", "b", "m"], &["a", "b"]),
            (&["EVAL", "return 1", "2", "a", "b", "x"], &["a", "b"]),
            (&["EVAL", "return 1", "0"], &[]),
            (&["FCALL", "f", "1", "a", "x"], &["a"]),
            (&["ZUNIONSTORE", "d", "2", "a", "b"], &["d", "a", "b"]),
            (&["ZUNION", "2", "a", "b"], &["a", "b"]),
            (&["LMPOP", "2", "a", "b", "LEFT"], &["a", "b"]),
            (
                &["XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"],
                &["a", "b"],
            ),
            (&["SORT", "s", "BY", "w*", "STORE", "d"], &["s", "d"]),
            (&["SORT", "s"], &["s"]),
            (&["OBJECT", "ENCODING", "k"], &["k"]),
            (&["BITOP", "AND", "d", "a", "b"], &["d", "a", "b"]),
        ];
        for (args, want) in cases {
            let want: Vec<String> = want.iter().map(|k| k.to_string()).collect();
            assert_eq!(keys(args), Some(want), "{args:?}");
        }
        // A keynum beyond the arguments: a syntax error the upstream reports.
        assert_eq!(keys(&["EVAL", "return 1", "3", "a"]), None);
    }

    #[test]
    fn keys_from_legacy_positions_are_a_range_or_unknown_when_they_move() {
        let args: Vec<Bytes> = ["MSET", "a", "1", "b", "2"]
            .map(|a| Bytes::from_static(a.as_bytes()))
            .to_vec();
        let mut at = Vec::new();
        let keys = Keys::from_positions(false, 1, -1, 2);
        keys.positions(&args, &mut at).unwrap();
        assert_eq!(at, [1, 3]);
        assert_eq!(Keys::from_positions(false, 0, 0, 0), Keys::None);
        assert_eq!(Keys::from_positions(true, 0, 0, 0), Keys::Unknown);
        assert!(Keys::Unknown.positions(&args, &mut at).is_err());
    }
}
