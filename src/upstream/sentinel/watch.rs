//! One sentinel's `+switch-master` subscription, on a connection of its own, reconnected
//! with backoff for as long as the process runs. A message for our master starts a
//! discovery round (which checks `ROLE` before it switches). A subscription that stays
//! silent past a few PINGs is taken as lost (a sentinel that hangs without closing).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::super::backoff::Backoff;
use super::super::handshake::read_frame;
use super::ask::open;
use super::Sentinel;
use crate::protocol::decode::{array_elements, is_error, text};
use crate::protocol::write_command;

/// How often a subscription is PINGed; one silent for [`SILENT_PINGS`] of them is lost.
const PING_EVERY: Duration = Duration::from_secs(1);
/// PINGs without a frame before a subscription counts as lost.
const SILENT_PINGS: u32 = 3;

/// The channel Sentinel announces a new primary on.
const SWITCH_MASTER: &[u8] = b"+switch-master";

/// Counts a subscription as reachable while it lives.
struct Reachable<'a>(&'a Sentinel);

impl Drop for Reachable<'_> {
    fn drop(&mut self) {
        self.0.reachable.fetch_sub(1, Relaxed);
    }
}

impl Sentinel {
    /// Keeps `address` subscribed until the process ends.
    pub(super) async fn watch(self: Arc<Self>, address: String) {
        let seed = address
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
        let mut backoff = Backoff::new(seed);
        loop {
            match self.subscribed(&address, &mut backoff).await {
                Ok(()) => {}
                Err(why) => {
                    tracing::debug!(sentinel = %address, "sentinel subscription: {}", self.redact(&why))
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One subscription's life: returns once it is lost (`Err` says why).
    async fn subscribed(&self, address: &str, backoff: &mut Backoff) -> Result<(), String> {
        let timeout = self.options.connect_timeout;
        let setup = async {
            let (mut stream, mut buf) = open(
                &self.outbound,
                address,
                self.options.sentinel_credentials.current().as_ref(),
                timeout,
            )
            .await?;
            let mut subscribe = bytes::BytesMut::new();
            write_command(&mut subscribe, &[b"SUBSCRIBE", SWITCH_MASTER]);
            stream.send(&subscribe).await.map_err(|e| e.to_string())?;
            let reply = read_frame(&mut stream, &mut buf)
                .await
                .map_err(|e| e.to_string())?;
            if is_error(&reply) {
                return Err(String::from_utf8_lossy(&reply).trim_end().to_owned());
            }
            Ok((stream, buf))
        };
        let (mut stream, mut buf) = tokio::time::timeout(timeout, setup)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))?;
        self.reachable.fetch_add(1, Relaxed);
        let _reachable = Reachable(self);
        backoff.reset();
        // A message may have been missed while the subscription was down.
        self.nudge.notify_one();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut silent = 0;
        loop {
            let frame = tokio::select! {
                frame = read_frame(&mut stream, &mut buf) => Some(frame.map_err(|e| e.to_string())?),
                _ = ping.tick() => None,
            };
            match frame {
                Some(frame) => {
                    silent = 0;
                    self.heard(&frame);
                }
                None => {
                    silent += 1;
                    if silent > SILENT_PINGS {
                        return Err("no reply to PING".to_owned());
                    }
                    let mut out = bytes::BytesMut::new();
                    write_command(&mut out, &[b"PING"]);
                    stream.send(&out).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// A frame on the subscription: a `+switch-master` message for our master (`<master>
    /// <old ip> <old port> <new ip> <new port>`) starts a round.
    fn heard(&self, frame: &bytes::Bytes) {
        let Some(elements) = array_elements(frame) else {
            return;
        };
        let [kind, channel, payload] = elements.as_slice() else {
            return;
        };
        let is_message = text(kind).is_some_and(|(k, _)| k.eq_ignore_ascii_case(b"message"));
        let on_switch = text(channel).is_some_and(|(c, _)| c == SWITCH_MASTER);
        let Some((payload, _)) = text(payload) else {
            return;
        };
        let master = self.options.master.as_bytes();
        let ours = payload
            .strip_prefix(master)
            .is_some_and(|rest| rest.first() == Some(&b' '));
        if is_message && on_switch && ours {
            tracing::info!(
                master = %self.options.master,
                "+switch-master: {}; asking the sentinels",
                String::from_utf8_lossy(payload)
            );
            self.nudge.notify_one();
        }
    }
}
