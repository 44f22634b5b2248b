//! Decoding the few upstream replies the sidecar interprets (GET, MGET, PTTL, INFO, COMMAND,
//! SCAN pages).
//! Everything else is forwarded as raw bytes.

use bytes::Bytes;

use super::{parse_decimal, FrameScanner};

/// True for `$-1`, `*-1` and RESP3 `_`.
pub fn is_null(frame: &[u8]) -> bool {
    frame == b"$-1\r\n" || frame == b"_\r\n" || frame == b"*-1\r\n"
}

/// True for a bulk string reply (what L1 stores).
pub fn is_bulk(frame: &[u8]) -> bool {
    frame.first() == Some(&b'$') && !is_null(frame)
}

/// True for simple and blob errors.
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-') | Some(b'!'))
}

/// The value of an integer reply (`:n`).
pub fn integer(frame: &[u8]) -> Option<i64> {
    let digits = frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_decimal(digits)
}

/// The elements of an array reply as raw frames (slices of `frame`, no copy).
pub fn array_elements(frame: &Bytes) -> Option<Vec<Bytes>> {
    elements(frame, b'*')
}

/// The elements of a RESP3 push frame (`>`) as raw frames (slices of `frame`, no copy).
pub fn push_elements(frame: &Bytes) -> Option<Vec<Bytes>> {
    elements(frame, b'>')
}

/// The role a `HELLO` reply names (its `role` field: `master` or `replica`), from a RESP3
/// map or a RESP2 array of fields and values. `HELLO` is a command every ACL user may run,
/// where `ROLE` and `INFO` need `@admin` or `@dangerous`.
pub fn hello_role(frame: &Bytes) -> Option<String> {
    let fields = match frame.first()? {
        b'%' => map_fields(frame)?,
        b'*' => array_elements(frame)?,
        _ => return None,
    };
    fields.chunks(2).find_map(|kv| match kv {
        [k, v] if text(k).is_some_and(|(k, _)| k == b"role") => {
            text(v).map(|(v, _)| String::from_utf8_lossy(v).into_owned())
        }
        _ => None,
    })
}

/// The keys and values of a RESP3 map (`%n`), in order.
fn map_fields(frame: &Bytes) -> Option<Vec<Bytes>> {
    let rest = frame.strip_prefix(b"%")?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let pairs = usize::try_from(parse_decimal(rest[..nl].strip_suffix(b"\r")?)?).ok()?;
    frames_after(frame, 1 + nl + 1, pairs.checked_mul(2)?)
}

fn elements(frame: &Bytes, kind: u8) -> Option<Vec<Bytes>> {
    let rest = frame.strip_prefix(&[kind])?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let count = usize::try_from(parse_decimal(rest[..nl].strip_suffix(b"\r")?)?).ok()?;
    frames_after(frame, 1 + nl + 1, count)
}

/// `count` frames of `frame` from `pos`, which must end it.
fn frames_after(frame: &Bytes, pos: usize, count: usize) -> Option<Vec<Bytes>> {
    let mut pos = pos;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = FrameScanner::default().next_frame(&frame[pos..]).ok()??;
        out.push(frame.slice(pos..pos + len));
        pos += len;
    }
    (pos == frame.len()).then_some(out)
}

/// The text of a bulk (`$`) or verbatim (`=`) string reply, and whether it was verbatim.
pub fn text(frame: &[u8]) -> Option<(&[u8], bool)> {
    let verbatim = match frame.first()? {
        b'$' => false,
        b'=' => true,
        _ => return None,
    };
    let nl = frame.iter().position(|&b| b == b'\n')?;
    let body = frame.get(nl + 1..frame.len().checked_sub(2)?)?;
    if verbatim {
        Some((body.get(4..)?, true)) // skip the "txt:" format prefix
    } else {
        Some((body, false))
    }
}

/// The next cursor and the keys of a `SCAN` reply; `None` for an error or anything else.
pub fn scan_page(reply: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    if is_error(reply) {
        return None;
    }
    let [cursor, keys] = <[Bytes; 2]>::try_from(array_elements(reply)?).ok()?;
    let (cursor, _) = text(&cursor)?;
    let keys = array_elements(&keys)?
        .iter()
        .map(|k| text(k).map(|(key, _)| Bytes::copy_from_slice(key)))
        .collect::<Option<Vec<_>>>()?;
    Some((Bytes::copy_from_slice(cursor), keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_names_the_role_in_either_protocol() {
        let resp3 = Bytes::from_static(
            b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
              $4\r\nrole\r\n$7\r\nreplica\r\n",
        );
        assert_eq!(hello_role(&resp3).as_deref(), Some("replica"));
        let resp2 =
            Bytes::from_static(b"*4\r\n$5\r\nproto\r\n:2\r\n$4\r\nrole\r\n$6\r\nmaster\r\n");
        assert_eq!(hello_role(&resp2).as_deref(), Some("master"));
        for bad in [
            &b"-NOAUTH x\r\n"[..],
            b"%1\r\n$4\r\nrole\r\n",
            b"*1\r\n$4\r\nrole\r\n",
            b"%0\r\n",
        ] {
            assert_eq!(hello_role(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn integers_read_the_whole_i64_range() {
        assert_eq!(integer(b":-9223372036854775808\r\n"), Some(i64::MIN));
        assert_eq!(integer(b":9223372036854775807\r\n"), Some(i64::MAX));
        assert_eq!(integer(b":9223372036854775808\r\n"), None);
        assert_eq!(integer(b":-9223372036854775809\r\n"), None);
        assert_eq!(integer(b":-12\r\n"), Some(-12));
        assert_eq!(integer(b":-\r\n"), None);
    }

    #[test]
    fn reads_the_replies_it_needs() {
        assert!(is_null(b"$-1\r\n") && is_null(b"_\r\n"));
        assert!(is_bulk(b"$1\r\na\r\n") && !is_bulk(b"$-1\r\n"));
        assert!(is_error(b"-WRONGTYPE x\r\n"));
        assert_eq!(integer(b":-2\r\n"), Some(-2));
        assert_eq!(integer(b"+OK\r\n"), None);
        let mget = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n");
        let els = array_elements(&mget).unwrap();
        assert_eq!(
            els,
            vec![
                Bytes::from_static(b"$1\r\na\r\n"),
                Bytes::from_static(b"$-1\r\n"),
                Bytes::from_static(b"_\r\n")
            ]
        );
        assert_eq!(text(b"$5\r\nhello\r\n"), Some((&b"hello"[..], false)));
        assert_eq!(text(b"=9\r\ntxt:hello\r\n"), Some((&b"hello"[..], true)));
    }

    #[test]
    fn scan_pages_are_read_in_both_protocols() {
        let reply = Bytes::from_static(b"*2\r\n$3\r\n176\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n");
        let (cursor, keys) = scan_page(&reply).unwrap();
        assert_eq!(&cursor[..], b"176");
        assert_eq!(keys, [&b"a"[..], b""]);
        let last = Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(scan_page(&last), Some((Bytes::from_static(b"0"), vec![])));
        assert_eq!(scan_page(&Bytes::from_static(b"-NOPERM no\r\n")), None);
        assert_eq!(scan_page(&Bytes::from_static(b":1\r\n")), None);
    }
}
