//! The command table and classification: each request becomes one small decision — serve
//! from L1, forward (and invalidate what it writes), answer locally, or refuse.

mod table;

use bytes::Bytes;

pub use table::{CommandTable, Spec};

use crate::protocol::Request;

/// What a command may have written, to evict from L1 before and after it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Writes nothing cacheable.
    None,
    /// These keys.
    Keys(Vec<WrittenKey>),
    /// Everything in one database.
    Db(u32),
    /// Everything (the keys written cannot be known).
    All,
}

/// A key a command may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenKey {
    /// Database of the key.
    pub db: u32,
    /// The key.
    pub key: Bytes,
    /// What L1 reported when the key was evicted before sending (see
    /// [`crate::cache::L1::invalidate`]); 0 until then.
    pub seen: u64,
}

impl WrittenKey {
    fn new(db: u32, key: Bytes) -> WrittenKey {
        WrittenKey { db, key, seen: 0 }
    }
}

/// Commands whose reply or effect depends on per-client state the sidecar keeps itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `SELECT db`
    Select,
    /// `AUTH [user] pass`
    Auth,
    /// `HELLO [ver [AUTH u p] [SETNAME n]]`
    Hello,
    /// `RESET`
    Reset,
    /// `QUIT`
    Quit,
    /// `INFO [section ...]`
    Info,
    /// `CLIENT SETNAME name`
    ClientSetName,
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`: this client connection's own id, not the shared upstream connection's.
    ClientId,
    /// `SCRIPT KILL`, `FUNCTION KILL`: sent on a fresh connection, not queued behind the
    /// script they stop.
    Kill,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET key`: L1, else fetch and fill.
    Get,
    /// `MGET key...`: L1 for each key, one upstream MGET for the rest.
    Mget,
    /// Forward the raw request; evict what it may write.
    Forward(Invalidation),
    /// Handled by the session.
    Local(Local),
    /// Needs a pinned connection: `-ERR nearcache: <name> is not supported yet`.
    Refuse(Bytes),
}

/// Commands that need a connection of their own (a later release pins one per client).
const PINNED: &[&[u8]] = &[
    b"MULTI",
    b"EXEC",
    b"DISCARD",
    b"WATCH",
    b"UNWATCH",
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
    b"READONLY",
    b"READWRITE",
    b"SYNC",
    b"PSYNC",
    b"REPLCONF",
    b"BLPOP",
    b"BRPOP",
    b"BLMOVE",
    b"BRPOPLPUSH",
    b"BLMPOP",
    b"BZPOPMIN",
    b"BZPOPMAX",
    b"BZMPOP",
    b"WAIT",
    b"WAITAOF",
];
/// CLIENT subcommands that change, or report on, the state of the client's own upstream
/// connection, which is shared here (KILL: ids from CLIENT ID are the sidecar's).
const PINNED_CLIENT: &[&[u8]] = &[
    b"TRACKING",
    b"REPLY",
    b"NO-EVICT",
    b"NO-TOUCH",
    b"CACHING",
    b"UNBLOCK",
    b"INFO",
    b"GETREDIR",
    b"TRACKINGINFO",
    b"KILL",
];
/// Commands that may write keys they do not declare, or the whole dataset.
const WRITES_ANYTHING: &[&[u8]] = &[
    b"EVAL",
    b"EVALSHA",
    b"FCALL",
    b"FLUSHALL",
    b"SWAPDB",
    b"DEBUG",
    b"REPLICAOF",
    b"SLAVEOF",
];

fn is(name: &[u8], candidate: &[u8]) -> bool {
    name.eq_ignore_ascii_case(candidate)
}

fn any(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|c| is(name, c))
}

/// Classifies a request issued in database `db`. `table` is `None` until the upstream's
/// command table is loaded; meanwhile unknown commands invalidate everything.
pub fn classify(req: &Request, db: u32, table: Option<&CommandTable>) -> Action {
    let args = &req.args;
    let name = req.name();
    if is(name, b"GET") && args.len() == 2 {
        return Action::Get;
    }
    if is(name, b"MGET") && args.len() >= 2 {
        return Action::Mget;
    }
    if let Some(local) = local(name, args) {
        return Action::Local(local);
    }
    if let Some(refused) = refused(name, args) {
        return Action::Refuse(refused);
    }
    Action::Forward(invalidation(name, args, db, table))
}

fn local(name: &[u8], args: &[Bytes]) -> Option<Local> {
    let sub = args.get(1).map(|s| &s[..]).unwrap_or(b"");
    Some(match () {
        _ if is(name, b"SELECT") => Local::Select,
        _ if is(name, b"AUTH") => Local::Auth,
        _ if is(name, b"HELLO") => Local::Hello,
        _ if is(name, b"RESET") => Local::Reset,
        _ if is(name, b"QUIT") => Local::Quit,
        _ if is(name, b"INFO") => Local::Info,
        _ if is(name, b"CLIENT") && is(sub, b"SETNAME") && args.len() == 3 => Local::ClientSetName,
        _ if is(name, b"CLIENT") && is(sub, b"GETNAME") && args.len() == 2 => Local::ClientGetName,
        _ if is(name, b"CLIENT") && is(sub, b"ID") && args.len() == 2 => Local::ClientId,
        _ if (is(name, b"SCRIPT") || is(name, b"FUNCTION")) && is(sub, b"KILL") => Local::Kill,
        _ => return None,
    })
}

fn refused(name: &[u8], args: &[Bytes]) -> Option<Bytes> {
    if any(name, PINNED) {
        return Some(args[0].clone());
    }
    if is(name, b"CLIENT") && args.get(1).is_some_and(|s| any(s, PINNED_CLIENT)) {
        let mut both = args[0].to_vec();
        both.push(b' ');
        both.extend_from_slice(&args[1]);
        return Some(both.into());
    }
    let blocking_read = is(name, b"XREAD") || is(name, b"XREADGROUP");
    if blocking_read && args.iter().any(|a| is(a, b"BLOCK")) {
        return Some(args[0].clone());
    }
    None
}

fn invalidation(
    name: &[u8],
    args: &[Bytes],
    db: u32,
    table: Option<&CommandTable>,
) -> Invalidation {
    if any(name, WRITES_ANYTHING) {
        return Invalidation::All;
    }
    if is(name, b"FLUSHDB") {
        return Invalidation::Db(db);
    }
    if is(name, b"MOVE") && args.len() == 3 {
        return cross_db(db, &args[1], &args[2], Vec::new());
    }
    if is(name, b"COPY") && args.len() >= 3 {
        let keys = vec![
            WrittenKey::new(db, args[1].clone()),
            WrittenKey::new(db, args[2].clone()),
        ];
        return match args.iter().position(|a| is(a, b"DB")) {
            Some(i) if i + 1 < args.len() => cross_db(db, &args[2], &args[i + 1], keys),
            _ => Invalidation::Keys(keys),
        };
    }
    let Some(table) = table else {
        return Invalidation::All;
    };
    let Some(spec) = table.lookup(args) else {
        return Invalidation::None; // unknown to the upstream: it will refuse the command
    };
    if !spec.write {
        return Invalidation::None;
    }
    let keys: Vec<WrittenKey> = if spec.movable {
        // Positions depend on the arguments: treat every argument as a possible key.
        args[1..]
            .iter()
            .map(|a| WrittenKey::new(db, a.clone()))
            .collect()
    } else {
        let positions = spec.key_positions(args.len());
        positions
            .map(|i| WrittenKey::new(db, args[i].clone()))
            .collect()
    };
    if keys.is_empty() {
        Invalidation::All
    } else {
        Invalidation::Keys(keys)
    }
}

/// `key` in `db` and in the database named by `target` (or everything if it is not a number).
fn cross_db(db: u32, key: &Bytes, target: &[u8], mut keys: Vec<WrittenKey>) -> Invalidation {
    let Some(other) = std::str::from_utf8(target)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return Invalidation::All;
    };
    keys.push(WrittenKey::new(db, key.clone()));
    keys.push(WrittenKey::new(other, key.clone()));
    Invalidation::Keys(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(a: &[&str]) -> Request {
        let args: Vec<&[u8]> = a.iter().map(|s| s.as_bytes()).collect();
        Request::from_args(&args)
    }

    fn key(db: u32, k: &str) -> WrittenKey {
        WrittenKey::new(db, Bytes::copy_from_slice(k.as_bytes()))
    }

    #[test]
    fn classifies_reads_locals_and_refusals() {
        assert_eq!(classify(&req(&["get", "k"]), 0, None), Action::Get);
        assert_eq!(
            classify(&req(&["GET"]), 0, None),
            Action::Forward(Invalidation::All)
        );
        assert_eq!(classify(&req(&["MGet", "a", "b"]), 0, None), Action::Mget);
        assert_eq!(
            classify(&req(&["select", "1"]), 0, None),
            Action::Local(Local::Select)
        );
        assert_eq!(
            classify(&req(&["client", "setname", "x"]), 0, None),
            Action::Local(Local::ClientSetName)
        );
        assert_eq!(
            classify(&req(&["multi"]), 0, None),
            Action::Refuse(Bytes::from("multi"))
        );
        assert_eq!(
            classify(&req(&["CLIENT", "TRACKING", "on"]), 0, None),
            Action::Refuse(Bytes::from("CLIENT TRACKING"))
        );
        assert_eq!(
            classify(&req(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]), 0, None),
            Action::Refuse(Bytes::from("XREAD"))
        );
    }

    #[test]
    fn cross_database_writes_evict_both_sides() {
        assert_eq!(
            classify(&req(&["MOVE", "k", "3"]), 1, None),
            Action::Forward(Invalidation::Keys(vec![key(1, "k"), key(3, "k")]))
        );
        assert_eq!(
            classify(&req(&["COPY", "a", "b", "DB", "2"]), 0, None),
            Action::Forward(Invalidation::Keys(vec![
                key(0, "a"),
                key(0, "b"),
                key(0, "b"),
                key(2, "b")
            ]))
        );
        assert_eq!(
            classify(&req(&["FLUSHDB"]), 4, None),
            Action::Forward(Invalidation::Db(4))
        );
        assert_eq!(
            classify(&req(&["eval", "x", "0"]), 0, None),
            Action::Forward(Invalidation::All)
        );
    }
}
