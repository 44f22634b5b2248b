//! Unit tests of `pool`.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use super::*;
use crate::metrics::Stats;
use crate::protocol::Resp;

fn pool(connections: usize) -> Pool {
    let target = Target {
        endpoint: crate::upstream::endpoint::Endpoint::fixed("127.0.0.1:1"),
        credentials: crate::upstream::CredentialSource::fixed(None),
        connections,
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        max_routes: 8,
        outbound: crate::upstream::outbound::Outbound::new(),
        keep_fills_while_down: false,
    };
    let link = Link {
        endpoint: target.endpoint.clone(),
        up_slots: AtomicUsize::new(0),
        lost_pending: AtomicUsize::new(0),
        reconnects: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
        lost_since_up: AtomicBool::new(false),
        down_logged: AtomicBool::new(false),
        down: AtomicBool::new(true),
        anonymous: std::sync::atomic::AtomicU8::new(0),
        auth: std::sync::atomic::AtomicU8::new(0),
        hook: Box::new(|_| {}),
        faults: std::sync::OnceLock::new(),
        stats: Arc::new(Stats::new()),
        calls: Arc::default(),
        tracking: crate::upstream::tests::tracking_off(),
    };
    let route = Route {
        db: 0,
        resp: Resp::V2,
        user: 0,
    };
    Pool::new(Arc::new(target), route, None, Arc::new(link))
}

/// Marks slot `i` started (without connecting) and stalled or not.
fn start(pool: &Pool, i: usize, stalled: bool) {
    let _ = pool.slots[i]
        .state
        .set(watch::channel(SlotState::Connecting).1);
    let oldest = stalled.then(epoch);
    pool.slots[i].health.set_oldest(oldest);
}

#[test]
fn idle_clients_move_off_stalled_slots_and_busy_ones_stay() {
    epoch();
    // From here on a call sent at the epoch is older than the stall threshold.
    std::thread::sleep(STALL_AFTER * 3);
    let pool = pool(2);
    assert_eq!(
        pool.pick(&Lane::new(5)),
        1,
        "clients spread over the base slots"
    );
    let busy = Lane::new(0);
    assert_eq!(pool.pick(&busy), 0);
    let _pending = busy.in_flight.clone();
    start(&pool, 0, true);
    start(&pool, 1, false);
    let lane = Lane::new(0);
    assert_eq!(
        pool.pick(&lane),
        1,
        "off the stalled slot, onto a started one"
    );
    assert_eq!(pool.pick(&busy), 0, "calls in flight: the slot is kept");
    start(&pool, 1, true);
    assert_eq!(
        pool.pick(&Lane::new(0)),
        2,
        "every slot stalled: an extra one"
    );
    for i in 2..2 + EXTRA_SLOTS {
        start(&pool, i, true);
    }
    assert_eq!(pool.pick(&Lane::new(1)), 1, "nowhere better: its own");
    start(&pool, 3, false);
    assert_eq!(pool.pick(&Lane::new(1)), 3);
    assert_eq!(pool.started(), 2 + EXTRA_SLOTS);
}

#[test]
fn idle_clients_avoid_slots_with_writes_in_flight_when_one_has_none() {
    let pool = pool(3);
    for i in 0..3 {
        start(&pool, i, false);
    }
    pool.slots[0].health.write_sent();
    assert_eq!(pool.pick(&Lane::new(0)), 1, "off the slot with a write");
    assert_eq!(pool.pick(&Lane::new(1)), 1, "a clear slot is kept");
    let busy = Lane::new(0);
    assert_eq!(pool.pick(&busy), 1);
    pool.slots[1].health.write_sent();
    let _pending = busy.in_flight.clone();
    assert_eq!(pool.pick(&busy), 1, "calls in flight: the slot is kept");
    assert_eq!(pool.pick(&Lane::new(0)), 2, "to the next clear one");
    pool.slots[2].health.write_sent();
    assert_eq!(
        pool.pick(&Lane::new(1)),
        1,
        "writes everywhere: its own, no extra connection"
    );
    assert_eq!(pool.started(), 3);
    pool.slots[0].health.write_done();
    assert_eq!(pool.pick(&Lane::new(1)), 0, "clear again");
}
