//! The control connection's handshake: `HELLO 3` (with `AUTH`) naming the connection,
//! `CLIENT ID`, `CLIENT TRACKING on BCAST` with broadcast tracking, `SUBSCRIBE` to the bus when it is on, and a `PING` that shows the server
//! serves reads; each reply matched to the step that asked for it, each failure typed.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use crate::upstream::stream::UpstreamStream;

use super::super::{Control, ControlTarget};
use crate::protocol::decode::{hello_role, integer, is_error};
use crate::protocol::{write_command, FrameScanner};
use crate::upstream::{redact, Credentials};

/// The control connection's name in the upstream's `CLIENT LIST`.
pub const NAME: &[u8] = b"nearcache-control";
const SETNAME: &[u8] = b"SETNAME";
/// The heartbeat, also the last request of the handshake.
pub(super) const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Why a control connection could not be set up (its text is the log line's reason).
#[derive(Debug)]
pub(super) enum Unlinked {
    /// Connecting, reading or writing failed, or the server closed the connection.
    Io(String),
    /// Setting up took longer than the connect timeout.
    Timeout,
    /// A handshake step was answered with an error (quoted, credentials redacted): the
    /// upstream refused it, or serves no reads now (`-LOADING`, ...).
    Refused(String),
    /// `CLIENT ID` was answered with something that is not an integer.
    NoId,
    /// A discovered primary's `HELLO` named another role (quoted).
    NotPrimary(String),
    /// The link was up and is lost (a read error, a silent heartbeat, a broken redirect,
    /// a gap on the bus).
    Lost(String),
}

impl Unlinked {
    /// The error code of a refusal (`NOAUTH`, `WRONGPASS`, ...).
    pub(super) fn code(&self) -> Option<&str> {
        let Unlinked::Refused(reply) = self else {
            return None;
        };
        reply.trim_start_matches('-').split(' ').next()
    }
}

impl std::fmt::Display for Unlinked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlinked::Io(e) => f.write_str(e),
            Unlinked::Timeout => f.write_str("connect timed out"),
            Unlinked::Refused(reply) => f.write_str(reply),
            Unlinked::NoId => f.write_str("CLIENT ID gave no integer"),
            Unlinked::NotPrimary(role) => write!(f, "not the primary (its role is {role})"),
            Unlinked::Lost(why) => f.write_str(why),
        }
    }
}

/// The requests of the handshake, in the order they are written (and answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// `HELLO 3 [AUTH ..] SETNAME nearcache-control`.
    Hello,
    /// `CLIENT ID`: the redirect target.
    ClientId,
    /// `CLIENT TRACKING on BCAST ...` (broadcast tracking only).
    Track,
    /// `SUBSCRIBE <bus>` (when the bus is on).
    Subscribe,
    /// `PING`: whether the server serves reads now.
    Ping,
}

/// Connects, authenticates, learns the connection's id and subscribes to the bus (a
/// `-NOPERM` there turns the bus off, logged), then checks with a PING that the server
/// serves: HELLO, CLIENT and SUBSCRIBE work while it loads its dataset or, as a replica
/// with `replica-serve-stale-data no`, has lost its master, but reads get `-LOADING` or
/// `-MASTERDOWN` (and PING too): the link stays down then, so L1 is bypassed, and is tried
/// again with backoff.
pub(super) async fn connect(
    tracking: &Control,
    target: &ControlTarget,
    credentials: Option<&Credentials>,
) -> Result<(UpstreamStream, BytesMut, i64, u64), Unlinked> {
    let io = |e: std::io::Error| Unlinked::Io(e.to_string());
    let deadline = tokio::time::Instant::now() + target.connect_timeout;
    let (address, generation) = target.endpoint.current();
    let setup = async {
        let address = address.ok_or_else(|| Unlinked::Io("no primary known".into()))?;
        let (mut stream, _registered) = target
            .outbound
            .connect(&address, deadline)
            .await
            .map_err(io)?;
        let mut out = BytesMut::new();
        let bus = &tracking.bus;
        let mut steps = vec![Step::Hello, Step::ClientId];
        match credentials {
            Some(c) => {
                let user: &[u8] = c.user.as_deref().unwrap_or(b"default");
                let hello: &[&[u8]] = &[b"HELLO", b"3", b"AUTH", user, &c.pass, SETNAME, NAME];
                write_command(&mut out, hello);
            }
            None => write_command(&mut out, &[b"HELLO", b"3", SETNAME, NAME]),
        }
        write_command(&mut out, &[b"CLIENT", b"ID"]);
        if let Some(track) = tracking.tracking_command() {
            write_command(&mut out, &track);
            steps.push(Step::Track);
        }
        if bus.active() {
            write_command(&mut out, &[b"SUBSCRIBE", bus.channel()]);
            steps.push(Step::Subscribe);
        }
        out.extend_from_slice(PING);
        steps.push(Step::Ping);
        stream.send(&out).await.map_err(io)?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut scanner = FrameScanner::default();
        let mut id = None;
        for step in steps {
            let frame = read_frame(&mut stream, &mut buf, &mut scanner)
                .await
                .map_err(Unlinked::Io)?;
            // Quoted: a server without HELLO quotes its arguments, the password among them.
            let refused = || {
                let quoted = redact(String::from_utf8_lossy(&frame).trim(), credentials);
                Unlinked::Refused(quoted)
            };
            match step {
                // Any other reply to the PING (a user without PING) shows the server answers.
                Step::Ping if is_state_error(&frame) => return Err(refused()),
                Step::Ping => {}
                Step::Subscribe if is_error(&frame) => {
                    let why = refused();
                    if why.code() != Some("NOPERM") {
                        return Err(why);
                    }
                    bus.set_refused();
                    let channel = String::from_utf8_lossy(bus.channel());
                    tracing::warn!(
                        "upstream refused SUBSCRIBE {channel} ({why}): running without the invalidation bus"
                    );
                }
                Step::Subscribe => {}
                _ if is_error(&frame) => return Err(refused()),
                Step::ClientId => id = integer(&frame),
                Step::Track => {}
                // A discovered primary must still be one: the `role` field of the HELLO
                // reply (any user may send HELLO; `ROLE` needs `@admin`).
                Step::Hello if target.endpoint.discovered() => match hello_role(&frame) {
                    Some(role) if role != "master" => {
                        target.endpoint.doubt("the node's role is not master");
                        return Err(Unlinked::NotPrimary(role));
                    }
                    _ => {}
                },
                Step::Hello => {}
            }
        }
        Ok((stream, buf, id.ok_or(Unlinked::NoId)?, generation))
    };
    tokio::time::timeout(target.connect_timeout, setup)
        .await
        .unwrap_or(Err(Unlinked::Timeout))
}

/// An error reply for the state the server is in (a script runs, the dataset loads, a
/// replica lost its master): it serves no reads now, so L1 must not either.
pub(super) fn is_state_error(frame: &[u8]) -> bool {
    [&b"-BUSY "[..], b"-LOADING ", b"-MASTERDOWN "]
        .iter()
        .any(|code| frame.starts_with(code))
}

/// Reads one frame into `buf` (what follows stays there).
pub(super) async fn read_frame(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    scanner: &mut FrameScanner,
) -> Result<Bytes, String> {
    loop {
        if let Some(len) = scanner.next_frame(buf).map_err(|e| e.to_string())? {
            *scanner = FrameScanner::default();
            return Ok(buf.split_to(len).freeze());
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed by upstream".into());
        }
    }
}
