//! The commands counted by name (the `command` label): a fixed list, so the label's values
//! are bounded; anything else is `other`. Counts are sharded by connection so that
//! connections on different threads do not write the same cache line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Known command names, lower case, sorted (for the binary search in [`index`]).
pub const KNOWN: &[&str] = &[
    "append",
    "auth",
    "bitcount",
    "blmove",
    "blpop",
    "brpop",
    "bzpopmin",
    "client",
    "command",
    "config",
    "dbsize",
    "decr",
    "decrby",
    "del",
    "discard",
    "echo",
    "eval",
    "evalsha",
    "exec",
    "exists",
    "expire",
    "expireat",
    "fcall",
    "flushall",
    "flushdb",
    "get",
    "getbit",
    "getdel",
    "getex",
    "getset",
    "hdel",
    "hello",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hkeys",
    "hlen",
    "hmget",
    "hmset",
    "hscan",
    "hset",
    "hsetnx",
    "hvals",
    "incr",
    "incrby",
    "incrbyfloat",
    "info",
    "keys",
    "lindex",
    "llen",
    "lmove",
    "lpop",
    "lpush",
    "lrange",
    "lrem",
    "ltrim",
    "mget",
    "mset",
    "msetnx",
    "multi",
    "nearcache",
    "persist",
    "pexpire",
    "pfadd",
    "pfcount",
    "ping",
    "psetex",
    "psubscribe",
    "pttl",
    "publish",
    "rename",
    "rpop",
    "rpush",
    "sadd",
    "scan",
    "scard",
    "select",
    "set",
    "setbit",
    "setex",
    "setnx",
    "sismember",
    "smembers",
    "spop",
    "srem",
    "sscan",
    "strlen",
    "subscribe",
    "ttl",
    "type",
    "unlink",
    "watch",
    "xack",
    "xadd",
    "xlen",
    "xrange",
    "xread",
    "xreadgroup",
    "zadd",
    "zcard",
    "zincrby",
    "zrange",
    "zrangebyscore",
    "zrank",
    "zrem",
    "zrevrange",
    "zscan",
    "zscore",
];

/// The index of `get` (the label of L1 fetches).
pub const GET: usize = position(b"get");

/// The index of a lower-case name in [`KNOWN`] (at compile time), `KNOWN.len()` if absent.
const fn position(name: &[u8]) -> usize {
    let mut i = 0;
    while i < KNOWN.len() {
        let k = KNOWN[i].as_bytes();
        if k.len() == name.len() {
            let mut j = 0;
            while j < k.len() && k[j] == name[j] {
                j += 1;
            }
            if j == k.len() {
                return i;
            }
        }
        i += 1;
    }
    KNOWN.len()
}

/// The label of index `i` (`other` past the known ones).
pub fn label(i: usize) -> &'static str {
    KNOWN.get(i).copied().unwrap_or("other")
}

/// The index of a command name (any case); `KNOWN.len()` for `other`.
pub fn index(name: &[u8]) -> usize {
    let mut lower = [0u8; 16];
    if name.len() > lower.len() {
        return KNOWN.len();
    }
    for (l, c) in lower.iter_mut().zip(name) {
        *l = c.to_ascii_lowercase();
    }
    let lower = &lower[..name.len()];
    KNOWN
        .binary_search_by(|k| k.as_bytes().cmp(lower))
        .unwrap_or(KNOWN.len())
}

/// The name of the first command in raw request bytes (`*N\r\n$L\r\nNAME...`).
pub fn first_command(bytes: &[u8]) -> &[u8] {
    let after_line = |from: usize| {
        bytes[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p + 2)
    };
    let Some(name_at) = after_line(0).and_then(after_line) else {
        return b"";
    };
    let end = bytes[name_at..]
        .iter()
        .position(|&b| b == b'\r')
        .map_or(bytes.len(), |p| name_at + p);
    &bytes[name_at..end]
}

/// Connection shards of the command counts.
const SHARDS: usize = 8;

/// Commands received, by known command, in [`SHARDS`] shards.
pub struct CommandCounts {
    counts: Box<[AtomicU64]>,
}

impl Default for CommandCounts {
    fn default() -> Self {
        let n = SHARDS * (KNOWN.len() + 1);
        CommandCounts {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CommandCounts {
    /// Counts `n` commands of index `i` for connection `conn`.
    #[inline]
    pub fn add(&self, conn: u64, i: usize, n: u64) {
        let shard = conn as usize % SHARDS;
        self.counts[shard * (KNOWN.len() + 1) + i].fetch_add(n, Relaxed);
    }

    /// Commands of index `i` received so far.
    pub fn total(&self, i: usize) -> u64 {
        (0..SHARDS)
            .map(|s| self.counts[s * (KNOWN.len() + 1) + i].load(Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_commands_are_sorted_and_found_in_any_case() {
        assert!(
            KNOWN.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(KNOWN.iter().all(|k| k.len() <= 16));
        assert_eq!(label(index(b"GET")), "get");
        assert_eq!(label(index(b"zRevRange")), "zrevrange");
        assert_eq!(label(index(b"OBJECT")), "other");
        assert_eq!(label(index(b"averyveryverylongcommandname")), "other");
        assert_eq!(label(index(b"")), "other");
    }

    #[test]
    fn the_first_command_of_raw_requests() {
        assert_eq!(first_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), b"GET");
        assert_eq!(
            first_command(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"),
            b"PING"
        );
        assert_eq!(first_command(b"garbage"), b"");
    }

    #[test]
    fn counts_add_up_across_shards() {
        let c = CommandCounts::default();
        for conn in 0..20 {
            c.add(conn, 3, 2);
        }
        assert_eq!(c.total(3), 40);
        assert_eq!(c.total(4), 0);
    }
}
