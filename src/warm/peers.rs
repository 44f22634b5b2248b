//! Warming from peers, over the invalidation bus (`H?` and `H` messages, see
//! `control::bus`): a starting sidecar asks the running ones for their hottest keys and
//! collects the answers for `[warm] peer_wait`; a running sidecar answers each asker once
//! with its hot-key sketch's top. Only key names travel: the asker fetches the values from
//! the upstream (the source of truth), through the bounded warm fetch.
//!
//! Bounded, so that asks cannot be turned into a flood: asks are answered only on a keyed
//! bus (`--bus-key-file`: only authenticated asks reach here), each peer after a random
//! delay within [`ANSWER_SPREAD`] and only while no answer to that asker has gone by on
//! the bus (answers travel on the shared channel, so every peer sees
//! them): the fleet's answers to one ask do not grow with the fleet. Each peer answers at
//! most [`MAX_ANSWERS_PER_SECOND`] a second and each asker once.

use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::control::{Bus, HotKeyPeers};
use crate::profiler::hotkeys::HotKeys;

/// Key bytes an answer carries at most (hottest keys first; the rest are left out).
pub const MAX_ANSWER_BYTES: usize = 256 << 10;
/// Askers remembered as answered (a sidecar's sender id changes with every start).
const ANSWERED_MEMORY: usize = 256;
/// Answers one sidecar sends per second at most.
pub const MAX_ANSWERS_PER_SECOND: usize = 4;
/// Answers to one ask after which the other peers stay silent (a few more may cross on
/// the wire). One is enough: a fleet's sidecars serve the same application.
pub const ANSWERERS: usize = 1;
/// Answers are spread over this long after the ask (well within `[warm] peer_wait`).
pub const ANSWER_SPREAD: Duration = Duration::from_millis(400);

/// What this sidecar answers with: its sketch, how many keys at most, its database.
struct Source {
    hot: Arc<HotKeys>,
    most: usize,
    db: u32,
}

/// The answers collected for this sidecar's own ask.
struct Collected {
    db: u32,
    want: usize,
    keys: Vec<Bytes>,
    seen: HashSet<Bytes>,
    answers: usize,
}

/// The peer exchange the control connection feeds (held by the [`super::Warmer`], handed to
/// the control plane as its [`HotKeyPeers`]).
#[derive(Default)]
pub struct PeerExchange {
    source: OnceLock<Source>,
    collecting: Mutex<Option<Collected>>,
    answered: Mutex<Answered>,
    /// Answers seen on the bus per asker (other sidecars' asks), oldest asker first.
    seen: Mutex<VecDeque<(Bytes, usize)>>,
}

/// Who was answered, and when the last answers went.
#[derive(Default)]
struct Answered {
    askers: VecDeque<Bytes>,
    /// The start of the current one-second window and the answers sent in it.
    window: Option<(Instant, usize)>,
}

impl Answered {
    /// Whether `asker` may be answered now (recorded if so).
    fn admit(&mut self, asker: &Bytes, now: Instant) -> bool {
        if self.askers.contains(asker) {
            return false;
        }
        let (start, sent) = self.window.get_or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            (*start, *sent) = (now, 0);
        }
        if *sent >= MAX_ANSWERS_PER_SECOND {
            return false;
        }
        *sent += 1;
        if self.askers.len() == ANSWERED_MEMORY {
            self.askers.pop_front();
        }
        self.askers.push_back(asker.clone());
        true
    }
}

impl PeerExchange {
    /// Answers asks with up to `most` keys of `hot`'s top, as keys of database `db`.
    pub fn serve(&self, hot: Arc<HotKeys>, most: usize, db: u32) {
        let _ = self.source.set(Source { hot, most, db });
    }

    /// A peer asks for hot keys: `Some(delay)` when this sidecar may answer (keyed bus, a
    /// source to answer from, not its own ask, within [`MAX_ANSWERS_PER_SECOND`], first
    /// time for this asker); then [`PeerExchange::answer`] is called after `delay`.
    pub fn asked(&self, bus: &Bus, asker: &Bytes) -> Option<Duration> {
        self.source.get()?;
        if asker == bus.sender() || !bus.keyed() {
            return None;
        }
        let mut answered = self.answered.lock();
        let now = Instant::now();
        if !answered.admit(asker, now) {
            return None;
        }
        Some(spread(asker, bus.sender()))
    }

    /// Answers `asker` with up to `wanted` hot keys, within [`MAX_ANSWER_BYTES`], unless
    /// [`ANSWERERS`] answers to it went by meanwhile.
    pub fn answer(&self, bus: &Bus, asker: Bytes, wanted: usize) {
        let Some(source) = self.source.get() else {
            return;
        };
        if self.answers_seen(&asker) >= ANSWERERS {
            return;
        }
        let keys = answer(&source.hot, wanted.min(source.most));
        bus.answer_hot(asker, source.db, keys);
    }

    fn answers_seen(&self, asker: &[u8]) -> usize {
        let seen = self.seen.lock();
        seen.iter().find(|(a, _)| a == asker).map_or(0, |(_, n)| *n)
    }

    /// An answer arrived: kept if it answers this sidecar's ask, for its database.
    pub fn answered(&self, bus: &Bus, asker: &[u8], db: u32, keys: Vec<Bytes>) {
        if asker != &bus.sender()[..] {
            let mut seen = self.seen.lock();
            match seen.iter_mut().find(|(a, _)| a == asker) {
                Some((_, n)) => *n += 1,
                None => {
                    if seen.len() == ANSWERED_MEMORY {
                        seen.pop_front();
                    }
                    seen.push_back((Bytes::copy_from_slice(asker), 1));
                }
            }
            return;
        }
        let mut collecting = self.collecting.lock();
        let Some(c) = collecting.as_mut().filter(|c| c.db == db) else {
            return;
        };
        c.answers += 1;
        for key in keys {
            if c.keys.len() >= c.want {
                break;
            }
            if c.seen.insert(key.clone()) {
                c.keys.push(key);
            }
        }
    }

    /// Starts collecting answers: up to `want` distinct keys of database `db`.
    pub fn begin(&self, want: usize, db: u32) {
        *self.collecting.lock() = Some(Collected {
            db,
            want,
            keys: Vec::new(),
            seen: HashSet::new(),
            answers: 0,
        });
    }

    /// Stops collecting: the keys (first answers first) and how many answers came.
    pub fn finish(&self) -> (Vec<Bytes>, usize) {
        let taken = self.collecting.lock().take();
        taken.map_or((Vec::new(), 0), |c| (c.keys, c.answers))
    }
}

/// A delay in `0..ANSWER_SPREAD`, different for each pair of asker and answerer.
fn spread(asker: &[u8], me: &[u8]) -> Duration {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((asker, me));
    let ms = ANSWER_SPREAD.as_millis() as u64;
    Duration::from_millis(h % ms.max(1))
}

/// The `n` hottest keys, hottest first, within [`MAX_ANSWER_BYTES`].
fn answer(hot: &HotKeys, n: usize) -> Vec<Bytes> {
    let mut bytes = 0;
    hot.top(n)
        .into_iter()
        .map(|(key, _)| key)
        .take_while(|key| {
            bytes += key.len() + 8;
            bytes <= MAX_ANSWER_BYTES
        })
        .collect()
}

impl HotKeyPeers for PeerExchange {
    fn asked(&self, bus: &Bus, asker: &Bytes) -> Option<Duration> {
        PeerExchange::asked(self, bus, asker)
    }
    fn answer(&self, bus: &Bus, asker: Bytes, wanted: usize) {
        PeerExchange::answer(self, bus, asker, wanted)
    }
    fn answered(&self, bus: &Bus, asker: &[u8], db: u32, keys: Vec<Bytes>) {
        PeerExchange::answered(self, bus, asker, db, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::bus::auth::ENVELOPE_LEN;
    use crate::control::bus::{decode, Body};

    #[test]
    fn an_open_bus_answers_no_ask() {
        let bus = Bus::new("c");
        let peers = PeerExchange::default();
        peers.serve(sketch(&[b"a", b"b"]), 10, 0);
        assert_eq!(peers.asked(&bus, &Bytes::from_static(b"x")), None);
    }

    #[test]
    fn a_peer_stays_silent_once_enough_answers_went_by() {
        let bus = Bus::new("c");
        bus.set_keys(vec![b"0123456789abcdef0123".to_vec()]);
        let peers = PeerExchange::default();
        peers.serve(sketch(&[b"a", b"b"]), 10, 0);
        let x = Bytes::from_static(b"x");
        assert!(peers.asked(&bus, &x).is_some());
        for _ in 0..ANSWERERS {
            peers.answered(&bus, b"x", 0, vec![Bytes::from_static(b"k")]);
        }
        peers.answer(&bus, x, 2);
        assert!(bus.take().is_empty(), "{ANSWERERS} answers already went by");
    }

    fn sketch(keys: &[&[u8]]) -> Arc<HotKeys> {
        let hot = Arc::new(HotKeys::new());
        for (i, k) in keys.iter().enumerate() {
            for _ in 0..(keys.len() - i) * 3 {
                hot.record(k);
            }
        }
        hot
    }

    #[test]
    fn an_asker_is_answered_once_with_the_hottest_keys() {
        let bus = Bus::new("c");
        bus.set_keys(vec![b"0123456789abcdef0123".to_vec()]);
        let peers = PeerExchange::default();
        let x = Bytes::from_static(b"x");
        assert_eq!(peers.asked(&bus, &x), None, "no source yet: no answer");
        peers.serve(sketch(&[b"a", b"b", b"c"]), 10, 4);
        assert!(peers.asked(&bus, &x).unwrap() < ANSWER_SPREAD);
        assert_eq!(peers.asked(&bus, &x), None, "answered once");
        assert_eq!(peers.asked(&bus, bus.sender()), None, "not its own ask");
        peers.answer(&bus, x.clone(), 2);
        let sent = bus.take();
        assert_eq!(sent.len(), 1);
        // The keys travel sealed: readable by a peer holding the key only.
        let raw = decode(&sent[0].slice(ENVELOPE_LEN..)).unwrap().body;
        let Body::HotKeys { keys: sealed, .. } = raw else {
            panic!("{raw:?}")
        };
        assert_eq!(sealed.len(), 1);
        let peer = Bus::new("c");
        peer.set_keys(vec![b"0123456789abcdef0123".to_vec()]);
        let body = peer.receive(&sent[0]).unwrap().unwrap();
        let keys = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let asker = Bytes::from_static(b"x");
        assert_eq!(body, Body::HotKeys { asker, db: 4, keys });
        let outsider = Bus::new("c");
        outsider.set_keys(vec![b"another-key-0123456789".to_vec()]);
        assert_eq!(outsider.receive(&sent[0]), Ok(None));
    }

    #[test]
    fn answers_are_bounded_per_second_and_askers_remembered() {
        let mut answered = Answered::default();
        let t0 = Instant::now();
        let asker = |i: usize| Bytes::from(format!("asker{i}"));
        for i in 0..MAX_ANSWERS_PER_SECOND {
            assert!(answered.admit(&asker(i), t0));
        }
        assert!(!answered.admit(&asker(1000), t0));
        let later = t0 + Duration::from_secs(1);
        assert!(answered.admit(&asker(1000), later));
        assert!(!answered.admit(&asker(3), later), "answered once");
        for i in 0..2 * ANSWERED_MEMORY {
            answered.admit(&asker(2000 + i), later + Duration::from_secs(i as u64));
        }
        assert_eq!(answered.askers.len(), ANSWERED_MEMORY);
    }

    #[test]
    fn answers_are_bounded_in_bytes() {
        let hot = HotKeys::with_capacity(4096);
        for i in 0..4096u32 {
            hot.record(format!("{i:0>500}").as_bytes());
        }
        let keys = answer(&hot, 4096);
        assert!(!keys.is_empty());
        assert!(keys.iter().map(|k| k.len() + 8).sum::<usize>() <= MAX_ANSWER_BYTES);
    }

    #[test]
    fn only_answers_to_this_sidecar_in_its_database_are_collected() {
        let bus = Bus::new("c");
        let peers = PeerExchange::default();
        let me = bus.sender().clone();
        let k = |s: &'static [u8]| Bytes::from_static(s);
        peers.answered(&bus, &me, 0, vec![k(b"early")]);
        peers.begin(3, 0);
        peers.answered(&bus, b"someone-else", 0, vec![k(b"other")]);
        peers.answered(&bus, &me, 1, vec![k(b"db1")]);
        peers.answered(&bus, &me, 0, vec![k(b"a"), k(b"b")]);
        peers.answered(&bus, &me, 0, vec![k(b"b"), k(b"c"), k(b"d")]);
        assert_eq!(peers.finish(), (vec![k(b"a"), k(b"b"), k(b"c")], 2));
        assert_eq!(peers.finish(), (vec![], 0));
    }
}
