//! Inline commands (`SET k "a b"\r\n`), split exactly as Redis's `processInlineBuffer` and
//! `sdssplitargs` do.

use super::ProtocolError;

/// Redis's `isspace`: the blanks skipped between arguments (includes `\v` and `\f`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The bytes that end an unquoted argument (`\v` and `\f` do not).
fn ends_word(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Where the inline line at the start of `buf` ends: `Some((line_len, consumed))` with the
/// line stripped of its `\n` or `\r\n`, or `None` while incomplete. `scanned` is where an
/// earlier call stopped searching (kept by the caller, so a line arriving byte by byte is
/// scanned once).
///
/// Like Redis (which searches with `strchr`), a NUL byte hides every newline after it: the
/// line stays incomplete until it is too big.
pub(super) fn find_line(
    buf: &[u8],
    scanned: &mut usize,
    max_line: usize,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    const TOO_BIG: ProtocolError = ProtocolError("too big inline request");
    let from = (*scanned).min(buf.len());
    match buf[from..].iter().position(|&b| b == b'\n' || b == 0) {
        Some(i) if buf[from + i] == b'\n' => {
            let nl = from + i;
            *scanned = 0;
            if nl > max_line {
                return Err(TOO_BIG);
            }
            let line = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            Ok(Some((line, nl + 1)))
        }
        found => {
            *scanned = found.map_or(buf.len(), |i| from + i);
            if buf.len() > max_line {
                return Err(TOO_BIG);
            }
            Ok(None)
        }
    }
}

/// Splits an inline line into arguments like `sdssplitargs`: blanks between arguments;
/// `"..."` with `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>` escapes; `'...'` with
/// `\'`; a closing quote must be followed by a blank or the end; quotes may start inside an
/// argument (`a"b c"` is `ab c`).
pub(super) fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    const UNBALANCED: ProtocolError = ProtocolError("unbalanced quotes in request");
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(words);
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
            let next = line.get(i + 1).copied();
            match quote {
                None if ends_word(c) => {
                    i += 1;
                    break;
                }
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None => word.push(c),
                Some(b'"') if c == b'\\' && next == Some(b'x') => {
                    match (hex(line.get(i + 2)), hex(line.get(i + 3))) {
                        (Some(h), Some(l)) => {
                            word.push(h * 16 + l);
                            i += 3;
                        }
                        _ => {
                            word.push(b'x');
                            i += 1;
                        }
                    }
                }
                Some(b'"') if c == b'\\' && next.is_some() => {
                    word.push(match next.unwrap_or_default() {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 1;
                }
                Some(b'\'') if c == b'\\' && next == Some(b'\'') => {
                    word.push(b'\'');
                    i += 1;
                }
                Some(q) if c == q => {
                    if next.is_some_and(|n| !is_space(n)) {
                        return Err(UNBALANCED);
                    }
                    i += 1;
                    break;
                }
                Some(_) => word.push(c),
            }
            i += 1;
        }
        words.push(word);
    }
}

fn hex(b: Option<&u8>) -> Option<u8> {
    (char::from(*b?)).to_digit(16).map(|d| d as u8)
}
