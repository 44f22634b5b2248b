//! One discovery round: ask the sentinels in order for the primary's address, learn the
//! other sentinels from the one that answered, check the named node's `ROLE`, and switch
//! the endpoint to it when it is the master.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;

use super::ask::ask;
use super::Sentinel;
use crate::protocol::decode::{array_elements, hello_role, is_error, is_null, text};

/// Sentinels learned from replies beyond the configured ones (a deployment runs 3 to 7).
const MAX_LEARNED: usize = 16;

impl Sentinel {
    /// One round. `Err` says why no primary was set (the endpoint is then left as it is).
    pub(super) async fn discover(&self) -> Result<(), String> {
        let candidate = self.ask_sentinels().await?;
        let role = self.role(&candidate).await?;
        if role != "master" {
            return Err(format!(
                "the sentinels name {candidate}, whose role is {role}"
            ));
        }
        let before = self.endpoint.display();
        let had = self.endpoint.address().is_ok();
        if self.endpoint.switch_to(Some(&candidate)) {
            *self.last_switch.lock() = Some(Instant::now());
            if had {
                self.failovers.fetch_add(1, Relaxed);
                tracing::warn!(
                    master = %self.options.master,
                    "the primary moved from {before} to {candidate}: connections to \
                     {before} end and L1 is flushed"
                );
            } else {
                tracing::info!(master = %self.options.master, primary = %candidate, "primary discovered");
            }
        }
        Ok(())
    }

    /// The address the first sentinel that answers names; that sentinel moves to the
    /// front, and the sentinels it knows are added to the known ones.
    async fn ask_sentinels(&self) -> Result<String, String> {
        let master = self.options.master.as_bytes();
        let known = self.known.lock().clone();
        let mut failures = Vec::new();
        for sentinel in known {
            let requests: [&[&[u8]]; 2] = [
                &[b"SENTINEL", b"get-master-addr-by-name", master],
                &[b"SENTINEL", b"sentinels", master],
            ];
            let replies = ask(
                &self.outbound,
                &sentinel,
                self.options.sentinel_credentials.current().as_ref(),
                &requests,
                self.options.connect_timeout,
            )
            .await;
            let replies = match replies {
                Ok(replies) => replies,
                Err(e) => {
                    failures.push(format!("{sentinel}: {}", self.redact(&e)));
                    continue;
                }
            };
            match master_address(&replies[0]) {
                Some(address) => {
                    self.promote(&sentinel);
                    let aliases = self.configured_addresses().await;
                    self.learn(&replies[1], &aliases);
                    return Ok(address);
                }
                None => {
                    let reply = String::from_utf8_lossy(&replies[0]);
                    let reply = reply.trim_end();
                    failures.push(format!("{sentinel}: no address for the master ({reply})"));
                }
            }
        }
        Err(format!("no sentinel answered: {}", failures.join("; ")))
    }

    /// The role of the node at `address` (authenticated with the data credentials): the
    /// `role` field of its `HELLO` reply, which any ACL user may ask for (`ROLE` needs
    /// `@admin`, which an application's user rarely has), else `ROLE`'s first element (a
    /// server without `HELLO`).
    async fn role(&self, address: &str) -> Result<String, String> {
        let replies = ask(
            &self.outbound,
            address,
            self.options.data_credentials.current().as_ref(),
            &[&[b"HELLO", b"3"], &[b"ROLE"]],
            self.options.connect_timeout,
        )
        .await
        .map_err(|e| format!("HELLO on {address}: {}", self.redact(&e)))?;
        Ok(hello_role(&replies[0]).unwrap_or_else(|| role(&replies[1])))
    }

    /// Moves `sentinel` to the front of the known ones.
    fn promote(&self, sentinel: &str) {
        let mut known = self.known.lock();
        if let Some(at) = known.iter().position(|s| s == sentinel) {
            let s = known.remove(at);
            known.insert(0, s);
        }
    }

    /// The `ip:port` each configured sentinel named by host name resolves to now (bounded
    /// by the connect timeout): sentinels report each other by IP, and a configured sentinel
    /// must not be learned a second time under its IP.
    async fn configured_addresses(&self) -> HashSet<String> {
        let mut resolved = HashSet::new();
        for configured in &self.options.addresses {
            if configured.parse::<std::net::SocketAddr>().is_ok() {
                continue;
            }
            let lookup = tokio::net::lookup_host(configured.as_str());
            if let Ok(Ok(addrs)) = tokio::time::timeout(self.options.connect_timeout, lookup).await
            {
                resolved.extend(addrs.map(|a| a.to_string()));
            }
        }
        resolved
    }

    /// Adds the sentinels a `SENTINEL sentinels` reply names (none is ever dropped, none that
    /// is a configured one under another name: `aliases`), at most [`MAX_LEARNED`] beyond the
    /// configured ones: each costs a subscription connection, and a reply is no reason to
    /// open an unbounded number of them.
    fn learn(&self, reply: &Bytes, aliases: &HashSet<String>) {
        let found = sentinels(reply);
        let limit = self.options.addresses.len() + MAX_LEARNED;
        let mut known = self.known.lock();
        for address in found {
            if known.contains(&address) || aliases.contains(&address) {
                continue;
            }
            if known.len() >= limit {
                tracing::debug!(sentinel = %address, "sentinel not learned: {MAX_LEARNED} already were");
                break;
            }
            tracing::debug!(sentinel = %address, "sentinel learned");
            known.push(address);
        }
    }
}

/// The role a `ROLE` reply names (`master`, `slave`, `sentinel`), or what it was instead.
fn role(frame: &Bytes) -> String {
    if is_error(frame) {
        return String::from_utf8_lossy(frame).trim_end().to_owned();
    }
    array_elements(frame)
        .and_then(|e| e.first().and_then(|r| text(r).map(|(t, _)| t.to_vec())))
        .map_or_else(
            || "?".to_owned(),
            |t| String::from_utf8_lossy(&t).into_owned(),
        )
}

/// `host:port` of a `get-master-addr-by-name` reply (`[ip, port]`); `None` for a null (the
/// sentinel does not know the master), an error or anything else.
fn master_address(frame: &Bytes) -> Option<String> {
    if is_null(frame) || is_error(frame) {
        return None;
    }
    let [host, port] = <[Bytes; 2]>::try_from(array_elements(frame)?).ok()?;
    join(text(&host)?.0, text(&port)?.0)
}

/// `host:port`, with an IPv6 host in brackets; `None` for a port that is no number.
fn join(host: &[u8], port: &[u8]) -> Option<String> {
    let host = std::str::from_utf8(host).ok()?;
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some(match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    })
}

/// The `ip:port` of each sentinel in a `SENTINEL sentinels` reply (an array of flat
/// field/value arrays, or RESP3 maps); entries without both are skipped.
fn sentinels(frame: &Bytes) -> Vec<String> {
    let Some(entries) = array_elements(frame) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let fields = array_elements(entry)?;
            let mut ip = None;
            let mut port = None;
            for pair in fields.chunks_exact(2) {
                match text(&pair[0])?.0 {
                    b"ip" => ip = text(&pair[1]).map(|(t, _)| t.to_vec()),
                    b"port" => port = text(&pair[1]).map(|(t, _)| t.to_vec()),
                    _ => {}
                }
            }
            join(&ip?, &port?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_master_address_reply_is_read_and_a_null_or_error_is_none() {
        let reply = frame("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n");
        assert_eq!(master_address(&reply).as_deref(), Some("127.0.0.1:6379"));
        let v6 = frame("*2\r\n$3\r\n::1\r\n$4\r\n6379\r\n");
        assert_eq!(master_address(&v6).as_deref(), Some("[::1]:6379"));
        assert_eq!(master_address(&frame("*-1\r\n")), None);
        assert_eq!(master_address(&frame("$-1\r\n")), None);
        assert_eq!(master_address(&frame("-ERR no such master\r\n")), None);
        let bad_port = frame("*2\r\n$9\r\n127.0.0.1\r\n$1\r\nx\r\n");
        assert_eq!(master_address(&bad_port), None);
    }

    #[test]
    fn the_sentinels_reply_gives_each_ip_and_port() {
        let reply = frame(concat!(
            "*2\r\n",
            "*6\r\n$4\r\nname\r\n$2\r\nab\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$5\r\n26380\r\n",
            "*2\r\n$4\r\nname\r\n$2\r\ncd\r\n",
        ));
        assert_eq!(sentinels(&reply), vec!["127.0.0.1:26380".to_owned()]);
        assert!(sentinels(&frame("-ERR x\r\n")).is_empty());
    }

    #[tokio::test]
    async fn a_reply_naming_many_sentinels_adds_at_most_max_learned() {
        let entry = |i: usize| {
            let port = (27000 + i).to_string();
            format!(
                "*4\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$4\r\nport\r\n${}\r\n{port}\r\n",
                port.len()
            )
        };
        let reply = format!("*100\r\n{}", (0..100).map(entry).collect::<String>());
        let options = super::super::SentinelOptions {
            addresses: vec!["s1:26379".into(), "s2:26379".into()],
            master: "m".into(),
            sentinel_credentials: crate::upstream::CredentialSource::fixed(None),
            data_credentials: crate::upstream::CredentialSource::fixed(None),
            connect_timeout: std::time::Duration::from_secs(1),
            recheck: std::time::Duration::from_secs(1),
        };
        let endpoint = crate::upstream::endpoint::Endpoint::unknown();
        let sentinel = Sentinel::new(
            options,
            endpoint,
            crate::upstream::outbound::Outbound::new(),
        );
        let aliases = HashSet::from(["10.0.0.1:27005".to_owned()]);
        sentinel.learn(&frame(&reply), &aliases);
        sentinel.learn(&frame(&reply), &aliases);
        let known = sentinel.known.lock().clone();
        assert_eq!(known.len(), 2 + MAX_LEARNED);
        assert_eq!(&known[..2], ["s1:26379", "s2:26379"]);
        assert_eq!(known[2], "10.0.0.1:27000");
        assert!(
            !known.contains(&"10.0.0.1:27005".to_owned()),
            "an alias is not learned"
        );
    }

    #[test]
    fn role_names_the_first_element_or_the_error() {
        let master = frame("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
        assert_eq!(role(&master), "master");
        assert_eq!(role(&frame("-NOAUTH x\r\n")), "-NOAUTH x");
    }
}
