//! Client request parsing: multibulk (`*N\r\n$L\r\n...`) and inline (`PING\r\n`) commands.
//!
//! A request is kept as its raw bytes (forwarded unchanged) plus its arguments as slices of
//! those bytes. Limits are checked on the headers, before the payload has arrived.

use bytes::{Bytes, BytesMut};

use super::{parse_decimal, Limits, ProtocolError};

/// One complete client command.
#[derive(Debug, Clone)]
pub struct Request {
    /// The bytes as received, or a multibulk re-encoding of an inline command.
    pub raw: Bytes,
    /// Arguments, the command name first. Never empty.
    pub args: Vec<Bytes>,
}

impl Request {
    /// The command name as sent (any case).
    pub fn name(&self) -> &[u8] {
        &self.args[0]
    }

    /// Builds a multibulk request from arguments (inline commands, tests).
    pub fn from_args(args: &[&[u8]]) -> Request {
        let mut raw = BytesMut::new();
        let mut ranges = Vec::with_capacity(args.len());
        super::write_array_header(&mut raw, args.len());
        for a in args {
            super::write_bulk(&mut raw, a);
            let end = raw.len() - 2;
            ranges.push(end - a.len()..end);
        }
        let raw = raw.freeze();
        let args = ranges.into_iter().map(|r| raw.slice(r)).collect();
        Request { raw, args }
    }
}

/// Appends a command as a multibulk request (what the sidecar sends upstream itself).
pub fn write_command(out: &mut BytesMut, args: &[&[u8]]) {
    super::write_array_header(out, args.len());
    for a in args {
        super::write_bulk(out, a);
    }
}

/// A command encoded as a multibulk request.
pub fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    write_command(&mut out, args);
    out.freeze()
}

/// Takes one request off the front of `buf`.
///
/// `Ok(None)` means more bytes are needed. Empty requests (`*0`, blank lines) are consumed
/// and skipped, as Redis does.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Request>, ProtocolError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let parsed = if first == b'*' {
            parse_multibulk(buf, limits)?
        } else {
            parse_inline(buf, limits)?
        };
        match parsed {
            Parsed::Incomplete => return Ok(None),
            Parsed::Empty => continue,
            Parsed::Request(r) => return Ok(Some(r)),
        }
    }
}

/// Recognises a complete `GET key` multibulk at the start of `buf` without copying:
/// returns the frame length and the key's byte range. Anything else (or anything
/// incomplete) is `None` and goes through [`parse_request`].
#[inline]
pub fn peek_get(buf: &[u8], limits: &Limits) -> Option<(usize, std::ops::Range<usize>)> {
    const HEAD: &[u8] = b"*2\r\n$3\r\n";
    if buf.len() < 20 || &buf[..8] != HEAD || !buf[8..11].eq_ignore_ascii_case(b"GET") {
        return None;
    }
    if &buf[11..14] != b"\r\n$" {
        return None;
    }
    let (len, start) = read_len(buf, 13, "").ok()??;
    if len < 0 || len as u64 > limits.max_bulk_bytes as u64 {
        return None;
    }
    let end = start + len as usize;
    (buf.get(end..end + 2)? == b"\r\n").then_some((end + 2, start..end))
}

enum Parsed {
    Incomplete,
    Empty,
    Request(Request),
}

/// Reads a `\r\n`-terminated decimal after a type byte at `at`. Returns (value, next offset).
fn read_len(
    buf: &[u8],
    at: usize,
    what: &'static str,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(nl) = buf[at..].iter().take(32).position(|&b| b == b'\n') else {
        if buf.len() - at >= 32 {
            return Err(ProtocolError(what));
        }
        return Ok(None);
    };
    let end = at + nl;
    if end == at || buf[end - 1] != b'\r' {
        return Err(ProtocolError(what));
    }
    let value = parse_decimal(&buf[at + 1..end - 1]).ok_or(ProtocolError(what))?;
    Ok(Some((value, end + 1)))
}

fn parse_multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Parsed, ProtocolError> {
    const BAD_COUNT: &str = "invalid multibulk length";
    const BAD_BULK: &str = "invalid bulk length";
    let Some((count, mut pos)) = read_len(buf, 0, BAD_COUNT)? else {
        return Ok(Parsed::Incomplete);
    };
    if count <= 0 {
        let _ = buf.split_to(pos);
        return Ok(Parsed::Empty);
    }
    if count as u64 > limits.max_array_len as u64 {
        return Err(ProtocolError(BAD_COUNT));
    }
    let count = count as usize;
    // First pass: validate and find the end without storing anything.
    let header_end = pos;
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(Parsed::Incomplete);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError("expected '$' before a bulk string"));
        }
        let Some((len, start)) = read_len(buf, pos, BAD_BULK)? else {
            return Ok(Parsed::Incomplete);
        };
        if len < 0 || len as u64 > limits.max_bulk_bytes as u64 {
            return Err(ProtocolError(BAD_BULK));
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated by CRLF"));
        }
        pos = end + 2;
    }
    // Second pass over the validated bytes: slice the arguments out.
    let raw = buf.split_to(pos).freeze();
    let mut args = Vec::with_capacity(count);
    let mut at = header_end;
    for _ in 0..count {
        let (len, start) = read_len(&raw, at, BAD_BULK)?.ok_or(ProtocolError(BAD_BULK))?;
        let end = start + len as usize;
        args.push(raw.slice(start..end));
        at = end + 2;
    }
    Ok(Parsed::Request(Request { raw, args }))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Parsed, ProtocolError> {
    const TOO_BIG: &str = "too big inline request";
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_bytes {
            return Err(ProtocolError(TOO_BIG));
        }
        return Ok(Parsed::Incomplete);
    };
    if nl > limits.max_inline_bytes {
        return Err(ProtocolError(TOO_BIG));
    }
    let line = buf.split_to(nl + 1);
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words = split_inline(line)?;
    if words.is_empty() {
        return Ok(Parsed::Empty);
    }
    if words.len() > limits.max_array_len {
        return Err(ProtocolError("invalid multibulk length"));
    }
    let refs: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
    Ok(Parsed::Request(Request::from_args(&refs)))
}

/// Splits an inline line into words the way redis-cli and Redis do: whitespace separated,
/// `"..."` with backslash escapes (`\n`, `\xHH`, ...) and `'...'` with `\'`.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    const UNBALANCED: ProtocolError = ProtocolError("unbalanced quotes in request");
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(UNBALANCED);
                }
                break;
            };
            match quote {
                None if c.is_ascii_whitespace() => break,
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    i += 1;
                }
                None => {
                    word.push(c);
                    i += 1;
                }
                Some(q) if c == q => {
                    // A closing quote must be followed by a space or the end.
                    if line.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(UNBALANCED);
                    }
                    i += 1;
                    break;
                }
                Some(b'"') if c == b'\\' && i + 1 < line.len() => {
                    let (byte, used) = unescape(&line[i + 1..]);
                    word.push(byte);
                    i += 1 + used;
                }
                Some(_) if c == b'\\' && line.get(i + 1) == Some(&b'\'') => {
                    word.push(b'\'');
                    i += 2;
                }
                Some(_) => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Decodes the escape after a backslash inside double quotes: (byte, bytes consumed).
fn unescape(rest: &[u8]) -> (u8, usize) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if rest[0] == b'x' && rest.len() >= 3 {
        if let (Some(h), Some(l)) = (hex(rest[1]), hex(rest[2])) {
            return (h * 16 + l, 3);
        }
    }
    let byte = match rest[0] {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 8,
        b'a' => 7,
        other => other,
    };
    (byte, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk_bytes: 1024,
        max_array_len: 8,
        max_inline_bytes: 64,
    };

    fn parse(input: &[u8]) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        parse_request(&mut buf, &LIMITS)
            .map(|r| r.map(|r| r.args.iter().map(|a| a.to_vec()).collect()))
    }

    fn words(ws: &[&str]) -> Vec<Vec<u8>> {
        ws.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parses_multibulk_and_keeps_raw_bytes() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let r = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(&r.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(r.args, vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(input).unwrap().is_some());
    }

    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(parse(b"PING\r\n"), Ok(Some(words(&["PING"]))));
        assert_eq!(parse(b"set  k  v\n"), Ok(Some(words(&["set", "k", "v"]))));
        assert_eq!(
            parse(b"SET k \"a b\\n\\x41\"\r\n"),
            Ok(Some(words(&["SET", "k", "a b\nA"])))
        );
        assert_eq!(
            parse(b"SET k 'it\\'s'\r\n"),
            Ok(Some(words(&["SET", "k", "it's"])))
        );
        assert_eq!(parse(b"\r\n\r\nPING\r\n"), Ok(Some(words(&["PING"]))));
        assert_eq!(parse(b"PIN"), Ok(None));
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "invalid multibulk length"),
            (b"*9\r\n", "invalid multibulk length"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$2000\r\n", "invalid bulk length"),
            (
                b"*2\r\n$3\r\nGET\r\n:1\r\n",
                "expected '$' before a bulk string",
            ),
            (
                b"*1\r\n$3\r\nGETX\r\n",
                "bulk string not terminated by CRLF",
            ),
            (b"SET k \"open\r\n", "unbalanced quotes in request"),
            (&[b'A'; 100], "too big inline request"),
            (
                b"*11111111111111111111111111111111111111\r\n",
                "invalid multibulk length",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(ProtocolError(want)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn peek_get_finds_only_complete_get_frames() {
        let frame = b"*2\r\n$3\r\nget\r\n$3\r\nkey\r\n*1";
        assert_eq!(peek_get(frame, &LIMITS), Some((22, 17..20)));
        assert_eq!(peek_get(&frame[..21], &LIMITS), None);
        assert_eq!(peek_get(b"*2\r\n$3\r\nSET\r\n$3\r\nkey\r\n", &LIMITS), None);
        assert_eq!(
            peek_get(b"*2\r\n$3\r\nGET\r\n$-3\r\nkey\r\n", &LIMITS),
            None
        );
        assert_eq!(
            peek_get(b"*2\r\n$3\r\nGET\r\n$3\r\nkeyX\r\n", &LIMITS),
            None
        );
    }

    /// Random and mutated frames never panic, and every parsed request re-encodes to the
    /// bytes it consumed (multibulk) or parses again to the same arguments (inline).
    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"*$\r\n0123456789-GETSabc \"'\\x";
        let valid = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for round in 0..20_000 {
            let mut input: Vec<u8> = if round % 2 == 0 {
                (0..next() % 40)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                valid.to_vec()
            };
            for _ in 0..(next() % 3) {
                let i = (next() as usize) % input.len().max(1);
                if let Some(b) = input.get_mut(i) {
                    *b = alphabet[(next() % alphabet.len() as u64) as usize];
                }
            }
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(req)) = parse_request(&mut buf, &LIMITS) {
                assert!(!req.args.is_empty());
            }
            let _ = peek_get(&input, &LIMITS);
        }
    }

    #[test]
    fn decimal_headers_parse_exactly() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"123"), Some(123));
        assert_eq!(parse_decimal(b"-1"), Some(-1));
        assert_eq!(
            parse_decimal(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"-", b"+1", b" 1", b"1a", b"12345678901234567890"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(
            parse(b"*0\r\n*1\r\n$4\r\nPING\r\n"),
            Ok(Some(words(&["PING"])))
        );
    }
}
