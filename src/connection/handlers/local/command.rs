//! The commands the sidecar answers about the session itself, parsed once into what they
//! say (the classification in [`crate::command`] only names them). The pooled path and the
//! pinned relay read them through the same parsers, so they cannot disagree: HELLO in
//! particular is read exactly as Redis 7 reads it.

use bytes::Bytes;

use crate::command::Local;
use crate::protocol::{is, Request, Resp};
use crate::upstream::Credentials;

/// A local command with its arguments read.
pub(in crate::connection) enum Command {
    /// `SELECT db`; `None` when the argument is not a database number (the upstream then
    /// words the error).
    Select(Option<u32>),
    /// `AUTH [user] pass`; `None` with another number of arguments.
    Auth(Option<Credentials>),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`, or why Redis refuses it.
    Hello(Result<Hello, HelloError>),
    Reset,
    Quit,
    /// `INFO [section ...]` (the sections are the request's arguments).
    Info,
    /// `CLIENT SETNAME name`.
    ClientSetName(Bytes),
    ClientGetName,
    ClientId,
    /// `CLIENT REPLY ON|OFF|SKIP` (the mode as given).
    ClientReply(Bytes),
    ClientUnblock,
    ClientKill,
    /// `SCRIPT KILL`, `FUNCTION KILL`, `CLIENT UNPAUSE`.
    Kill,
    Nearcache,
}

impl Command {
    /// Reads the arguments of `req`, which the command table classified as `local`.
    pub(in crate::connection) fn parse(local: Local, req: &Request) -> Command {
        let args = &req.args;
        match local {
            Local::Select => Command::Select(database(args)),
            Local::Auth => Command::Auth(credentials(&args[1..])),
            Local::Hello => Command::Hello(Hello::parse(args)),
            Local::Reset => Command::Reset,
            Local::Quit => Command::Quit,
            Local::Info => Command::Info,
            Local::ClientSetName => Command::ClientSetName(args[2].clone()),
            Local::ClientGetName => Command::ClientGetName,
            Local::ClientId => Command::ClientId,
            Local::ClientReply => Command::ClientReply(args[2].clone()),
            Local::ClientUnblock => Command::ClientUnblock,
            Local::ClientKill => Command::ClientKill,
            Local::Kill => Command::Kill,
            Local::Nearcache => Command::Nearcache,
        }
    }
}

/// What a valid `HELLO` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::connection) struct Hello {
    /// The protocol version; `None` keeps the current one (`HELLO` alone).
    pub(in crate::connection) protover: Option<Resp>,
    /// `AUTH user pass` (the last one given).
    pub(in crate::connection) auth: Option<Credentials>,
    /// `SETNAME name` (the last one given); `Some(None)` for an empty name, which clears it.
    pub(in crate::connection) setname: Option<Option<Bytes>>,
}

/// Why Redis refuses a `HELLO`, in the order it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::connection) enum HelloError {
    /// The version is not 2 or 3 (Redis words this error itself: not an integer, or
    /// `NOPROTO`).
    Protover,
    /// An option token Redis does not know, or `AUTH`/`SETNAME` without their arguments.
    Syntax(Bytes),
}

impl HelloError {
    /// Redis 7's reply to an unknown option token.
    pub(in crate::connection) fn syntax_message(token: &[u8]) -> String {
        let token = String::from_utf8_lossy(token);
        format!("ERR Syntax error in HELLO option '{token}'")
    }
}

impl Hello {
    /// Reads `HELLO [protover [AUTH user pass] [SETNAME name]]` as Redis 7 does: the
    /// version first, then each option in turn, an unknown token (or `AUTH` without two
    /// arguments, `SETNAME` without one) refusing the whole command.
    pub(in crate::connection) fn parse(args: &[Bytes]) -> Result<Hello, HelloError> {
        let protover = match args.get(1).map(|v| &v[..]) {
            None => None,
            Some(b"2") => Some(Resp::V2),
            Some(b"3") => Some(Resp::V3),
            Some(_) => return Err(HelloError::Protover),
        };
        let (mut auth, mut setname) = (None, None);
        let mut i = 2;
        while i < args.len() {
            let more = args.len() - 1 - i;
            if is(&args[i], b"AUTH") && more >= 2 {
                auth = credentials(&args[i + 1..i + 3]);
                i += 3;
            } else if is(&args[i], b"SETNAME") && more >= 1 {
                setname = Some(Some(args[i + 1].clone()).filter(|n| !n.is_empty()));
                i += 2;
            } else {
                return Err(HelloError::Syntax(args[i].clone()));
            }
        }
        Ok(Hello {
            protover,
            auth,
            setname,
        })
    }

    /// Whether the command carries options (checked by the upstream before they apply).
    pub(in crate::connection) fn has_options(&self) -> bool {
        self.auth.is_some() || self.setname.is_some()
    }
}

/// `SELECT`'s database number.
pub(in crate::connection) fn database(args: &[Bytes]) -> Option<u32> {
    if args.len() != 2 {
        return None;
    }
    std::str::from_utf8(&args[1]).ok()?.parse::<u32>().ok()
}

/// `[user] pass` as given to AUTH.
pub(in crate::connection) fn credentials(args: &[Bytes]) -> Option<Credentials> {
    match args {
        [pass] => Some(Credentials {
            user: None,
            pass: pass.clone(),
        }),
        [user, pass] => Some(Credentials {
            user: Some(user.clone()),
            pass: pass.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<Bytes> {
        text.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn hello_reads_its_options_as_redis_7() {
        let got = Hello::parse(&args("HELLO 3 auth u p SetName app")).unwrap();
        assert_eq!(got.protover, Some(Resp::V3));
        let creds = got.auth.unwrap();
        assert_eq!((creds.user, creds.pass), (Some(b("u")), b("p")));
        assert_eq!(got.setname, Some(Some(b("app"))));
        let alone = Hello::parse(&args("HELLO")).unwrap();
        assert_eq!((alone.protover, alone.has_options()), (None, false));
        let cleared = Hello::parse(&[b("HELLO"), b("2"), b("SETNAME"), b("")]).unwrap();
        assert_eq!(cleared.setname, Some(None));
    }

    #[test]
    fn hello_refuses_an_unknown_option_token_as_redis_7() {
        for (text, token) in [
            ("HELLO 3 FOO", "FOO"),
            ("HELLO 3 SETNAME app bar", "bar"),
            ("HELLO 2 AUTH onlyuser", "AUTH"),
            ("HELLO 2 SETNAME", "SETNAME"),
        ] {
            assert_eq!(
                Hello::parse(&args(text)),
                Err(HelloError::Syntax(b(token))),
                "{text}"
            );
        }
        assert_eq!(
            HelloError::syntax_message(b"FOO"),
            "ERR Syntax error in HELLO option 'FOO'"
        );
        // The version is checked first.
        for text in ["HELLO 4 FOO", "HELLO x", "HELLO AUTH u p"] {
            assert_eq!(
                Hello::parse(&args(text)),
                Err(HelloError::Protover),
                "{text}"
            );
        }
    }

    #[test]
    fn select_and_auth_arguments() {
        assert_eq!(database(&args("SELECT 3")), Some(3));
        assert_eq!(database(&args("SELECT x")), None);
        assert_eq!(database(&args("SELECT 1 2")), None);
        assert!(credentials(&args("p")).is_some_and(|c| c.user.is_none()));
        assert!(credentials(&args("u p x")).is_none());
    }
}
