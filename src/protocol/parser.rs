//! The per-connection request parser: takes complete requests off the front of the input,
//! accepting and refusing exactly what Redis 7's `processMultibulkBuffer` and
//! `processInlineBuffer` do.
//!
//! Resumable like [`super::FrameScanner`]: a multibulk arriving in pieces is validated once,
//! each call going on from where the last stopped, so a request of a million arguments costs
//! O(bytes) however it is split. Arguments are sliced out once the request is complete.
//!
//! Redis takes a bulk's `len` bytes and skips the next two whatever they are, and skips the
//! byte after a header's `\r` whatever it is. Such requests are accepted here too, but are
//! re-encoded canonically instead of forwarded as received.

use bytes::{Buf, BytesMut};

use super::{inline, string2ll, Args, Limits, ProtocolError, Request, RequestError};

/// Arguments of the requests [`RequestParser`] reads in one pass when they are canonical.
const SHORT_ARGS: usize = 32;

const BAD_COUNT: ProtocolError = ProtocolError("invalid multibulk length");
const BAD_BULK: ProtocolError = ProtocolError("invalid bulk length");
const BIG_COUNT: ProtocolError = ProtocolError("too big mbulk count string");
const BIG_BULK_COUNT: ProtocolError = ProtocolError("too big bulk count string");

/// Resumable parser for one client connection's request stream.
///
/// Its offsets are relative to the start of the input buffer, which holds the request being
/// parsed at its front: whoever consumes that request otherwise calls [`Self::reset`].
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Arguments of the current multibulk still to validate; 0 between requests.
    remaining: usize,
    /// Its argument count.
    count: usize,
    /// Offset of its first bulk header.
    first_bulk: usize,
    /// Offset of the first byte not yet validated.
    pos: usize,
    /// Where the search for the end of the current header or inline line stopped.
    scanned: usize,
    /// Whether the current multibulk is canonical so far (every `\r` followed by `\n`).
    canonical: bool,
    /// Bytes examined since creation (tests check that parsing is linear).
    examined: u64,
}

impl RequestParser {
    /// Forgets the partly validated request (its bytes were consumed some other way).
    #[inline]
    pub fn reset(&mut self) {
        self.remaining = 0;
        self.pos = 0;
        self.scanned = 0;
    }

    /// Bytes examined so far: at most a small multiple of the bytes received.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// Takes one request off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (call again after appending them). Empty
    /// requests (`*0`, `*-1`, blank lines) are consumed and skipped, as Redis does.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Request>, RequestError> {
        if self.remaining == 0 && self.scanned == 0 {
            if let Some(req) = self.canonical_short(buf, limits) {
                return Ok(Some(req));
            }
        }
        loop {
            if self.remaining == 0 {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        if !self.multibulk_header(buf, limits)? {
                            return Ok(None);
                        }
                        if self.remaining == 0 {
                            continue; // empty multibulk, skipped
                        }
                    }
                    Some(_) => match self.inline(buf, limits)? {
                        Some(Some(req)) => return Ok(Some(req)),
                        Some(None) => continue,
                        None => return Ok(None),
                    },
                }
            }
            if !self.bulks(buf, limits)? {
                return Ok(None);
            }
            return Ok(Some(self.take(buf)));
        }
    }

    /// Finds the `\r` ending the header line starting at `start`, with at least one byte
    /// after it (Redis's `strchr` then its "buffer should also contain \n" check). A NUL
    /// byte ends the search as it ends `strchr`'s.
    /// The common case in one pass: a complete, canonical request of at most
    /// [`SHORT_ARGS`] arguments within the limits (`*N\r\n`, then `$LEN\r\n` with no
    /// leading zero, the payload and `\r\n` for each). Anything else, complete or not,
    /// is left to the general parser, which reads it as Redis does.
    #[inline]
    fn canonical_short(&mut self, buf: &mut BytesMut, limits: &Limits) -> Option<Request> {
        let b = &buf[..];
        let digit = |d: u8| usize::from(d - b'0');
        let (count, mut at) = match b {
            [b'*', n @ b'1'..=b'9', b'\r', b'\n', ..] => (digit(*n), 4),
            [b'*', t @ b'1'..=b'9', u @ b'0'..=b'9', b'\r', b'\n', ..] => {
                (digit(*t) * 10 + digit(*u), 5)
            }
            _ => return None,
        };
        if count > SHORT_ARGS || count > limits.max_array_len {
            return None;
        }
        let mut spans = [(0usize, 0usize); SHORT_ARGS];
        for span in &mut spans[..count] {
            if b.get(at) != Some(&b'$') {
                return None;
            }
            let digits = at + 1;
            let mut i = digits;
            let mut len = 0usize;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                len = len * 10 + usize::from(c - b'0');
                i += 1;
                if i - digits > 10 {
                    return None;
                }
            }
            let leading_zero = b.get(digits) == Some(&b'0') && i - digits > 1;
            if i == digits || leading_zero || len > limits.max_bulk_bytes {
                return None;
            }
            let start = i + 2;
            let end = start + len;
            if b.len() < end + 2 || &b[i..start] != b"\r\n" || &b[end..end + 2] != b"\r\n" {
                return None;
            }
            *span = (start, end);
            at = end + 2;
        }
        let raw = buf.split_to(at).freeze();
        let args = spans[..count]
            .iter()
            .map(|&(start, end)| raw.slice(start..end))
            .collect();
        self.examined += at as u64;
        Some(Request { raw, args })
    }

    #[inline]
    fn header_end(
        &mut self,
        buf: &[u8],
        start: usize,
        max_line: usize,
        too_big: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        let from = self.scanned.max(start).min(buf.len());
        let found = buf[from..].iter().position(|&b| b == b'\r' || b == 0);
        self.examined += found.map_or(buf.len() - from, |i| i + 1) as u64;
        match found {
            Some(i) if buf[from + i] == b'\r' && from + i + 1 < buf.len() => {
                self.scanned = 0;
                Ok(Some(from + i))
            }
            found => {
                self.scanned = found.map_or(buf.len(), |i| from + i);
                if found.is_none_or(|i| buf[from + i] == 0) && buf.len() - start > max_line {
                    return Err(too_big);
                }
                Ok(None)
            }
        }
    }

    /// Reads `*<count>\r\n`; false while incomplete. A count of zero or less is an empty
    /// request, consumed here.
    fn multibulk_header(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<bool, ProtocolError> {
        let Some(cr) = self.header_end(buf, 0, limits.max_inline_bytes, BIG_COUNT)? else {
            return Ok(false);
        };
        let count = string2ll(&buf[1..cr])
            .filter(|&n| n <= i64::from(i32::MAX))
            .ok_or(BAD_COUNT)?;
        if count <= 0 {
            buf.advance(cr + 2);
            return Ok(true);
        }
        if count as u64 > limits.max_array_len as u64 {
            return Err(BAD_COUNT);
        }
        self.canonical = buf[cr + 1] == b'\n';
        self.count = count as usize;
        self.remaining = self.count;
        self.first_bulk = cr + 2;
        self.pos = cr + 2;
        Ok(true)
    }

    /// Validates the bulk strings of the current multibulk from where the last call
    /// stopped; true once all are there.
    fn bulks(&mut self, buf: &BytesMut, limits: &Limits) -> Result<bool, RequestError> {
        while self.remaining > 0 {
            let at = self.pos;
            let Some(cr) = self.header_end(buf, at, limits.max_inline_bytes, BIG_BULK_COUNT)?
            else {
                return Ok(false);
            };
            if buf[at] != b'$' {
                return Err(RequestError::ExpectedBulk(buf[at]));
            }
            let len = string2ll(&buf[at + 1..cr])
                .filter(|&n| n >= 0 && n as u64 <= limits.max_bulk_bytes as u64)
                .ok_or(BAD_BULK)? as usize;
            let start = cr + 2;
            let end = start + len;
            if buf.len() < end + 2 {
                return Ok(false); // the header is read again with the payload
            }
            self.examined += 2;
            self.canonical &= buf[cr + 1] == b'\n' && &buf[end..end + 2] == b"\r\n";
            self.pos = end + 2;
            self.remaining -= 1;
        }
        Ok(true)
    }

    /// Splits the validated multibulk off `buf` and slices its arguments out.
    fn take(&mut self, buf: &mut BytesMut) -> Request {
        let raw = buf.split_to(self.pos).freeze();
        let mut args = Args::with_capacity(self.count);
        let mut at = self.first_bulk;
        for _ in 0..self.count {
            // The header was validated: `$`, canonical digits, `\r`, one more byte.
            let mut len = 0;
            let mut i = at + 1;
            while raw[i] != b'\r' {
                len = len * 10 + usize::from(raw[i] - b'0');
                i += 1;
            }
            let start = i + 2;
            args.push(raw.slice(start..start + len));
            at = start + len + 2;
        }
        self.examined += (raw.len() - self.first_bulk) as u64;
        self.reset();
        if self.canonical {
            return Request { raw, args };
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        Request::from_args(&refs)
    }

    /// Takes an inline command off `buf`: `None` while incomplete, `Some(None)` for a blank
    /// line (skipped).
    fn inline(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Option<Request>>, ProtocolError> {
        let before = self.scanned;
        let found = inline::find_line(buf, &mut self.scanned, limits.max_inline_bytes);
        self.examined += buf.len().saturating_sub(before) as u64;
        let Some((len, consumed)) = found? else {
            return Ok(None);
        };
        let words = inline::split(&buf[..len])?;
        buf.advance(consumed);
        if words.is_empty() {
            return Ok(Some(None));
        }
        if words.len() > limits.max_array_len {
            return Err(BAD_COUNT);
        }
        let refs: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        Ok(Some(Some(Request::from_args(&refs))))
    }
}
