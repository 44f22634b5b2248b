//! Replies the sidecar writes itself: static frames and small encoders.

use bytes::{BufMut, BytesMut};

use super::Resp;

/// `+OK`
pub const OK: &[u8] = b"+OK\r\n";
/// `+RESET`
pub const RESET: &[u8] = b"+RESET\r\n";
/// RESP2 null bulk string.
pub const NULL_V2: &[u8] = b"$-1\r\n";
/// RESP3 null.
pub const NULL_V3: &[u8] = b"_\r\n";

/// The null reply for a protocol version.
pub fn null(resp: Resp) -> &'static [u8] {
    match resp {
        Resp::V2 => NULL_V2,
        Resp::V3 => NULL_V3,
    }
}

/// Appends `$len\r\npayload\r\n`.
pub fn write_bulk(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 16);
    out.put_u8(b'$');
    write_decimal(out, payload.len() as i64);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// Appends `*n\r\n`.
pub fn write_array_header(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    write_decimal(out, n as i64);
}

/// Appends `-<message>\r\n`; CR and LF inside the message become spaces.
pub fn write_error(out: &mut BytesMut, message: &str) {
    out.put_u8(b'-');
    out.extend(
        message
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

/// Appends a decimal integer followed by CRLF.
pub fn write_decimal(out: &mut BytesMut, n: i64) {
    // Sign, up to 20 digits and CRLF, written back to front and appended in one copy.
    let mut text = [0u8; 23];
    let mut i = text.len() - 2;
    text[i..].copy_from_slice(b"\r\n");
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        text[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        text[i] = b'-';
    }
    out.put_slice(&text[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_match_redis_bytes() {
        let mut out = BytesMut::new();
        write_bulk(&mut out, b"hello");
        write_array_header(&mut out, 2);
        write_decimal(&mut out, -42);
        write_error(&mut out, "ERR a\r\nb");
        assert_eq!(&out[..], b"$5\r\nhello\r\n*2\r\n-42\r\n-ERR a  b\r\n");
    }

    #[test]
    fn decimals_at_the_ends_of_the_range() {
        for (n, text) in [
            (0, "0"),
            (9, "9"),
            (10, "10"),
            (-1, "-1"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let mut out = BytesMut::new();
            write_decimal(&mut out, n);
            assert_eq!(out, format!("{text}\r\n").as_bytes(), "{n}");
        }
    }
}
