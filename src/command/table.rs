//! The command table, read from the upstream's own `COMMAND` reply: which commands write,
//! and where their keys are. Exact for the upstream's version and its modules.

use std::collections::HashMap;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

/// What the sidecar needs to know of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// Has the `write` flag.
    pub write: bool,
    /// Key positions depend on the arguments (`movablekeys`).
    pub movable: bool,
    /// Position of the first key (0: none).
    pub first: i64,
    /// Position of the last key; negative counts from the end.
    pub last: i64,
    /// Step between keys.
    pub step: i64,
    /// Subcommands by lower-case name (`CONFIG` -> `set`, `get`, ...).
    pub subcommands: HashMap<Vec<u8>, Spec>,
}

/// Commands by lower-case name.
#[derive(Debug, Default)]
pub struct CommandTable {
    commands: HashMap<Vec<u8>, Spec>,
}

impl CommandTable {
    /// Parses a RESP2 `COMMAND` reply.
    pub fn parse(reply: &[u8]) -> Option<CommandTable> {
        let (frame, _) = decode(reply).ok()??;
        let OwnedFrame::Array(entries) = frame else {
            return None;
        };
        let commands = entries.iter().filter_map(parse_entry).collect();
        Some(CommandTable { commands })
    }

    /// The spec of a command given its arguments (resolving subcommands).
    pub fn lookup(&self, args: &[bytes::Bytes]) -> Option<&Spec> {
        let spec = get_lowercase(&self.commands, &args[0])?;
        if spec.subcommands.is_empty() || args.len() < 2 {
            return Some(spec);
        }
        Some(get_lowercase(&spec.subcommands, &args[1]).unwrap_or(spec))
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

impl Spec {
    /// The argument positions of the keys, from first/last/step.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let argc = argc as i64;
        let last = if self.last < 0 {
            argc + self.last
        } else {
            self.last
        };
        let (first, step) = (self.first, self.step.max(1));
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |&p| first > 0 && p <= last && p < argc)
            .map(|p| p as usize)
    }
}

/// Looks a name up case-insensitively, lower-casing on the stack (command names are short).
fn get_lowercase<'a>(map: &'a HashMap<Vec<u8>, Spec>, name: &[u8]) -> Option<&'a Spec> {
    let mut buf = [0u8; 32];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return map.get(&name.to_ascii_lowercase());
    };
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    map.get(&lower[..])
}

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
        _ => HashMap::new(),
    };
    let spec = Spec {
        write: has_flag(b"write"),
        movable: has_flag(b"movablekeys"),
        first: int(3)?,
        last: int(4)?,
        step: int(5)?,
        subcommands,
    };
    Some((name, spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const COMMAND_REPLY: &[u8] = b"*2\r\n\
        *10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n*0\r\n*0\r\n*0\r\n*0\r\n\
        *10\r\n$6\r\nxgroup\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*1\r\n\
        *10\r\n$13\r\nxgroup|create\r\n:-5\r\n*1\r\n+write\r\n:2\r\n:2\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n";

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn parses_flags_keys_and_subcommands() {
        let t = CommandTable::parse(COMMAND_REPLY).unwrap();
        assert_eq!(t.len(), 2);
        let mset = args(&["MSET", "a", "1", "b", "2"]);
        let spec = t.lookup(&mset).unwrap();
        assert!(spec.write);
        assert_eq!(
            spec.key_positions(mset.len()).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let create = args(&["XGROUP", "CREATE", "stream", "g", "$"]);
        let spec = t.lookup(&create).unwrap();
        assert!(spec.write);
        assert_eq!(
            spec.key_positions(create.len()).collect::<Vec<_>>(),
            vec![2]
        );
        assert!(t.lookup(&args(&["nosuch"])).is_none());
    }
}
