//! A bus message arriving: its size bound, its envelope verified (on a keyed bus), decoded,
//! its sender's sequence admitted (own, replayed and gapped messages told apart), counted.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;

use super::keys::unseal_hot_keys;
use super::senders::Admit;
use super::{auth, decode, now_ms, Body, Bus, MAX_MESSAGE_BYTES};
use crate::glob::{MAX_PATTERNS, MAX_PATTERN_BYTES};

impl Bus {
    /// A message arrived: `Ok(Some(body))` to apply, `Ok(None)` to skip (own, malformed,
    /// unauthenticated, replayed or oversized), `Err` on a gap in the sender's sequence.
    pub(crate) fn receive(&self, payload: &Bytes) -> Result<Option<Body>, String> {
        let c = &self.counters;
        if payload.len() > MAX_MESSAGE_BYTES {
            c.oversized.fetch_add(1, Relaxed);
            return Ok(None);
        }
        let keys = self.keys();
        let (start, key_index) = match &keys {
            Some(keys) => match keys.open(payload) {
                Ok(opened) => opened,
                Err(_) => {
                    c.unauthenticated.fetch_add(1, Relaxed);
                    return Ok(None);
                }
            },
            None => (auth::skip_envelope(payload), 0),
        };
        let message = decode(&payload.slice(start..)).and_then(|mut m| {
            if let (
                Some(keys),
                Body::HotKeys {
                    asker,
                    db,
                    keys: sealed,
                },
            ) = (&keys, &mut m.body)
            {
                *sealed = unseal_hot_keys(keys, key_index, asker, *db, sealed)?;
            }
            Some(m)
        });
        let Some(message) = message else {
            c.malformed.fetch_add(1, Relaxed);
            return Ok(None);
        };
        let keyed = keys.is_some();
        if keyed && (message.origin.is_none() || message.sent_ms.is_none()) {
            c.unauthenticated.fetch_add(1, Relaxed);
            return Ok(None);
        }
        if let Some((sender, seq)) = &message.origin {
            if *sender == self.sender {
                c.own_skipped.fetch_add(1, Relaxed);
                return Ok(None);
            }
            let now = now_ms();
            let mut peers = self.peers.lock();
            match peers.admit(sender, *seq, message.sent_ms, now, keyed) {
                Admit::Fresh => {}
                // An old authentic message from a sender not heard from: evictions are
                // harmless to repeat, a flush or a hot-key exchange is not.
                Admit::Unknown if matches!(message.body, Body::Keys(..) | Body::Patterns(_)) => {}
                Admit::Unknown | Admit::Replayed => {
                    c.replayed.fetch_add(1, Relaxed);
                    return Ok(None);
                }
                Admit::Gap(last) => {
                    c.sequence_gaps.fetch_add(1, Relaxed);
                    let sender = String::from_utf8_lossy(sender);
                    return Err(format!(
                        "gap in the bus sequence of sidecar {sender} ({last} then {seq})"
                    ));
                }
            }
        }
        if let Some(sent) = message.sent_ms {
            let lag = now_ms().saturating_sub(sent);
            c.lag_last_ms.store(lag, Relaxed);
            c.lag_max_ms.fetch_max(lag, Relaxed);
            c.lag.observe(Duration::from_millis(lag));
        }
        let body = match message.body {
            Body::Patterns(p)
                if p.len() > MAX_PATTERNS || p.iter().any(|p| p.len() > MAX_PATTERN_BYTES) =>
            {
                c.oversized_patterns.fetch_add(1, Relaxed);
                Body::Flush
            }
            body => body,
        };
        match &body {
            Body::Keys(_, keys) => {
                c.received_keys.fetch_add(1, Relaxed);
                c.keys_received.fetch_add(keys.len() as u64, Relaxed);
            }
            Body::Patterns(_) => _ = c.received_patterns.fetch_add(1, Relaxed),
            Body::Flush => {
                c.received_flushes.fetch_add(1, Relaxed);
                c.flushes.fetch_add(1, Relaxed);
            }
            Body::HotAsk { .. } => _ = c.received_hot_asks.fetch_add(1, Relaxed),
            Body::HotKeys { .. } => _ = c.received_hot_answers.fetch_add(1, Relaxed),
        }
        Ok(Some(body))
    }
}
