//! What a receiver remembers of each sender on the bus: its last sequence number (for gaps
//! and replays), whether its sequence is followed since the subscription began, and when it
//! was last heard from. Bounded: at most [`MAX_SENDERS`] are remembered.

use std::collections::HashMap;

use bytes::Bytes;

/// Senders remembered at most; past it, those not heard from within [`REPLAY_WINDOW_MS`]
/// are forgotten (and if that is not enough, all of them: gaps are then judged afresh).
pub const MAX_SENDERS: usize = 4096;
/// How old a message from a sender not remembered may be (publish time against the clock
/// here, either way) and still be taken as new; the clocks of a fleet agree far better.
pub const REPLAY_WINDOW_MS: u64 = 120_000;
/// A sender heard from within this long counts as a live peer.
const LIVE_MS: u64 = 60_000;

/// What to do with a message, from its sender and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Next in its sender's sequence, or a sender's first message: act on it.
    Fresh,
    /// Keyed bus: a sequence number not above the last one seen from its sender.
    Replayed,
    /// Keyed bus: the first message heard from a sender, published outside the window.
    Unknown,
    /// A gap after the given sequence number: messages were lost.
    Gap(u64),
}

struct Sender {
    last: u64,
    /// Gaps are judged (the sequence has been followed since the subscription began).
    followed: bool,
    heard_ms: u64,
    keyed: bool,
}

/// The senders heard from.
#[derive(Default)]
pub struct Senders {
    map: HashMap<Bytes, Sender>,
}

impl Senders {
    /// A message from `sender` with `seq`, published at `sent_ms`, received at `now_ms`.
    ///
    /// On an open bus (`keyed` false) every sequence number is taken and anything but the
    /// next one is a gap, as anyone may write there (dropping "replays" would let a forger
    /// who sends a peer's id with a huge number mute that peer). On a keyed bus only
    /// authenticated messages come here: a number not above the last is a replay.
    pub fn admit(
        &mut self,
        sender: &Bytes,
        seq: u64,
        sent_ms: Option<u64>,
        now_ms: u64,
        keyed: bool,
    ) -> Admit {
        if let Some(s) = self.map.get_mut(sender) {
            if keyed && seq <= s.last {
                return Admit::Replayed;
            }
            let gap = s.followed && s.last.checked_add(1) != Some(seq);
            let last = s.last;
            (s.last, s.followed, s.heard_ms, s.keyed) = (seq, true, now_ms, keyed);
            return if gap { Admit::Gap(last) } else { Admit::Fresh };
        }
        if keyed {
            let sent = sent_ms.unwrap_or(0);
            if sent.abs_diff(now_ms) > REPLAY_WINDOW_MS {
                return Admit::Unknown;
            }
        }
        if self.map.len() >= MAX_SENDERS {
            self.map
                .retain(|_, s| now_ms.saturating_sub(s.heard_ms) <= REPLAY_WINDOW_MS);
            if self.map.len() >= MAX_SENDERS {
                self.map.clear();
            }
        }
        let heard = Sender {
            last: seq,
            followed: true,
            heard_ms: now_ms,
            keyed,
        };
        self.map.insert(sender.clone(), heard);
        Admit::Fresh
    }

    /// A new subscription: messages published meanwhile were missed, so gaps are judged
    /// from each sender's next message on (the last numbers stay, for replays).
    pub fn resubscribed(&mut self) {
        self.map.values_mut().for_each(|s| s.followed = false);
    }

    /// Authenticated senders heard from within the last minute.
    pub fn live(&self, now_ms: u64) -> usize {
        self.map
            .values()
            .filter(|s| s.keyed && now_ms.saturating_sub(s.heard_ms) <= LIVE_MS)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn keyed_bus_drops_replays_and_judges_gaps() {
        let mut s = Senders::default();
        let a = Bytes::from_static(b"a");
        assert_eq!(s.admit(&a, 5, Some(NOW), NOW, true), Admit::Fresh);
        assert_eq!(s.admit(&a, 6, Some(NOW), NOW, true), Admit::Fresh);
        assert_eq!(s.admit(&a, 6, Some(NOW), NOW, true), Admit::Replayed);
        assert_eq!(s.admit(&a, 2, Some(NOW), NOW, true), Admit::Replayed);
        assert_eq!(s.admit(&a, 8, Some(NOW), NOW, true), Admit::Gap(6));
        s.resubscribed();
        assert_eq!(s.admit(&a, 8, Some(NOW), NOW, true), Admit::Replayed);
        assert_eq!(
            s.admit(&a, 20, Some(NOW), NOW, true),
            Admit::Fresh,
            "after a resubscribe"
        );
        assert_eq!(s.live(NOW), 1);
        assert_eq!(s.live(NOW + LIVE_MS + 1), 0);
    }

    #[test]
    fn keyed_bus_takes_unknown_senders_only_within_the_window() {
        let mut s = Senders::default();
        let old = NOW - REPLAY_WINDOW_MS - 1;
        let b = Bytes::from_static(b"b");
        assert_eq!(s.admit(&b, 1, Some(old), NOW, true), Admit::Unknown);
        assert_eq!(s.admit(&b, 1, Some(NOW + 1000), NOW, true), Admit::Fresh);
    }

    #[test]
    fn open_bus_counts_any_other_number_as_a_gap() {
        let mut s = Senders::default();
        let a = Bytes::from_static(b"a");
        assert_eq!(s.admit(&a, 1, None, NOW, false), Admit::Fresh);
        assert_eq!(s.admit(&a, 1, None, NOW, false), Admit::Gap(1));
        assert_eq!(s.admit(&a, 2, None, NOW, false), Admit::Fresh);
        assert_eq!(s.live(NOW), 0, "open-bus senders are not counted as peers");
    }

    #[test]
    fn senders_are_bounded() {
        let mut s = Senders::default();
        for i in 0..MAX_SENDERS + 10 {
            let id = Bytes::from(format!("s{i}"));
            s.admit(&id, 1, Some(NOW), NOW, true);
        }
        assert!(s.map.len() <= MAX_SENDERS);
    }
}
