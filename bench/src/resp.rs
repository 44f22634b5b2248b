//! Just enough RESP2 for a load generator: requests written into a reused buffer, and the
//! length and kind of the next complete reply, without copying or allocating.

use anyhow::{bail, Result};

/// Digits of every generated key's number: `key:000000001234`, as redis-benchmark names the
/// keys of `-r`, so both tools read and write the same keys.
pub const KEY_DIGITS: usize = 12;

/// What a reply was, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `$-1` or `*-1`: the key does not exist.
    Nil,
    /// `-...`: the server refused the request.
    Error,
    /// Anything else.
    Value,
}

/// Length and kind of the complete reply at the start of `buf`; `None` while it is
/// incomplete.
pub fn next_reply(buf: &[u8]) -> Result<Option<(usize, Reply)>> {
    let Some((line_end, after)) = line(buf) else {
        return Ok(None);
    };
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        b'+' | b':' => Ok(Some((after, Reply::Value))),
        b'-' => Ok(Some((after, Reply::Error))),
        b'$' => {
            let len = number(&buf[1..line_end])?;
            if len < 0 {
                return Ok(Some((after, Reply::Nil)));
            }
            let end = after + len as usize + 2;
            Ok((buf.len() >= end).then_some((end, Reply::Value)))
        }
        b'*' => {
            let len = number(&buf[1..line_end])?;
            if len < 0 {
                return Ok(Some((after, Reply::Nil)));
            }
            let mut at = after;
            for _ in 0..len {
                match next_reply(&buf[at..])? {
                    Some((n, _)) => at += n,
                    None => return Ok(None),
                }
            }
            Ok(Some((at, Reply::Value)))
        }
        other => bail!("unexpected reply type byte {:?}", other as char),
    }
}

/// The error text of an error reply `-ERR ...\r\n`, for messages.
pub fn error_text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply.strip_suffix(b"\r\n").unwrap_or(reply)).into_owned()
}

/// End of the first line (index of its `\r`) and the index just past its `\n`.
fn line(buf: &[u8]) -> Option<(usize, usize)> {
    let cr = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((cr, cr + 2))
}

/// A signed decimal length.
fn number(digits: &[u8]) -> Result<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        bail!("bad length in reply: {:?}", String::from_utf8_lossy(digits));
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            bail!("bad length in reply: {:?}", String::from_utf8_lossy(digits));
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -n } else { n })
}

/// Appends `n` in decimal.
pub fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a key's name: `prefix` and `n` zero-padded to [`KEY_DIGITS`] digits.
pub fn push_key_name(out: &mut Vec<u8>, prefix: &[u8], mut n: u64) {
    out.extend_from_slice(prefix);
    let start = out.len();
    out.resize(start + KEY_DIGITS, b'0');
    for at in (start..start + KEY_DIGITS).rev() {
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends one bulk-string argument holding the key `prefix` + `n`.
pub fn push_key_arg(out: &mut Vec<u8>, prefix: &[u8], n: u64) {
    out.push(b'$');
    push_uint(out, (prefix.len() + KEY_DIGITS) as u64);
    out.extend_from_slice(b"\r\n");
    push_key_name(out, prefix, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk-string argument.
pub fn push_arg(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_uint(out, arg.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends the header of a request of `args` arguments.
pub fn push_header(out: &mut Vec<u8>, args: usize) {
    out.push(b'*');
    push_uint(out, args as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `GET key`.
pub fn push_get(out: &mut Vec<u8>, prefix: &[u8], n: u64) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
    push_key_arg(out, prefix, n);
}

/// Appends `SET key value`.
pub fn push_set(out: &mut Vec<u8>, prefix: &[u8], n: u64, value: &[u8]) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    push_key_arg(out, prefix, n);
    push_arg(out, value);
}

/// `PING` as a request.
pub const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes in, the complete reply's length and kind out.
    type Case = (&'static [u8], Option<(usize, Reply)>);

    #[test]
    fn replies_are_measured_and_classified_only_when_complete() {
        let cases: &[Case] = &[
            (b"+OK\r\n", Some((5, Reply::Value))),
            (b"-ERR no\r\n+OK\r\n", Some((9, Reply::Error))),
            (b":12\r\n", Some((5, Reply::Value))),
            (b"$-1\r\n", Some((5, Reply::Nil))),
            (b"$3\r\nabc\r\n", Some((9, Reply::Value))),
            (b"$3\r\nab", None),
            (b"*2\r\n$1\r\na\r\n$-1\r\n", Some((16, Reply::Value))),
            (b"*2\r\n$1\r\na\r\n", None),
            (b"*-1\r\n", Some((5, Reply::Nil))),
            (b"+O", None),
        ];
        for (bytes, want) in cases {
            let got = next_reply(bytes).unwrap();
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(next_reply(b"!x\r\n").is_err());

        // Keys are named as redis-benchmark names those of `-r`.
        let mut out = Vec::new();
        push_get(&mut out, b"key:", 1234);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000001234\r\n");
    }
}
