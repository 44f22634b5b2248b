//! Finds where one upstream reply frame ends, for RESP2 and RESP3 alike, without building it.
//!
//! The scanner is resumable: when a large reply arrives in pieces, each call continues where
//! the last one stopped, so framing costs O(bytes) however the reply is split.

use super::ProtocolError;

/// Resumable frame-boundary scanner for one connection's reply stream.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Offset of the first byte not yet scanned, relative to the start of the current frame.
    pos: usize,
    /// Elements still expected by each open aggregate, innermost last.
    open: Vec<u64>,
    /// Bytes the current frame is known to need, from its start (0 when not known).
    needed: usize,
}

impl FrameScanner {
    /// Returns the length of the complete frame at the start of `buf`, or `None` when more
    /// bytes are needed. After `Some`, the caller removes that many bytes from its buffer.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let Some(line_end) = find_crlf(buf, self.pos + 1) else {
                return Ok(None);
            };
            let header = &buf[self.pos + 1..line_end];
            let after_line = line_end + 2;
            match kind {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => self.pos = after_line,
                b'$' | b'!' | b'=' => {
                    let len = parse_int(header)?;
                    if len < 0 {
                        self.pos = after_line;
                    } else {
                        let end = usize::try_from(len)
                            .ok()
                            .and_then(|len| after_line.checked_add(len)?.checked_add(2))
                            .ok_or(ProtocolError("invalid length in upstream reply"))?;
                        if buf.len() < end {
                            self.needed = end;
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(header)?;
                    self.pos = after_line;
                    if n > 0 {
                        let n = n as u64;
                        let elements = match kind {
                            b'%' => n.saturating_mul(2),
                            // An attribute map is followed by the frame it annotates.
                            b'|' => n.saturating_mul(2).saturating_add(1),
                            _ => n,
                        };
                        self.open.push(elements);
                        continue;
                    }
                }
                _ => return Err(ProtocolError("unexpected reply type from upstream")),
            }
            if self.element_done() {
                let len = self.pos;
                self.pos = 0;
                self.needed = 0;
                return Ok(Some(len));
            }
        }
    }

    /// How many bytes, from the start of the current frame, the buffer must hold before
    /// the frame can be complete: at least the end of the bulk string being waited for
    /// (0 when nothing is known). Lets a reader reserve a large reply's room at once.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Counts one finished element against the open aggregates; true when the frame is whole.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let i = rest.iter().position(|&b| b == b'\r')?;
    (rest.get(i + 1)? == &b'\n').then_some(from + i)
}

fn parse_int(digits: &[u8]) -> Result<i64, ProtocolError> {
    super::parse_decimal(digits).ok_or(ProtocolError("invalid length in upstream reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":12\r\n",
        b"$-1\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n",
        b"%2\r\n+a\r\n,1.5\r\n+b\r\n~1\r\n#t\r\n",
        b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n",
        b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"(123456789012345678901234567890\r\n",
    ];

    #[test]
    fn finds_each_frame_whole_and_in_pieces() {
        for frame in FRAMES {
            let mut s = FrameScanner::default();
            assert_eq!(s.next_frame(frame), Ok(Some(frame.len())));
            let mut s = FrameScanner::default();
            for cut in 0..frame.len() {
                assert_eq!(s.next_frame(&frame[..cut]), Ok(None), "{frame:?} cut {cut}");
            }
            assert_eq!(s.next_frame(frame), Ok(Some(frame.len())));
        }
    }

    #[test]
    fn stops_at_the_first_of_two_frames() {
        let mut s = FrameScanner::default();
        assert_eq!(s.next_frame(b"*1\r\n:1\r\n+OK\r\n"), Ok(Some(8)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = b"+-:$*%~>|_#,(!=\r\n0123456789-?ab";
        for _ in 0..20_000 {
            let len = {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % 48
            };
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut scanner = FrameScanner::default();
            if let Ok(Some(n)) = scanner.next_frame(&input) {
                assert!(n <= input.len());
            }
        }
    }

    #[test]
    fn knows_how_much_a_large_bulk_needs() {
        let mut s = FrameScanner::default();
        assert_eq!(s.next_frame(b"*2\r\n$1\r\na\r\n$100\r\nab").unwrap(), None);
        assert_eq!(s.needed(), 4 + 7 + 6 + 100 + 2);
        let mut s = FrameScanner::default();
        assert_eq!(s.next_frame(b"+OK\r\n").unwrap(), Some(5));
        assert_eq!(s.needed(), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(FrameScanner::default().next_frame(b"?x\r\n").is_err());
        assert!(FrameScanner::default().next_frame(b"$x\r\n").is_err());
        let huge = b"$9223372036854775807\r\nab\r\n";
        assert_eq!(FrameScanner::default().next_frame(huge), Ok(None));
        let wide = b"%9223372036854775807\r\n+a\r\n";
        assert_eq!(FrameScanner::default().next_frame(wide), Ok(None));
    }
}
