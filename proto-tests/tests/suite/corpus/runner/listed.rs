//! The differences Redis Cluster itself has from a standalone Redis that cluster mode leaves
//! out or normalises, each with its reason (printed with every cluster run).

use super::Case;

/// A kind of command Redis Cluster itself answers otherwise than a standalone Redis.
pub struct Listed {
    /// Which commands.
    pub what: &'static str,
    /// Why Cluster differs.
    pub reason: &'static str,
    /// Whether a command of a case is one of them.
    pub matches: fn(&Case, &[Vec<u8>]) -> bool,
}

fn is(args: &[Vec<u8>], name: &str) -> bool {
    args[0].eq_ignore_ascii_case(name.as_bytes())
}

fn has_arg(args: &[Vec<u8>], word: &str) -> bool {
    args[1..]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
}

/// The commands left out in cluster mode.
pub const LISTED: &[Listed] = &[
    Listed {
        what: "SELECT n (n not 0)",
        reason: "Redis Cluster has db 0 only (SELECT n is refused; pinned by refused/select)",
        matches: |_, a| is(a, "SELECT") && a.get(1).is_none_or(|n| n != b"0"),
    },
    Listed {
        what: "SWAPDB, MOVE",
        reason: "Redis Cluster has db 0 only (refused in cluster mode)",
        matches: |_, a| is(a, "SWAPDB") || is(a, "MOVE"),
    },
    Listed {
        what: "COPY ... DB n",
        reason: "Redis Cluster has db 0 only (copying to another db is refused)",
        matches: |_, a| is(a, "COPY") && has_arg(a, "DB"),
    },
    Listed {
        what: "SORT/SORT_RO with BY or GET",
        reason: "the patterns name keys of other slots (denied in cluster mode)",
        matches: |_, a| {
            (is(a, "SORT") || is(a, "SORT_RO")) && (has_arg(a, "BY") || has_arg(a, "GET"))
        },
    },
    Listed {
        what: "EVAL of a script writing the undeclared key 'undeclared'",
        reason: "a script's undeclared key may be on another node (Cluster refuses it)",
        matches: |_, a| {
            is(a, "EVAL") && a.len() > 1 && a[1].windows(10).any(|w| w == b"undeclared")
        },
    },
    Listed {
        what: "MEMORY USAGE",
        reason: "a cluster node's keys carry slot bookkeeping (16 bytes more per key)",
        matches: |_, a| {
            is(a, "MEMORY") && a.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"USAGE"))
        },
    },
    Listed {
        what: "CLUSTER, INFO",
        reason: "the sidecar answers as one node owning every slot; server sections differ",
        matches: |_, a| is(a, "CLUSTER") || is(a, "INFO"),
    },
    Listed {
        what: "KEYS, SCAN in untagged cases",
        reason: "keys on several nodes come back in another order",
        matches: |c, a| c.untagged && (is(a, "KEYS") || is(a, "SCAN")),
    },
];

/// Why HELLO's `mode` field is normalised.
pub const MODE_REASON: &str = "a Redis Cluster node says cluster, a standalone Redis standalone";

/// `reply` with HELLO's `mode` value replaced by `<mode>` (see [`MODE_REASON`]).
pub fn normalise_mode(args: &[Vec<u8>], reply: Vec<u8>) -> Vec<u8> {
    if args.is_empty() || !is(args, "HELLO") {
        return reply;
    }
    let field = b"$4\r\nmode\r\n";
    let Some(at) = reply.windows(field.len()).position(|w| w == field) else {
        return reply;
    };
    let start = at + field.len();
    for value in [&b"$10\r\nstandalone\r\n"[..], b"$7\r\ncluster\r\n"] {
        if reply[start..].starts_with(value) {
            let mut out = reply[..start].to_vec();
            out.extend_from_slice(b"<mode>\r\n");
            out.extend_from_slice(&reply[start + value.len()..]);
            return out;
        }
    }
    reply
}

/// The cases left out in cluster mode, with why.
pub const SKIPPED_CASES: &[(&str, &str)] = &[
    (
        "connection/select-and-cache",
        "every step uses dbs other than 0, which Redis Cluster does not have",
    ),
    (
        "pubsub/messages",
        "SSUBSCRIBE on a connection SUBSCRIBEd on another node: a cluster node answers -MOVED \
         (a client has one pinned connection, on one node; SSUBSCRIBE alone: cluster_sessions)",
    ),
    (
        "pubsub/commands-while-subscribed",
        "keyed commands on a SUBSCRIBEd connection run on its node: a key of another node gets \
         -MOVED, as on a cluster node (the subscription's connection is on one node)",
    ),
    (
        "pubsub/subscribe-forms",
        "SSUBSCRIBE pipelined behind SUBSCRIBE: the same -MOVED as pubsub/messages",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::runner::tokenize;

    #[test]
    fn hello_mode_is_normalised() {
        let hello = |mode: &str| {
            format!(
                "%2\r\n$4\r\nmode\r\n${}\r\n{mode}\r\n$4\r\nrole\r\n$6\r\nmaster\r\n",
                mode.len()
            )
            .into_bytes()
        };
        let args = tokenize("HELLO 3");
        let want = b"%2\r\n$4\r\nmode\r\n<mode>\r\n$4\r\nrole\r\n$6\r\nmaster\r\n".to_vec();
        assert_eq!(normalise_mode(&args, hello("cluster")), want);
        assert_eq!(normalise_mode(&args, hello("standalone")), want);
        assert_eq!(
            normalise_mode(&tokenize("ECHO x"), hello("cluster")),
            hello("cluster")
        );
    }
}
