//! `Monitor`: what the upstream actually executed, read through Redis `MONITOR`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::Conn;
use crate::redis::Redis;
use crate::show;

/// One command the upstream executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The database it ran in.
    pub db: u32,
    /// Its arguments, the command name upper-cased.
    pub args: Vec<String>,
}

impl Executed {
    /// True if this is command `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(name))
    }
}

/// A `MONITOR` connection on the upstream plus a direct connection used to mark an end.
pub struct Monitor {
    monitor: Conn,
    marker: Conn,
}

impl Monitor {
    /// Starts monitoring `redis` (commands executed from now on are seen).
    pub fn start(redis: &Redis) -> Monitor {
        let mut monitor = redis.conn();
        let reply = monitor.cmd_str(&["MONITOR"]);
        assert_eq!(reply, b"+OK\r\n", "MONITOR: {}", show(&reply));
        Monitor {
            monitor,
            marker: redis.conn(),
        }
    }

    /// Every command executed since the start or the previous call.
    ///
    /// Sends a unique `ECHO` on a separate connection and reads the monitor stream up to it,
    /// so everything executed before this call is included without waiting on a timer.
    pub fn take(&mut self) -> Vec<Executed> {
        static N: AtomicU64 = AtomicU64::new(0);
        let marker = format!(
            "nearcache-monitor-marker-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let reply = self.marker.cmd_str(&["ECHO", &marker]);
        assert_eq!(reply, crate::bulk(marker.as_bytes()));
        let mut out = Vec::new();
        loop {
            let line = self.monitor.read_reply();
            let text = String::from_utf8_lossy(&line).into_owned();
            if text.contains(&marker) {
                return out;
            }
            if let Some(executed) = parse_monitor_line(&text) {
                out.push(executed);
            }
        }
    }
}

/// Parses `+1700000000.123456 [0 127.0.0.1:6379] "GET" "k"`.
pub fn parse_monitor_line(line: &str) -> Option<Executed> {
    let line = line.strip_prefix('+')?.trim_end();
    let open = line.find('[')?;
    let close = line[open..].find(']')? + open;
    let db = line[open + 1..close].split(' ').next()?.parse().ok()?;
    let mut args = Vec::new();
    let mut chars = line[close + 1..].chars().peekable();
    loop {
        match chars.next() {
            None => break,
            Some('"') => {
                let mut arg = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => arg.push('\n'),
                            Some('r') => arg.push('\r'),
                            Some('t') => arg.push('\t'),
                            Some('x') => {
                                let hex: String = chars.by_ref().take(2).collect();
                                if let Ok(b) = u8::from_str_radix(&hex, 16) {
                                    arg.push(b as char);
                                }
                            }
                            Some(other) => arg.push(other),
                            None => break,
                        },
                        c => arg.push(c),
                    }
                }
                args.push(arg);
            }
            Some(_) => {}
        }
    }
    if let Some(first) = args.first_mut() {
        *first = first.to_ascii_uppercase();
    }
    Some(Executed { db, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_parse() {
        let e = parse_monitor_line(
            "+1700000000.123456 [3 127.0.0.1:6379] \"mget\" \"a b\" \"q\\\"x\" \"\\x00\"\r\n",
        )
        .unwrap();
        assert_eq!(e.db, 3);
        assert_eq!(e.args, vec!["MGET", "a b", "q\"x", "\0"]);
        assert!(e.is("mget"));
        let lua = parse_monitor_line("+1.0 [0 lua] \"set\" \"k\" \"v\"").unwrap();
        assert_eq!(lua.args, vec!["SET", "k", "v"]);
    }
}
