//! What a request sent on a pinned connection will do once answered (see `state`).

use bytes::Bytes;

use super::state::{Effect, Family, Flag};
use crate::command::Invalidation;
use crate::connection::handlers::local::command::{credentials, database, Hello};
use crate::protocol::is;

/// The effect of a command that changes the pinned connection's state, or `None` for a
/// command that at most writes keys.
pub(in crate::connection) fn effect(args: &[Bytes]) -> Option<Effect> {
    let name = &args[0][..];
    let sub = args.get(1).map(|s| &s[..]).unwrap_or(b"");
    let subscribe = |family, subscribe| {
        let named = args.len() - 1;
        Effect::Subscribe {
            family,
            subscribe,
            count: (subscribe || named > 0).then_some(named),
        }
    };
    Some(match () {
        _ if is(name, b"MULTI") => Effect::Multi,
        _ if is(name, b"EXEC") => Effect::Exec,
        _ if is(name, b"DISCARD") => Effect::Discard,
        _ if is(name, b"WATCH") => Effect::Watch,
        _ if is(name, b"UNWATCH") => Effect::Unwatch,
        _ if is(name, b"MONITOR") => Effect::Monitor,
        _ if is(name, b"READONLY") => Effect::Set(Flag::ReadOnly, true),
        _ if is(name, b"READWRITE") => Effect::Set(Flag::ReadOnly, false),
        _ if is(name, b"SUBSCRIBE") => subscribe(Family::Channel, true),
        _ if is(name, b"UNSUBSCRIBE") => subscribe(Family::Channel, false),
        _ if is(name, b"PSUBSCRIBE") => subscribe(Family::Pattern, true),
        _ if is(name, b"PUNSUBSCRIBE") => subscribe(Family::Pattern, false),
        _ if is(name, b"SSUBSCRIBE") => subscribe(Family::Shard, true),
        _ if is(name, b"SUNSUBSCRIBE") => subscribe(Family::Shard, false),
        _ if is(name, b"SELECT") => Effect::Select(database(args)?),
        _ if is(name, b"AUTH") => Effect::Auth(credentials(&args[1..])?),
        _ if is(name, b"HELLO") => hello(args)?,
        _ if is(name, b"CLIENT") && is(sub, b"SETNAME") && args.len() == 3 => {
            Effect::SetName(Some(args[2].clone()).filter(|n| !n.is_empty()))
        }
        _ if is(name, b"CLIENT") && args.len() >= 3 => {
            let flag = match () {
                _ if is(sub, b"TRACKING") => Flag::Tracking,
                _ if is(sub, b"NO-EVICT") => Flag::NoEvict,
                _ if is(sub, b"NO-TOUCH") => Flag::NoTouch,
                _ => return None,
            };
            Effect::Set(flag, !is(&args[2], b"off"))
        }
        _ => return None,
    })
}

/// The effect of `HELLO ver [AUTH user pass] [SETNAME name]` (read by the one HELLO
/// parser, [`Hello::parse`]); `None` when it changes nothing the session keeps (no
/// version) or cannot succeed.
fn hello(args: &[Bytes]) -> Option<Effect> {
    let hello = Hello::parse(args).ok()?;
    Some(Effect::Hello {
        resp: hello.protover?,
        creds: hello.auth,
        name: hello.setname,
    })
}

/// Merges what a command writes in each database it may run in.
pub(in crate::connection) fn merge(per_db: impl Iterator<Item = Invalidation>) -> Invalidation {
    let mut keys = Vec::new();
    let mut flushed = None;
    for inv in per_db {
        match inv {
            Invalidation::None => {}
            Invalidation::Swapped => return Invalidation::Swapped,
            Invalidation::Keys(k) => keys.extend(k),
            Invalidation::Db(db) if flushed.is_none() => flushed = Some(Invalidation::Db(db)),
            Invalidation::Db(_) | Invalidation::All => return Invalidation::All,
        }
    }
    match flushed {
        Some(db) if keys.is_empty() => db,
        Some(_) => Invalidation::All,
        None if keys.is_empty() => Invalidation::None,
        None => Invalidation::Keys(keys.into()),
    }
}
