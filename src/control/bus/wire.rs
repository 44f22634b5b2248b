//! The bus's wire format (see the module above): encoding a message and decoding one,
//! whoever published it. Decoding never trusts a length or a count it was given.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::MAX_HOT_KEYS;

/// The format version.
const VERSION: &[u8] = b"v1";

/// What a message asks of every sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Keys written in database `db` (`None`: every database).
    Keys(Option<u32>, Vec<Bytes>),
    /// Glob patterns, evicted in every database.
    Patterns(Vec<Bytes>),
    /// Everything.
    Flush,
    /// A starting sidecar asks for the hottest keys (`H?`).
    HotAsk {
        /// The asker's sender id: answers name it.
        asker: Bytes,
        /// How many keys it wants.
        wanted: usize,
    },
    /// An answer to a [`Body::HotAsk`] (`H`): the hottest keys in database `db`.
    HotKeys {
        /// The sender id of the sidecar that asked.
        asker: Bytes,
        /// The database the keys were read in.
        db: u32,
        /// Hottest first.
        keys: Vec<Bytes>,
    },
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender id and its sequence number (absent from a foreign publisher).
    pub origin: Option<(Bytes, u64)>,
    /// Publish time, Unix milliseconds.
    pub sent_ms: Option<u64>,
    /// What it asks.
    pub body: Body,
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// ` <len>:<bytes>` (a key, a pattern, a sealed blob).
pub(super) fn put_item(out: &mut BytesMut, item: &[u8]) {
    out.put_u8(b' ');
    out.extend_from_slice(item.len().to_string().as_bytes());
    out.put_u8(b':');
    out.extend_from_slice(item);
}

/// Encodes a message from `sender` with sequence number `seq`.
pub fn encode(sender: &[u8], seq: u64, sent_ms: u64, body: &Body) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(VERSION);
    out.put_u8(b' ');
    out.extend_from_slice(sender);
    out.extend_from_slice(format!(" {seq} {sent_ms} ").as_bytes());
    match body {
        Body::Keys(db, keys) => {
            out.put_u8(b'K');
            match db {
                Some(db) => out.extend_from_slice(format!(" {db}").as_bytes()),
                None => out.extend_from_slice(b" *"),
            }
            keys.iter().for_each(|k| put_item(&mut out, k));
        }
        Body::Patterns(patterns) => {
            out.put_u8(b'P');
            patterns.iter().for_each(|p| put_item(&mut out, p));
        }
        Body::Flush => out.put_u8(b'F'),
        Body::HotAsk { asker, wanted } => {
            out.extend_from_slice(b"H? ");
            out.extend_from_slice(asker);
            out.extend_from_slice(format!(" {wanted}").as_bytes());
        }
        Body::HotKeys { asker, db, keys } => {
            out.extend_from_slice(b"H ");
            out.extend_from_slice(asker);
            out.extend_from_slice(format!(" {db}").as_bytes());
            keys.iter().for_each(|k| put_item(&mut out, k));
        }
    }
    out.freeze()
}

/// Splits off the next space-separated field (a view of the payload: no copy).
fn field(rest: &mut Bytes) -> Option<Bytes> {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let f = rest.split_to(end);
    if !rest.is_empty() {
        rest.advance(1);
    }
    (!f.is_empty()).then_some(f)
}

fn number(f: &[u8]) -> Option<u64> {
    if f.is_empty() || f.len() > 19 || !f.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(f).ok()?.parse().ok()
}

/// `-` or a number.
fn optional_number(f: &[u8]) -> Option<Option<u64>> {
    if f == b"-" {
        return Some(None);
    }
    number(f).map(Some)
}

/// ` <len>:<bytes>` items until the end (the first one has no leading space), each a view
/// of the payload: decoding allocates one vector, never one buffer per item.
pub(super) fn items(mut rest: Bytes) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let colon = rest.iter().take(21).position(|&b| b == b':')?;
        let len = usize::try_from(number(&rest[..colon])?).ok()?;
        let end = (colon + 1).checked_add(len)?;
        if end > rest.len() {
            return None;
        }
        out.push(rest.slice(colon + 1..end));
        rest.advance(end);
        match rest.first() {
            None => break,
            Some(b' ') => rest.advance(1),
            Some(_) => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Decodes a message; `None` for anything malformed or of another version. Keys and
/// patterns are views of `payload`.
pub fn decode(payload: &Bytes) -> Option<Message> {
    let mut rest = payload.clone();
    if field(&mut rest)?.as_ref() != VERSION {
        return None;
    }
    let sender = field(&mut rest)?;
    let seq = optional_number(&field(&mut rest)?)?;
    let sent_ms = optional_number(&field(&mut rest)?)?;
    let origin = match (&sender[..], seq) {
        (b"-", _) | (_, None) => None,
        (_, Some(seq)) => Some((sender, seq)),
    };
    let kind = field(&mut rest)?;
    let body = match &kind[..] {
        b"K" => {
            let db = field(&mut rest)?;
            let db = match &db[..] {
                b"*" => None,
                d => Some(u32::try_from(number(d)?).ok()?),
            };
            Body::Keys(db, items(rest)?)
        }
        b"P" => Body::Patterns(items(rest)?),
        b"F" if rest.is_empty() => Body::Flush,
        b"H?" => {
            let asker = field(&mut rest)?;
            let wanted = number(&field(&mut rest)?)?;
            if !rest.is_empty() || wanted == 0 {
                return None;
            }
            let wanted = usize::try_from(wanted).ok()?.min(MAX_HOT_KEYS);
            Body::HotAsk { asker, wanted }
        }
        b"H" => {
            let asker = field(&mut rest)?;
            let db = u32::try_from(number(&field(&mut rest)?)?).ok()?;
            let keys = items(rest)?;
            if keys.len() > MAX_HOT_KEYS {
                return None;
            }
            Body::HotKeys { asker, db, keys }
        }
        _ => return None,
    };
    Some(Message {
        origin,
        sent_ms,
        body,
    })
}
