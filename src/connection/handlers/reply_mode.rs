//! `CLIENT REPLY ON|OFF|SKIP`: which replies the client asked not to get. The sidecar
//! keeps the mode per client (the upstream connections are shared, and every upstream
//! reply is still matched to its request) and drops those replies on their way out.

use bytes::Bytes;

use crate::connection::handlers::Ctx;
use crate::protocol::{write_error, OK};
use crate::upstream::Router;

/// Whether the client gets its replies (Redis's `CLIENT_REPLY_*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::connection) enum ReplyMode {
    /// Every reply is sent.
    #[default]
    On,
    /// No reply is sent until `CLIENT REPLY ON`.
    Off,
    /// `CLIENT REPLY SKIP` was the last command: the next command's reply is dropped.
    SkipNext,
    /// The command being served is the one after `CLIENT REPLY SKIP`.
    Skipping,
}

impl<R: Router> Ctx<R> {
    /// `CLIENT REPLY <mode>`: ON answers `+OK` (even for the command a SKIP applies to, as
    /// Redis), OFF and SKIP answer nothing (SKIP is ignored while OFF), anything else is a
    /// syntax error (dropped too while replies are off).
    pub(in crate::connection) fn client_reply(&mut self, mode: &Bytes) {
        let current = self.session.reply;
        let next = match () {
            _ if mode.eq_ignore_ascii_case(b"ON") => ReplyMode::On,
            _ if mode.eq_ignore_ascii_case(b"OFF") => ReplyMode::Off,
            _ if mode.eq_ignore_ascii_case(b"SKIP") && current == ReplyMode::Off => current,
            _ if mode.eq_ignore_ascii_case(b"SKIP") => ReplyMode::SkipNext,
            _ => {
                return self
                    .replies
                    .ready_with(|out| write_error(out, "ERR syntax error"))
            }
        };
        self.session.reply = next;
        self.replies.mute(next != ReplyMode::On);
        if next == ReplyMode::On {
            self.replies.ready(OK);
        }
    }

    /// `RESET` turns replies back on, except for its own reply when a SKIP applies to it.
    pub(in crate::connection) fn reset_reply(&mut self) {
        if self.session.reply != ReplyMode::Skipping {
            self.session.reply = ReplyMode::On;
            self.replies.mute(false);
        }
    }

    /// One request has been served: a SKIP applies to the next one only.
    #[inline]
    pub(in crate::connection) fn served_one(&mut self) {
        match self.session.reply {
            ReplyMode::On | ReplyMode::Off => {}
            ReplyMode::SkipNext => self.session.reply = ReplyMode::Skipping,
            ReplyMode::Skipping => {
                self.session.reply = ReplyMode::On;
                self.replies.mute(false);
            }
        }
    }
}
