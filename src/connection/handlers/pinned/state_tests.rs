use bytes::Bytes;

use super::*;
use crate::command::WrittenKey;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

fn keys(names: &[&str]) -> Invalidation {
    Invalidation::Keys(
        names
            .iter()
            .map(|k| WrittenKey {
                db: 0,
                key: b(k),
                seen: 0,
            })
            .collect(),
    )
}

fn reply(state: &mut PinState, frame: &str) -> Vec<Applied> {
    match state.receive(&b(frame)) {
        Frame::Reply { applied, .. } => applied,
        other => panic!("{frame:?}: {other:?}"),
    }
}

#[test]
fn a_transaction_evicts_at_exec_and_only_when_it_ran() {
    let mut s = PinState::new(0, Resp::V2);
    s.sent(Effect::Multi, false);
    s.sent(Effect::Plain(keys(&["a"])), false);
    s.sent(Effect::Plain(keys(&["b"])), false);
    s.sent(Effect::Exec, false);
    assert!(reply(&mut s, "+OK\r\n").is_empty());
    assert!(
        reply(&mut s, "+QUEUED\r\n").is_empty(),
        "queued: nothing yet"
    );
    assert!(reply(&mut s, "+QUEUED\r\n").is_empty());
    assert!(!s.clean());
    let applied = reply(&mut s, "*2\r\n+OK\r\n-ERR wrong\r\n");
    assert_eq!(
        applied,
        vec![Applied::Evict(keys(&["a"])), Applied::Evict(keys(&["b"]))]
    );
    assert!(s.clean());

    // Aborted by a WATCHed key: nothing is evicted, the watch is gone.
    s.sent(Effect::Watch, false);
    s.sent(Effect::Multi, false);
    s.sent(Effect::Plain(keys(&["a"])), false);
    s.sent(Effect::Exec, false);
    for r in ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"] {
        assert!(reply(&mut s, r).is_empty());
    }
    assert!(reply(&mut s, "*-1\r\n").is_empty());
    assert!(s.clean());

    // EXECABORT after a queued error.
    s.sent(Effect::Multi, false);
    s.sent(Effect::Plain(keys(&["a"])), false);
    s.sent(Effect::Plain(Invalidation::None), false);
    s.sent(Effect::Exec, false);
    reply(&mut s, "+OK\r\n");
    reply(&mut s, "+QUEUED\r\n");
    reply(&mut s, "-ERR unknown command\r\n");
    assert!(reply(&mut s, "-EXECABORT Transaction discarded\r\n").is_empty());
    assert!(s.clean());
}

#[test]
fn a_command_that_was_not_queued_takes_effect_at_once() {
    // MULTI refused (say, by ACL): the next write runs at once and is evicted at once.
    let mut s = PinState::new(0, Resp::V2);
    s.sent(Effect::Multi, false);
    s.sent(Effect::Plain(keys(&["a"])), false);
    assert!(reply(&mut s, "-NOPERM no\r\n").is_empty());
    assert_eq!(reply(&mut s, "+OK\r\n"), vec![Applied::Evict(keys(&["a"]))]);
}

#[test]
fn select_inside_a_transaction_moves_the_session_at_exec() {
    let mut s = PinState::new(0, Resp::V2);
    s.sent(Effect::Multi, false);
    s.sent(Effect::Select(3), false);
    assert_eq!(s.dbs(), &[0, 3]);
    s.sent(Effect::Exec, false);
    reply(&mut s, "+OK\r\n");
    reply(&mut s, "+QUEUED\r\n");
    assert_eq!(reply(&mut s, "*1\r\n+OK\r\n"), vec![Applied::Select(3)]);
    s.settle(3);
    assert_eq!(s.dbs(), &[3]);
}

#[test]
fn resp2_subscriptions_are_counted_from_confirmations() {
    let mut s = PinState::new(0, Resp::V2);
    s.sent(
        Effect::Subscribe {
            family: Family::Channel,
            subscribe: true,
            count: Some(2),
        },
        false,
    );
    let confirm =
        |ch: &str, n: u32| format!("*3\r\n$9\r\nsubscribe\r\n${}\r\n{ch}\r\n:{n}\r\n", ch.len());
    assert!(matches!(
        s.receive(&b(&confirm("a", 1))),
        Frame::Confirmation
    ));
    assert!(!s.idle());
    let message = "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
    assert!(matches!(s.receive(&b(message)), Frame::Message));
    assert!(matches!(
        s.receive(&b(&confirm("b", 2))),
        Frame::Confirmation
    ));
    assert!(s.idle() && !s.clean() && s.resp2_subscribed());
    // PING in subscribe mode is a reply, not a message.
    s.sent(Effect::Plain(Invalidation::None), false);
    assert!(reply(&mut s, "*2\r\n$4\r\npong\r\n$0\r\n\r\n").is_empty());
    // UNSUBSCRIBE without arguments: one confirmation per channel.
    s.sent(
        Effect::Subscribe {
            family: Family::Channel,
            subscribe: false,
            count: None,
        },
        false,
    );
    let un = |ch: &str, n: u32| format!("*3\r\n$11\r\nunsubscribe\r\n$1\r\n{ch}\r\n:{n}\r\n");
    assert!(matches!(s.receive(&b(&un("a", 1))), Frame::Confirmation));
    assert!(!s.idle());
    assert!(matches!(s.receive(&b(&un("b", 0))), Frame::Confirmation));
    assert!(s.clean());
    // Not subscribed any more: an array that looks like a message is a reply.
    s.sent(Effect::Plain(Invalidation::None), false);
    assert!(reply(&mut s, message).is_empty());
}

#[test]
fn resp3_pushes_are_messages_and_replies_stay_matched() {
    let mut s = PinState::new(0, Resp::V3);
    s.sent(
        Effect::Subscribe {
            family: Family::Pattern,
            subscribe: true,
            count: Some(1),
        },
        false,
    );
    s.sent(Effect::Plain(keys(&["k"])), false);
    let confirm = ">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:1\r\n";
    assert!(matches!(s.receive(&b(confirm)), Frame::Confirmation));
    let pushed = ">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nc1\r\n$1\r\nx\r\n";
    assert!(matches!(s.receive(&b(pushed)), Frame::Message));
    let invalidate = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    assert!(matches!(s.receive(&b(invalidate)), Frame::Message));
    // A reply array that reads like a message is still the reply in RESP3.
    assert_eq!(
        reply(&mut s, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"),
        vec![Applied::Evict(keys(&["k"]))]
    );
    assert!(s.idle() && !s.clean());
}

#[test]
fn flags_and_monitor_keep_the_connection() {
    let mut s = PinState::new(0, Resp::V3);
    s.sent(Effect::Set(Flag::Tracking, true), false);
    reply(&mut s, "+OK\r\n");
    assert!(!s.clean());
    s.sent(Effect::Set(Flag::Tracking, false), false);
    reply(&mut s, "+OK\r\n");
    assert!(s.clean());
    s.sent(Effect::Set(Flag::NoEvict, true), false);
    reply(&mut s, "-ERR syntax\r\n");
    assert!(s.clean(), "a refused switch changes nothing");
    s.sent(Effect::Monitor, false);
    reply(&mut s, "+OK\r\n");
    assert!(matches!(
        s.receive(&b("+1.2 [0 x] \"get\"\r\n")),
        Frame::Message
    ));
    assert!(!s.clean());
}

#[test]
fn a_swallowed_reply_is_marked() {
    let mut s = PinState::new(0, Resp::V2);
    s.sent(Effect::Swallow, false);
    assert!(matches!(
        s.receive(&b(":0\r\n")),
        Frame::Reply { swallow: true, .. }
    ));
}
