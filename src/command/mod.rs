//! The command table and classification: each request becomes one small decision — serve
//! from L1, forward (and invalidate what it writes), answer locally, or refuse.

mod keyspec;
pub mod load;
mod table;
mod written;

use bytes::Bytes;

pub use keyspec::{Invalid, Keys, Writes};
pub use load::{Source, Tables};
pub use table::{CommandTable, Spec};
pub use written::WrittenKeys;

use crate::protocol::{is, Request};

/// What a command may have written, to evict from L1 before and after it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Writes nothing cacheable.
    None,
    /// These keys.
    Keys(WrittenKeys),
    /// Everything in one database.
    Db(u32),
    /// Everything (the keys written cannot be known).
    All,
    /// Everything, and Redis tracking says nothing of it (`SWAPDB`): every other sidecar
    /// is told to flush over the bus, whatever the tracking mode.
    Swapped,
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
    /// `CLIENT REPLY ON|OFF|SKIP`: the sidecar drops the replies the client asked not to
    /// get (the upstream connections are shared, and every reply is matched to a request).
    ClientReply,
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: `id` is a sidecar client id, translated to
    /// the upstream id of that client's pinned connection.
    ClientUnblock,
    /// `CLIENT KILL ID id [SKIPME yes|no] ...`: closes the sidecar's client with that id.
    ClientKill,
    /// `SCRIPT KILL`, `FUNCTION KILL`, `CLIENT UNPAUSE`: sent on a fresh connection, not
    /// queued behind the script or the paused write they end.
    Kill,
    /// `NEARCACHE <subcommand> ...`: the sidecar's own command (pattern invalidation,
    /// DELPATTERN, FLUSH, STATS, HELP).
    Nearcache,
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
    /// Runs on a connection pinned to this client (see [`PINNED`]).
    Pin,
    /// Not proxied: `-ERR nearcache: <name> is not supported`.
    Refuse(Bytes),
}

/// Commands that put the client's upstream connection in a state of its own (a
/// transaction, watched keys, subscriptions, a blocked call, monitoring), so they run on a
/// connection pinned to that client (see `connection::handlers::pinned`); so do [`BLOCKING`] ones.
const PINNED: &[&[u8]] = &[
    b"MULTI",
    b"WATCH",
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
    b"READONLY",
    b"READWRITE",
];
/// CLIENT subcommands that change, or report on, the state of the client's own upstream
/// connection: they run on its pinned connection.
const PINNED_CLIENT: &[&[u8]] = &[
    b"TRACKING",
    b"NO-EVICT",
    b"NO-TOUCH",
    b"CACHING",
    b"INFO",
    b"GETREDIR",
    b"TRACKINGINFO",
];
/// Commands the sidecar does not proxy: the replication protocol (a replica must talk to
/// the primary itself).
const REFUSED: &[&[u8]] = &[b"SYNC", b"PSYNC", b"REPLCONF"];
/// CLIENT subcommands the sidecar does not proxy: `KILL` by address, user, type or age
/// names upstream clients the application cannot know (its clients are the sidecar's);
/// `KILL ID` is answered locally (see [`Local::ClientKill`]).
const REFUSED_CLIENT: &[&[u8]] = &[b"KILL"];
/// Commands that may block on the server until their own timeout.
const BLOCKING: &[&[u8]] = &[
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

fn any(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|c| is(name, c))
}

/// Read-only commands never retried: their effect is on the connection, the server or a
/// script's run, or they wait on the server.
const NOT_RETRIED: &[&[u8]] = &[
    b"CLIENT",
    b"SCRIPT",
    b"FUNCTION",
    b"EVAL_RO",
    b"EVALSHA_RO",
    b"FCALL_RO",
    b"PUBSUB",
    b"PUBLISH",
    b"SPUBLISH",
];

/// Whether a command name may be retried when its flags allow (see [`Spec::retryable`]):
/// not a name of [`NOT_RETRIED`], [`PINNED`], [`BLOCKING`] or [`WRITES_ANYTHING`].
pub(crate) fn retryable(name: &[u8]) -> bool {
    ![NOT_RETRIED, PINNED, BLOCKING, WRITES_ANYTHING]
        .iter()
        .any(|list| any(name, list))
}

/// Names [`classify`] decides on by name (everything else is forwarded with what its
/// spec says it writes): see [`Spec::plain`].
const SPECIAL: &[&[u8]] = &[
    b"GET",
    b"MGET",
    b"SELECT",
    b"AUTH",
    b"HELLO",
    b"RESET",
    b"QUIT",
    b"INFO",
    b"CLIENT",
    b"SCRIPT",
    b"FUNCTION",
    b"NEARCACHE",
    b"ACL",
    b"XREAD",
    b"XREADGROUP",
    b"FLUSHDB",
    b"MOVE",
    b"COPY",
];

/// Whether a command name needs no decision beyond its spec (see [`Spec::plain`]).
pub(crate) fn plain(name: &[u8]) -> bool {
    ![SPECIAL, PINNED, REFUSED, BLOCKING, WRITES_ANYTHING]
        .iter()
        .any(|list| any(name, list))
}

/// Classifies a request issued in database `db` with `table` (the upstream's, or the
/// built-in one until that is loaded).
pub fn classify(req: &Request, db: u32, table: &CommandTable) -> Action {
    classify_spec(req, db, table, table.lookup(&req.args))
}

/// [`classify`] with the request's spec already looked up in `table`: a plain command
/// (most of them) is decided by that one lookup.
pub fn classify_spec(req: &Request, db: u32, table: &CommandTable, spec: Option<&Spec>) -> Action {
    let args = &req.args;
    if let Some(spec) = spec.filter(|s| s.plain) {
        return Action::Forward(written(&spec.writes, args, db));
    }
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
    if pins(name, args) {
        return Action::Pin;
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
        _ if is(name, b"CLIENT") && is(sub, b"REPLY") && args.len() == 3 => Local::ClientReply,
        _ if is(name, b"CLIENT") && is(sub, b"UNBLOCK") && (3..=4).contains(&args.len()) => {
            Local::ClientUnblock
        }
        _ if is(name, b"CLIENT") && is(sub, b"KILL") && kills_by_id(args) => Local::ClientKill,
        _ if (is(name, b"SCRIPT") || is(name, b"FUNCTION")) && is(sub, b"KILL") => Local::Kill,
        _ if is(name, b"CLIENT") && is(sub, b"UNPAUSE") => Local::Kill,
        _ if is(name, b"NEARCACHE") => Local::Nearcache,
        _ => return None,
    })
}

/// `CLIENT KILL` with `ID` and `SKIPME` filters only (at least one `ID`).
fn kills_by_id(args: &[Bytes]) -> bool {
    let filters = &args[2..];
    filters.len() >= 2
        && filters.len().is_multiple_of(2)
        && filters.chunks(2).any(|f| is(&f[0], b"ID"))
        && filters
            .chunks(2)
            .all(|f| is(&f[0], b"ID") || is(&f[0], b"SKIPME"))
}

fn refused(name: &[u8], args: &[Bytes]) -> Option<Bytes> {
    if any(name, REFUSED) {
        return Some(args[0].clone());
    }
    if is(name, b"CLIENT") && args.get(1).is_some_and(|s| any(s, REFUSED_CLIENT)) {
        let mut both = args[0].to_vec();
        both.push(b' ');
        both.extend_from_slice(&args[1]);
        return Some(both.into());
    }
    None
}

/// Whether a command needs the client's own upstream connection.
fn pins(name: &[u8], args: &[Bytes]) -> bool {
    any(name, PINNED)
        || any(name, BLOCKING)
        || (is(name, b"CLIENT") && args.get(1).is_some_and(|s| any(s, PINNED_CLIENT)))
        || blocking_read(name, args)
}

/// `XREAD`/`XREADGROUP` with a `BLOCK` option.
fn blocking_read(name: &[u8], args: &[Bytes]) -> bool {
    (is(name, b"XREAD") || is(name, b"XREADGROUP")) && args.iter().any(|a| is(a, b"BLOCK"))
}

/// Whether a command may wait on the server for as long as its own timeout says (so no
/// upstream timeout applies to it).
pub fn blocks(args: &[Bytes]) -> bool {
    let name = &args[0];
    any(name, BLOCKING) || blocking_read(name, args)
}

/// Whether a command is never queued by MULTI and not allowed inside it here: the
/// subscribe family changes how replies are framed.
pub fn subscribes(args: &[Bytes]) -> bool {
    let name = &args[0];
    [
        &b"SUBSCRIBE"[..],
        b"PSUBSCRIBE",
        b"SSUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PUNSUBSCRIBE",
        b"SUNSUBSCRIBE",
    ]
    .iter()
    .any(|c| is(name, c))
}

/// What a request may write when run in database `db` (whatever its action).
pub fn writes(req: &Request, db: u32, table: &CommandTable) -> Invalidation {
    invalidation(req.name(), &req.args, db, table)
}

fn invalidation(name: &[u8], args: &[Bytes], db: u32, table: &CommandTable) -> Invalidation {
    if is(name, b"SWAPDB") {
        return Invalidation::Swapped;
    }
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
            _ => Invalidation::Keys(keys.into()),
        };
    }
    let writes = match table.lookup(args) {
        Some(spec) => &spec.writes,
        // Unknown to the built-in table: maybe a module's command, with keys anywhere.
        None if table.is_builtin() => &Writes::EveryArgument,
        // Unknown to the upstream: it will refuse the command.
        None => &Writes::Nothing,
    };
    written(writes, args, db)
}

/// The keys `writes` says a command with `args` may write.
fn written(writes: &Writes, args: &[Bytes], db: u32) -> Invalidation {
    let mut keys = WrittenKeys::default();
    let mut push = |i: usize| keys.push(WrittenKey::new(db, args[i].clone()));
    match writes {
        Writes::Nothing => return Invalidation::None,
        Writes::Everything => return Invalidation::All,
        Writes::EveryArgument => (1..args.len()).for_each(push),
        Writes::SortStore => keyspec::sort_store(args, push),
        Writes::Keys(specs) => {
            if specs.iter().any(|s| s.positions(args, &mut push).is_err()) {
                // A syntax error the upstream will report; evict every argument anyway.
                return written(&Writes::EveryArgument, args, db);
            }
        }
    }
    if keys.is_empty() {
        Invalidation::None
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
    Invalidation::Keys(keys.into())
}

#[cfg(test)]
mod tests;
