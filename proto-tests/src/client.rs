//! `Conn`: a raw RESP client over a blocking `TcpStream` that returns reply bytes untouched.
//!
//! Frames are delimited with redis-protocol's decoders (RESP2 or RESP3, chosen per
//! connection); the bytes returned are exactly what the server wrote, so tests can compare
//! them byte for byte.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use redis_protocol::{resp2, resp3};

use crate::show;

/// Bound on every read and write: a hang fails the test instead of blocking it forever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol version a connection's replies are decoded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Encodes a request as a RESP multibulk (what every client library sends).
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Like [`encode_command`] for text arguments.
pub fn encode_command_str(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode_command(&args)
}

/// Length of the first complete reply frame in `buf`, `Ok(None)` if more bytes are needed.
///
/// The connection's protocol picks the decoder; if it rejects the bytes the other one is
/// tried, so that a reply in the wrong protocol (say `$-1` to a RESP3 client) still comes
/// back as bytes and fails the test's comparison with a readable message.
pub fn frame_len(buf: &[u8], protocol: Protocol) -> Result<Option<usize>, String> {
    let r2 = |b: &[u8]| resp2::decode::decode_range(b).map(|o| o.map(|(_, n)| n));
    let r3 = |b: &[u8]| resp3::decode::complete::decode_range(b).map(|o| o.map(|(_, n)| n));
    let (first, second) = match protocol {
        Protocol::Resp2 => (r2(buf), r3(buf)),
        Protocol::Resp3 => (r3(buf), r2(buf)),
    };
    match (first, second) {
        (Ok(n), _) => Ok(n),
        (Err(_), Ok(Some(n))) => Ok(Some(n)),
        (Err(e), _) => Err(format!("{e:?}")),
    }
}

/// A client connection that reads and writes raw RESP bytes.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    protocol: Protocol,
    peer: SocketAddr,
}

impl Conn {
    /// Connects to `addr`, panicking if that fails.
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects to `addr` with [`IO_TIMEOUT`] on reads and writes.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            protocol: Protocol::Resp2,
            peer: addr,
        })
    }

    /// The address this connection was made to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// This connection's own address (what the sidecar names the client by).
    pub fn local(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// The protocol replies are currently decoded with.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sets the protocol replies are decoded with (see [`Conn::hello3`]).
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    /// Changes the read timeout (default [`IO_TIMEOUT`]).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// Writes raw bytes (one or many requests, or a fragment of one).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.peer));
    }

    /// Writes raw bytes, returning the I/O error instead of panicking.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads exactly one complete reply frame and returns its bytes.
    ///
    /// Panics if the connection closes first, the bytes are not RESP, or nothing complete
    /// arrives within [`IO_TIMEOUT`].
    pub fn read_reply(&mut self) -> Vec<u8> {
        match self.try_read_reply() {
            Ok(reply) => reply,
            Err(e) => panic!("reading a reply from {}: {e}", self.peer),
        }
    }

    /// Like [`Conn::read_reply`], returning an error (closed, timeout, garbage) instead.
    pub fn try_read_reply(&mut self) -> io::Result<Vec<u8>> {
        let started = Instant::now();
        loop {
            match frame_len(&self.buf, self.protocol) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("not a RESP reply ({e}): {}", show(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed before a complete reply; received: {}",
                            show(&self.buf)
                        ),
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "no complete reply after {:?}; received: {}",
                            started.elapsed(),
                            show(&self.buf)
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads `n` replies in order.
    pub fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Sends one multibulk request and returns the raw reply bytes.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode_command(args));
        self.read_reply()
    }

    /// Like [`Conn::cmd`] for text arguments.
    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode_command_str(args));
        self.read_reply()
    }

    /// Sends `HELLO 3`, switches the decoder to RESP3 and returns the reply bytes.
    pub fn hello3(&mut self) -> Vec<u8> {
        self.send(&encode_command_str(&["HELLO", "3"]));
        self.protocol = Protocol::Resp3;
        self.read_reply()
    }

    /// Sends `HELLO 2`, switches the decoder back to RESP2 and returns the reply bytes.
    pub fn hello2(&mut self) -> Vec<u8> {
        self.send(&encode_command_str(&["HELLO", "2"]));
        self.protocol = Protocol::Resp2;
        self.read_reply()
    }

    /// Reads until the peer closes the connection and returns every byte received
    /// (including anything already buffered). A reset counts as closed.
    ///
    /// Panics if the connection is still open after [`IO_TIMEOUT`].
    pub fn read_to_close(&mut self) -> Vec<u8> {
        self.try_read_to_close().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Conn::read_to_close`], returning what went wrong instead of panicking.
    pub fn try_read_to_close(&mut self) -> Result<Vec<u8>, String> {
        let mut out = std::mem::take(&mut self.buf);
        loop {
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == ErrorKind::ConnectionReset
                        || e.kind() == ErrorKind::ConnectionAborted =>
                {
                    return Ok(out)
                }
                Err(e) if is_timeout(&e) => {
                    return Err(format!(
                        "connection to {} still open after {IO_TIMEOUT:?}; received: {}",
                        self.peer,
                        show(&out)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "reading from {}: {e}; received: {}",
                        self.peer,
                        show(&out)
                    ))
                }
            }
        }
    }

    /// `INFO [section]`, returning the text of the bulk (RESP2) or verbatim (RESP3) reply.
    pub fn info(&mut self, section: Option<&str>) -> String {
        let reply = match section {
            Some(s) => self.cmd_str(&["INFO", s]),
            None => self.cmd_str(&["INFO"]),
        };
        let body =
            bulk_reply(&reply).unwrap_or_else(|| panic!("INFO returned nil: {}", show(&reply)));
        String::from_utf8(body).expect("INFO text is UTF-8")
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The first line of a reply, without the leading type byte and the CRLF.
fn header(reply: &[u8]) -> &[u8] {
    let end = reply
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("no CRLF in reply {}", show(reply)));
    &reply[1..end]
}

/// Parses an integer reply `:N\r\n`, panicking with the reply otherwise.
pub fn int_reply(reply: &[u8]) -> i64 {
    assert!(
        reply.first() == Some(&b':'),
        "expected an integer reply, got {}",
        show(reply)
    );
    std::str::from_utf8(header(reply))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad integer reply {}", show(reply)))
}

/// Parses a bulk string (`$N`), verbatim string (`=N` with its `xxx:` format) or null
/// (`$-1`, `_`) reply; panics with the reply for any other type.
pub fn bulk_reply(reply: &[u8]) -> Option<Vec<u8>> {
    match reply.first() {
        Some(b'_') => None,
        Some(b'$') | Some(b'=') => {
            let len: i64 = std::str::from_utf8(header(reply))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad bulk header {}", show(reply)));
            if len < 0 {
                return None;
            }
            let start = header(reply).len() + 3;
            let body = &reply[start..start + len as usize];
            if reply[0] == b'=' {
                Some(body[4..].to_vec())
            } else {
                Some(body.to_vec())
            }
        }
        _ => panic!("expected a bulk string reply, got {}", show(reply)),
    }
}

/// Bytes of a bulk string reply `$N\r\n<value>\r\n` (how a GET hit is expected to look).
pub fn bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_finds_one_frame_per_protocol() {
        let two = b"$-1\r\n+OK\r\n";
        assert_eq!(frame_len(two, Protocol::Resp2), Ok(Some(5)));
        assert_eq!(frame_len(two, Protocol::Resp3), Ok(Some(5)));
        assert_eq!(frame_len(b"_\r\n", Protocol::Resp3), Ok(Some(3)));
        assert_eq!(frame_len(b"_\r\n", Protocol::Resp2), Ok(Some(3)));
        assert_eq!(frame_len(b"*2\r\n$1\r\na\r\n", Protocol::Resp2), Ok(None));
        assert_eq!(
            frame_len(b"%1\r\n+a\r\n,1.5\r\n", Protocol::Resp3),
            Ok(Some(14))
        );
        assert!(frame_len(b"?what\r\n", Protocol::Resp2).is_err());
    }

    #[test]
    fn replies_parse() {
        assert_eq!(int_reply(b":-42\r\n"), -42);
        assert_eq!(bulk_reply(b"$3\r\nabc\r\n"), Some(b"abc".to_vec()));
        assert_eq!(bulk_reply(b"$-1\r\n"), None);
        assert_eq!(bulk_reply(b"_\r\n"), None);
        assert_eq!(bulk_reply(b"=7\r\ntxt:abc\r\n"), Some(b"abc".to_vec()));
        assert_eq!(bulk(b"hi"), b"$2\r\nhi\r\n".to_vec());
        assert_eq!(
            encode_command_str(&["GET", "k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
