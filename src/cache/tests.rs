//! L1 unit tests: generations, flushes, expiry, compression and the per-thread front.
use super::*;

fn l1() -> L1 {
    L1::new(L1Options {
        max_bytes: 1 << 20,
        ttl: Duration::from_secs(60),
        compress_min_bytes: 256,
    })
}

fn key(db: u32, k: &str) -> CacheKey {
    CacheKey {
        user: 0,
        db,
        key: Bytes::copy_from_slice(k.as_bytes()),
    }
}

#[test]
fn insert_then_hit() {
    let l1 = l1();
    let g = l1.generation(&key(0, "a"));
    assert!(l1.insert_if_current(key(0, "a"), g, Cached::Value(bulk(b"1")), None));
    assert_eq!(
        l1.get(&key(0, "a").as_key_ref()),
        Some(Cached::Value(bulk(b"1")))
    );
    assert_eq!(l1.get(&key(1, "a").as_key_ref()), None);
}

#[test]
fn fetch_that_raced_an_invalidation_is_not_installed() {
    let l1 = l1();
    let g = l1.generation(&key(0, "a"));
    l1.invalidate(0, b"a");
    assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Value(bulk(b"old")), None));
    assert_eq!(l1.get(&key(0, "a").as_key_ref()), None);
}

#[test]
fn flushes_stop_in_flight_fetches_and_drop_entries() {
    let l1 = l1();
    let g = l1.generation(&key(3, "a"));
    assert!(l1.insert_if_current(
        key(3, "b"),
        l1.generation(&key(3, "b")),
        Cached::Missing,
        None
    ));
    l1.flush_db(3);
    assert!(!l1.insert_if_current(key(3, "a"), g, Cached::Missing, None));
    assert_eq!(l1.get(&key(3, "b").as_key_ref()), None);
    let g = l1.generation(&key(0, "a"));
    l1.flush_all();
    assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, None));
}

#[test]
fn upstream_expiry_caps_the_lifetime() {
    let l1 = l1();
    let past = Instant::now() - Duration::from_millis(1);
    let g = l1.generation(&key(0, "a"));
    assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, Some(past)));
    let soon = Instant::now() + Duration::from_millis(20);
    assert!(l1.insert_if_current(key(0, "a"), g, Cached::Missing, Some(soon)));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(l1.get(&key(0, "a").as_key_ref()), None);
}

#[test]
fn large_values_round_trip_compressed() {
    let l1 = l1();
    let value = bulk(&b"abcdefgh".repeat(1000));
    let g = l1.generation(&key(0, "big"));
    assert!(l1.insert_if_current(key(0, "big"), g, Cached::Value(value.clone()), None));
    assert_eq!(l1.compressed_entries(), 1);
    assert!(l1.used_bytes() < value.len() as u64 / 4);
    assert_eq!(
        l1.get(&key(0, "big").as_key_ref()),
        Some(Cached::Value(value))
    );
}

#[test]
fn front_hits_end_with_invalidation_flush_and_expiry() {
    let l1 = l1();
    let put = |k: &CacheKey, ms: u64| {
        let g = l1.generation(k);
        let expiry = Some(Instant::now() + Duration::from_millis(ms));
        assert!(l1.insert_if_current(k.clone(), g, Cached::Value(bulk(b"v")), expiry));
    };
    let (a, b) = (key(0, "a"), key(2, "b"));
    put(&a, 60_000);
    put(&b, 60_000);
    for _ in 0..2 {
        assert_eq!(l1.get(&a.as_key_ref()), Some(Cached::Value(bulk(b"v"))));
        assert_eq!(l1.get(&b.as_key_ref()), Some(Cached::Value(bulk(b"v"))));
    }
    l1.invalidate(a.db, &a.key);
    assert_eq!(l1.get(&a.as_key_ref()), None);
    l1.flush_db(2);
    assert_eq!(l1.get(&b.as_key_ref()), None);
    put(&a, 60_000);
    assert!(l1.get(&a.as_key_ref()).is_some());
    l1.flush_all();
    assert_eq!(l1.get(&a.as_key_ref()), None);
    put(&a, 30);
    assert!(l1.get(&a.as_key_ref()).is_some());
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(l1.get(&a.as_key_ref()), None);
}

#[test]
fn front_slots_belong_to_one_l1() {
    let (one, two) = (l1(), l1());
    let a = key(0, "a");
    assert!(one.insert_if_current(a.clone(), one.generation(&a), Cached::Missing, None));
    assert_eq!(one.get(&a.as_key_ref()), Some(Cached::Missing));
    assert_eq!(two.get(&a.as_key_ref()), None);
}

#[test]
fn zero_ttl_disables_the_cache() {
    let l1 = L1::new(L1Options {
        max_bytes: 1 << 20,
        ttl: Duration::ZERO,
        compress_min_bytes: 256,
    });
    let g = l1.generation(&key(0, "a"));
    assert!(!l1.insert_if_current(key(0, "a"), g, Cached::Missing, None));
}

#[test]
fn a_replaced_entry_takes_the_new_lifetime() {
    let l1 = l1();
    let a = key(0, "a");
    assert!(l1.insert_if_current(a.clone(), l1.generation(&a), Cached::Missing, None));
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert!(l1.insert_if_current(
        a.clone(),
        l1.generation(&a),
        Cached::Value(bulk(b"v")),
        soon
    ));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(l1.get(&a.as_key_ref()), None);
}

#[test]
fn second_eviction_removes_what_a_fetch_installed_after_the_first() {
    let l1 = l1();
    let a = key(0, "a");
    let seen = l1.invalidate(a.db, &a.key);
    // A fetch taken after the first eviction, executed upstream before the write.
    let taken = l1.generation(&a);
    assert!(l1.insert_if_current(a.clone(), taken, Cached::Value(bulk(b"old")), None));
    assert!(l1.get(&a.as_key_ref()).is_some());
    l1.invalidate_after(a.db, &a.key, seen);
    assert_eq!(l1.get(&a.as_key_ref()), None);
    // And a fetch still in flight from before it cannot install afterwards.
    assert!(!l1.insert_if_current(a.clone(), taken, Cached::Value(bulk(b"old")), None));
}

#[test]
fn values_over_the_entry_limit_are_not_cached() {
    let l1 = L1::new(L1Options {
        max_bytes: 64 << 20,
        ttl: Duration::from_secs(60),
        compress_min_bytes: 4096,
    });
    let big = key(0, "big");
    let value = bulk(&vec![b'x'; super::MAX_ENTRY_BYTES + 1]);
    assert!(!l1.insert_if_current(big.clone(), l1.generation(&big), Cached::Value(value), None));
    assert_eq!(l1.get(&big.as_key_ref()), None);
}
