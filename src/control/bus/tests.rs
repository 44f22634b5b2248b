//! Unit tests of `bus`.

use super::*;

/// Decodes a copy of `payload`.
fn dec(payload: &[u8]) -> Option<Message> {
    decode(&Bytes::copy_from_slice(payload))
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

#[test]
fn messages_round_trip_with_binary_keys() {
    let bodies = [
        Body::Keys(Some(3), vec![b(b"a b"), b(b"\r\n:7"), b(b"")]),
        Body::Keys(None, vec![b(b"k")]),
        Body::Patterns(vec![b(b"user:*"), b(b"x[ ]y")]),
        Body::Flush,
    ];
    for body in bodies {
        let m = dec(&encode(b"abc", 7, 1234, &body)).unwrap();
        assert_eq!(m.origin, Some((b(b"abc"), 7)));
        assert_eq!(m.sent_ms, Some(1234));
        assert_eq!(m.body, body);
    }
}

#[test]
fn foreign_messages_need_no_sender_and_bad_ones_are_refused() {
    let m = dec(b"v1 - - - P 6:user:*").unwrap();
    assert_eq!(m.origin, None);
    assert_eq!(m.body, Body::Patterns(vec![b(b"user:*")]));
    assert_eq!(dec(b"v1 - - - F").unwrap().body, Body::Flush);
    let k = dec(b"v1 - - - K 0 1:a 2:bc").unwrap();
    assert_eq!(k.body, Body::Keys(Some(0), vec![b(b"a"), b(b"bc")]));
    for bad in [
        &b"v2 - - - F"[..],
        b"v1 - - - F x",
        b"v1 - - - P",
        b"v1 - - - P 7:user:*",
        b"v1 - - - P 3:abcd",
        b"v1 - x - F",
        b"v1 - - - K x 1:a",
        b"v1 - - - Q",
        b"",
        // Lengths past the end of the message, or of the address space.
        b"v1 - - - P 18446744073709551615:a",
        b"v1 - - - K 0 9999999999999999999:a",
        b"v1 - - - H x 0 18446744073709551614:ab",
    ] {
        assert_eq!(dec(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn own_messages_are_skipped_and_gaps_reported() {
    let bus = Bus::new("c");
    let own = encode(bus.sender(), 1, now_ms(), &Body::Flush);
    assert_eq!(bus.receive(&own), Ok(None));
    assert_eq!(bus.counters.own_skipped.load(Relaxed), 1);
    let peer = |seq| encode(b"peer", seq, now_ms(), &Body::Flush);
    assert_eq!(bus.receive(&peer(5)), Ok(Some(Body::Flush)));
    assert_eq!(bus.receive(&peer(6)), Ok(Some(Body::Flush)));
    assert!(bus.receive(&peer(8)).is_err());
    assert_eq!(bus.counters.sequence_gaps.load(Relaxed), 1);
    // A new subscription starts every sequence afresh.
    bus.set_subscribed(true);
    assert_eq!(bus.receive(&peer(20)), Ok(Some(Body::Flush)));
}

#[test]
fn written_keys_are_batched_per_database() {
    let bus = Bus::new("c");
    bus.key_written(0, &b(b"a"));
    bus.key_written(0, &b(b"b"));
    assert!(!bus.batch_full());
    bus.key_written(1, &b(b"c"));
    assert!(bus.batch_full());
    let sent: Vec<_> = bus.take().iter().map(|m| dec(m).unwrap()).collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, Body::Keys(Some(0), vec![b(b"a"), b(b"b")]));
    assert_eq!(sent[1].origin.as_ref().unwrap().1, 2);
    assert!(bus.take().is_empty());
}

#[test]
fn hot_key_asks_and_answers_round_trip() {
    let bodies = [
        Body::HotAsk {
            asker: b(b"0123abcd"),
            wanted: 1024,
        },
        Body::HotKeys {
            asker: b(b"0123abcd"),
            db: 3,
            keys: vec![b(b"a b"), b(b"\r\n:7"), b(b"")],
        },
    ];
    for body in bodies {
        let m = dec(&encode(b"peer", 9, 1234, &body)).unwrap();
        assert_eq!(m.origin, Some((b(b"peer"), 9)));
        assert_eq!(m.body, body);
    }
    let ask = dec(b"v1 - - - H? me 99999999").unwrap().body;
    assert_eq!(
        ask,
        Body::HotAsk {
            asker: b(b"me"),
            wanted: MAX_HOT_KEYS
        }
    );
}

#[test]
fn malformed_hot_key_messages_are_refused_without_panic() {
    for bad in [
        &b"v1 - - - H?"[..],
        b"v1 - - - H? me",
        b"v1 - - - H? me 0",
        b"v1 - - - H? me -1",
        b"v1 - - - H? me 12 x",
        b"v1 - - - H? me 99999999999999999999",
        b"v1 - - - H?  5",
        b"v1 - - - H",
        b"v1 - - - H me",
        b"v1 - - - H me 0",
        b"v1 - - - H me x 1:a",
        b"v1 - - - H me 4294967296 1:a",
        b"v1 - - - H me 0 2:a",
        b"v1 - - - H me 0 1:ab",
        b"v1 - - - H me 0 99999999999999999999:a",
        b"v1 - - - H me 0 1:a  1:b",
        b"v1 - - - H! me 0 1:a",
    ] {
        assert_eq!(dec(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    let mut many = b"v1 - - - H me 0".to_vec();
    for _ in 0..=MAX_HOT_KEYS {
        many.extend_from_slice(b" 1:k");
    }
    assert_eq!(dec(&many), None);
    // Fuzz-ish: every prefix and every one-byte change of good messages decodes or not,
    // never panics.
    let good = encode(
        b"peer",
        1,
        2,
        &Body::HotKeys {
            asker: b(b"me"),
            db: 0,
            keys: vec![b(b"key:1"), b(b"k2")],
        },
    );
    for cut in 0..good.len() {
        let _ = dec(&good[..cut]);
        for byte in [b' ', b':', b'9', b'H', b'?', 0xff] {
            let mut changed = good.to_vec();
            changed[cut] = byte;
            let _ = dec(&changed);
        }
    }
}

#[test]
fn asks_and_answers_are_queued_counted_and_published() {
    let bus = Bus::new("c");
    bus.ask_hot(10);
    bus.answer_hot(b(b"other"), 2, vec![b(b"k")]);
    bus.answer_hot(b(b"other"), 2, vec![]);
    let sent: Vec<_> = bus.take().iter().map(|m| dec(m).unwrap()).collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].body,
        Body::HotAsk {
            asker: bus.sender().clone(),
            wanted: 10
        }
    );
    assert_eq!(bus.counters.sent_hot_asks.load(Relaxed), 1);
    assert_eq!(bus.counters.sent_hot_answers.load(Relaxed), 1);
    let peer = encode(b"peer", 1, now_ms(), &sent[1].body);
    assert!(matches!(bus.receive(&peer), Ok(Some(Body::HotKeys { .. }))));
    assert_eq!(bus.counters.received_hot_answers.load(Relaxed), 1);
}
