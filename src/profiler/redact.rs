//! The arguments Redis 7.0 keeps out of its own `SLOWLOG` (its `redactClientCommandArgument`
//! call sites), replaced by `(redacted)` in the sidecar's slow log the same way:
//!
//! - `AUTH [user] pass`: every argument (with more than two, none: Redis refuses it);
//! - `HELLO <protover> ... AUTH <user> <pass> ...`: the user and the password, for an
//!   `AUTH` option reached by Redis's own parse (a protocol version of 2 or 3, options
//!   before it well formed);
//! - `ACL SETUSER <user> <rules>...`: the user name and every rule;
//! - `CONFIG SET <name> <value> ...`: the value of `masteruser`, `masterauth` and
//!   `requirepass` (names compared ignoring case), in every pair, with an even count of
//!   arguments;
//! - `MIGRATE host port key db timeout [COPY] [REPLACE] [AUTH pass | AUTH2 user pass]
//!   [KEYS ...]`: the password, and the user of `AUTH2`, for options reached by Redis's
//!   parse (it stops at `KEYS` or at the first word it does not know).
//!
//! A module's `RM_RedactClientCommandArgument` is the one call site not known here.

use bytes::Bytes;

/// What a redacted argument shows (Redis's `shared.redacted`).
pub const REDACTED: &[u8] = b"(redacted)";

/// `CONFIG SET` parameters Redis 7.0 flags `SENSITIVE_CONFIG`.
const SENSITIVE_CONFIGS: [&[u8]; 3] = [b"masteruser", b"masterauth", b"requirepass"];

/// Replaces the arguments of `args` (a whole command, its name first) that Redis 7.0 keeps
/// out of its slow log with [`REDACTED`].
pub fn redact(args: &mut [Bytes]) {
    let is = |i: usize, name: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(name));
    let hidden: Vec<usize> = if is(0, b"AUTH") {
        match args.len() {
            2 | 3 => (1..args.len()).collect(),
            _ => vec![],
        }
    } else if is(0, b"HELLO") {
        hello(args)
    } else if is(0, b"ACL") && is(1, b"SETUSER") && args.len() >= 3 {
        (2..args.len()).collect()
    } else if is(0, b"CONFIG") && is(1, b"SET") && args.len().is_multiple_of(2) {
        (2..args.len())
            .step_by(2)
            .filter(|&i| {
                SENSITIVE_CONFIGS
                    .iter()
                    .any(|n| args[i].eq_ignore_ascii_case(n))
            })
            .map(|i| i + 1)
            .collect()
    } else if is(0, b"MIGRATE") {
        migrate(args)
    } else {
        vec![]
    };
    for i in hidden {
        args[i] = Bytes::from_static(REDACTED);
    }
}

/// `HELLO`'s redacted positions, as `helloCommand` parses: the version must be `2` or `3`
/// (Redis's strict integer parse: no sign, no leading zero); `AUTH` with two more arguments hides both; `SETNAME` with a valid name takes
/// one; anything else ends the parse.
fn hello(args: &[Bytes]) -> Vec<usize> {
    let mut hidden = vec![];
    if args.len() < 2 {
        return hidden;
    }
    if !matches!(&args[1][..], b"2" | b"3") {
        return hidden;
    }
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if args[j].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            hidden.extend([j + 1, j + 2]);
            j += 3;
        } else if args[j].eq_ignore_ascii_case(b"SETNAME")
            && more >= 1
            && args[j + 1].iter().all(|b| (b'!'..=b'~').contains(b))
        {
            j += 2;
        } else {
            break;
        }
    }
    hidden
}

/// `MIGRATE`'s redacted positions, as `migrateCommand` parses from its sixth argument.
fn migrate(args: &[Bytes]) -> Vec<usize> {
    let mut hidden = vec![];
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let word = &args[j];
        if word.eq_ignore_ascii_case(b"COPY") || word.eq_ignore_ascii_case(b"REPLACE") {
            j += 1;
        } else if word.eq_ignore_ascii_case(b"AUTH") && more >= 1 {
            hidden.push(j + 1);
            j += 2;
        } else if word.eq_ignore_ascii_case(b"AUTH2") && more >= 2 {
            hidden.extend([j + 1, j + 2]);
            j += 3;
        } else {
            break; // KEYS (the rest are keys), a syntax error, or a missing argument
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "(redacted)";

    /// Each case checked against redis-server 7.0.15's own `SLOWLOG GET`.
    #[test]
    fn redis_7_0_redaction_list() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["AUTH", "pw"], &["AUTH", R]),
            (&["auth", "u", "pw"], &["auth", R, R]),
            (&["AUTH", "u", "pw", "x"], &["AUTH", "u", "pw", "x"]),
            (
                &["HELLO", "3", "AUTH", "u", "pw"],
                &["HELLO", "3", "AUTH", R, R],
            ),
            (
                &["hello", "2", "SETNAME", "n", "auth", "u", "pw"],
                &["hello", "2", "SETNAME", "n", "auth", R, R],
            ),
            (
                &["HELLO", "4", "AUTH", "u", "pw"],
                &["HELLO", "4", "AUTH", "u", "pw"],
            ),
            (
                &["HELLO", "x", "AUTH", "u", "pw"],
                &["HELLO", "x", "AUTH", "u", "pw"],
            ),
            (
                &["HELLO", "03", "AUTH", "u", "pw"],
                &["HELLO", "03", "AUTH", "u", "pw"],
            ),
            (
                &["HELLO", "3", "BOGUS", "AUTH", "u", "pw"],
                &["HELLO", "3", "BOGUS", "AUTH", "u", "pw"],
            ),
            (&["HELLO", "3", "AUTH", "u"], &["HELLO", "3", "AUTH", "u"]),
            (
                &["HELLO", "3", "SETNAME", "a b", "AUTH", "u", "pw"],
                &["HELLO", "3", "SETNAME", "a b", "AUTH", "u", "pw"],
            ),
            (
                &["ACL", "SETUSER", "bob", "on", ">pw", "~*"],
                &["ACL", "SETUSER", R, R, R, R],
            ),
            (&["acl", "setuser", "bob"], &["acl", "setuser", R]),
            (&["ACL", "GETUSER", "bob"], &["ACL", "GETUSER", "bob"]),
            (
                &["CONFIG", "SET", "masterauth", "x", "maxmemory", "1mb"],
                &["CONFIG", "SET", "masterauth", R, "maxmemory", "1mb"],
            ),
            (
                &[
                    "config",
                    "set",
                    "MasterUser",
                    "u",
                    "requirepass",
                    "p",
                    "nope",
                    "v",
                ],
                &[
                    "config",
                    "set",
                    "MasterUser",
                    R,
                    "requirepass",
                    R,
                    "nope",
                    "v",
                ],
            ),
            (
                &["CONFIG", "SET", "requirepass", "p", "odd"],
                &["CONFIG", "SET", "requirepass", "p", "odd"],
            ),
            (
                &["CONFIG", "GET", "requirepass"],
                &["CONFIG", "GET", "requirepass"],
            ),
            (
                &["MIGRATE", "h", "1", "k", "0", "1000", "AUTH", "pw"],
                &["MIGRATE", "h", "1", "k", "0", "1000", "AUTH", R],
            ),
            (
                &[
                    "MIGRATE", "h", "1", "", "0", "9", "COPY", "REPLACE", "auth2", "u", "pw",
                    "KEYS", "a", "b",
                ],
                &[
                    "MIGRATE", "h", "1", "", "0", "9", "COPY", "REPLACE", "auth2", R, R, "KEYS",
                    "a", "b",
                ],
            ),
            (
                &["MIGRATE", "h", "1", "", "0", "9", "KEYS", "AUTH", "x"],
                &["MIGRATE", "h", "1", "", "0", "9", "KEYS", "AUTH", "x"],
            ),
            (
                &["MIGRATE", "h", "1", "k", "0", "9", "BOGUS", "AUTH", "pw"],
                &["MIGRATE", "h", "1", "k", "0", "9", "BOGUS", "AUTH", "pw"],
            ),
            (
                &["MIGRATE", "h", "1", "k", "0", "9", "AUTH2", "u"],
                &["MIGRATE", "h", "1", "k", "0", "9", "AUTH2", "u"],
            ),
            (&["SET", "requirepass", "x"], &["SET", "requirepass", "x"]),
            (&["GET", "AUTH"], &["GET", "AUTH"]),
        ];
        for (given, want) in cases {
            let mut args: Vec<Bytes> = given.iter().map(|a| Bytes::from(a.to_string())).collect();
            redact(&mut args);
            assert_eq!(args, *want, "{given:?}");
        }
    }
}
