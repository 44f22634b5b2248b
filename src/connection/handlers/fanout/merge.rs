//! Merging every primary's reply to a fanned-out command into the one reply a single server
//! holding every key would give.

use bytes::{Bytes, BytesMut};

use super::{line, Fanout};
use crate::protocol::{write_decimal, OK};

/// `+OK` if every primary said so, else the first other reply.
pub(super) fn all_ok(frames: &[Bytes]) -> Bytes {
    match frames.iter().find(|f| &f[..] != OK) {
        Some(other) => other.clone(),
        None => Bytes::from_static(OK),
    }
}

/// The first error among `frames`.
fn first_error(frames: &[Bytes]) -> Option<Bytes> {
    frames.iter().find(|f| f.starts_with(b"-")).cloned()
}

/// One reply out of every primary's to a `KEYS`, `DBSIZE` or `SCRIPT` command (the first
/// error if any primary answered one).
pub(super) fn merge(fanout: Fanout, frames: Vec<Bytes>) -> Bytes {
    if let Some(e) = first_error(&frames) {
        return e;
    }
    let merged = match fanout {
        Fanout::Keys => concat(&frames),
        Fanout::Dbsize => sum(&frames),
        Fanout::ScriptExists => and(&frames),
        Fanout::ScriptFlush => Some(all_ok(&frames)),
        _ => None,
    };
    merged.unwrap_or_else(|| frames[0].clone())
}

/// The elements of every array in `frames`, as one array.
fn concat(frames: &[Bytes]) -> Option<Bytes> {
    let mut total = 0;
    let mut bodies = Vec::with_capacity(frames.len());
    for frame in frames {
        let (n, body) = line(frame.strip_prefix(b"*")?)?;
        total += n;
        bodies.push(body);
    }
    let mut out = BytesMut::with_capacity(bodies.iter().map(|b| b.len()).sum::<usize>() + 16);
    out.extend_from_slice(b"*");
    write_decimal(&mut out, total);
    bodies.iter().for_each(|b| out.extend_from_slice(b));
    Some(out.freeze())
}

/// The sum of the integers in `frames`.
fn sum(frames: &[Bytes]) -> Option<Bytes> {
    let mut total = 0i64;
    for frame in frames {
        total = total.checked_add(line(frame.strip_prefix(b":")?)?.0)?;
    }
    let mut out = BytesMut::with_capacity(24);
    out.extend_from_slice(b":");
    write_decimal(&mut out, total);
    Some(out.freeze())
}

/// Per position, `:1` where every array of `:0`/`:1` in `frames` has `:1`.
fn and(frames: &[Bytes]) -> Option<Bytes> {
    let mut all: Option<Vec<bool>> = None;
    for frame in frames {
        let (n, mut body) = line(frame.strip_prefix(b"*")?)?;
        let mut these = Vec::with_capacity(usize::try_from(n).ok()?);
        for _ in 0..n {
            let (v, rest) = line(body.strip_prefix(b":")?)?;
            these.push(v != 0);
            body = rest;
        }
        all = Some(match all {
            None => these,
            Some(before) if before.len() == these.len() => {
                before.iter().zip(&these).map(|(a, b)| *a && *b).collect()
            }
            Some(_) => return None,
        });
    }
    let all = all?;
    let mut out = BytesMut::with_capacity(all.len() * 4 + 16);
    out.extend_from_slice(b"*");
    write_decimal(&mut out, all.len() as i64);
    for v in all {
        out.extend_from_slice(if v { b":1\r\n" } else { b":0\r\n" });
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_merged_as_one_server_would_answer() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let keys = merge(
            Fanout::Keys,
            vec![
                b(b"*1\r\n$1\r\na\r\n"),
                b(b"*0\r\n"),
                b(b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n"),
            ],
        );
        assert_eq!(&keys[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
        assert_eq!(
            &merge(Fanout::Dbsize, vec![b(b":2\r\n"), b(b":40\r\n")])[..],
            b":42\r\n"
        );
        let exists = merge(
            Fanout::ScriptExists,
            vec![b(b"*2\r\n:1\r\n:1\r\n"), b(b"*2\r\n:0\r\n:1\r\n")],
        );
        assert_eq!(&exists[..], b"*2\r\n:0\r\n:1\r\n");
        let err = merge(Fanout::Dbsize, vec![b(b":2\r\n"), b(b"-NOPERM no\r\n")]);
        assert_eq!(&err[..], b"-NOPERM no\r\n");
        assert_eq!(&all_ok(&[b(OK), b(b"-ERR x\r\n")])[..], b"-ERR x\r\n");
        assert_eq!(&all_ok(&[b(OK), b(OK)])[..], OK);
    }
}
