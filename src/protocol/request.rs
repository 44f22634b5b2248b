//! Client request parsing: multibulk (`*N\r\n$L\r\n...`) and inline (`PING\r\n`) commands.
//!
//! A request is kept as its raw bytes (forwarded unchanged) plus its arguments as slices of
//! those bytes. Limits are checked on the headers, before the payload has arrived.
//! The parsing itself is [`super::RequestParser`]'s; `GET key` has a faster path here.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::{Args, Limits, RequestError, RequestParser};

/// One complete client command.
#[derive(Debug, Clone)]
pub struct Request {
    /// The bytes as received, or a multibulk re-encoding of an inline command.
    pub raw: Bytes,
    /// Arguments, the command name first. Never empty.
    pub args: Args,
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

/// Takes one request off the front of `buf` with a fresh [`RequestParser`] (tests,
/// benches; a connection keeps its parser so a request arriving in pieces is read once).
///
/// `Ok(None)` means more bytes are needed. Empty requests (`*0`, blank lines) are consumed
/// and skipped, as Redis does.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, RequestError> {
    RequestParser::default().next(buf, limits)
}

/// Recognises a complete, canonical `GET key` multibulk at the start of `buf` without
/// copying: returns the frame length and the key's byte range. Anything else (or anything
/// incomplete) is `None` and goes through the [`RequestParser`].
#[inline]
pub fn peek_get(buf: &[u8], limits: &Limits) -> Option<(usize, Range<usize>)> {
    const HEAD: &[u8] = b"*2\r\n$3\r\n";
    if buf.len() < 19 || &buf[..8] != HEAD || !buf[8..11].eq_ignore_ascii_case(b"GET") {
        return None;
    }
    if &buf[11..14] != b"\r\n$" {
        return None;
    }
    // The key length as `string2ll` accepts it: no sign, no leading zero but "0" itself.
    let mut len: usize = 0;
    let mut i = 14;
    while buf[i] != b'\r' {
        let d = buf[i];
        if !d.is_ascii_digit() || i - 14 == 18 || (i > 14 && buf[14] == b'0') {
            return None;
        }
        len = len * 10 + usize::from(d - b'0');
        i += 1;
        if i == buf.len() {
            return None;
        }
    }
    if i == 14 || len > limits.max_bulk_bytes || buf.get(i + 1) != Some(&b'\n') {
        return None;
    }
    let start = i + 2;
    let end = start + len;
    (buf.get(end..end + 2)? == b"\r\n").then_some((end + 2, start..end))
}

#[cfg(test)]
mod tests;
