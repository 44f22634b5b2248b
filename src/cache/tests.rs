//! L1 unit tests: generations, flushes, expiry, compression, namespaces' tables.
use super::*;
use crate::glob::Pattern;

/// The options of a 1 MiB L1.
fn options() -> L1Options {
    L1Options {
        max_bytes: 1 << 20,
        ttl: Duration::from_secs(60),
        compress_min_bytes: 256,
        cache_nil: true,
        admit_second_miss: false,
    }
}

/// A 1 MiB L1 (also for the sibling modules' tests).
pub(super) fn l1() -> L1 {
    L1::new(options())
}

/// A namespace of `pattern` with no policy of its own.
fn namespace(pattern: &str) -> crate::config::NamespaceConfig {
    crate::config::NamespaceConfig {
        name: pattern.to_owned(),
        pattern: pattern.to_owned(),
        cache: true,
        l1_ttl: None,
        cache_nil: None,
        compress_min_bytes: None,
        max_bytes: None,
    }
}

/// The key `k` of user 0 in database `db`.
pub(super) fn key(db: u32, k: &str) -> CacheKey {
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

/// Fills `l1`'s table with small plain values until it is crowded (large values are
/// compressed from then on, see `Table::crowded`), leaving `key(0, "big")`'s shard so.
fn crowd(l1: &L1) {
    let hash = l1.key_hash(0, b"big");
    let value = bulk(&[b'x'; 200]);
    for i in 0.. {
        if l1.stores[0].crowded(hash) {
            return;
        }
        assert!(i < 100_000, "the table never got crowded");
        let k = key(0, &format!("filler:{i}"));
        let g = l1.generation(&k);
        assert!(l1.insert_if_current(k, g, Cached::Value(value.clone()), None));
    }
}

#[test]
fn large_values_are_stored_plain_while_the_table_has_room() {
    let l1 = l1();
    let value = bulk(&b"abcdefgh".repeat(1000));
    let g = l1.generation(&key(0, "big"));
    assert!(l1.insert_if_current(key(0, "big"), g, Cached::Value(value.clone()), None));
    assert_eq!(l1.compressed_entries(), 0);
    assert!(l1.used_bytes() > value.len() as u64);
    assert_eq!(
        l1.get(&key(0, "big").as_key_ref()),
        Some(Cached::Value(value))
    );
}

#[test]
fn large_values_round_trip_compressed() {
    let l1 = l1();
    crowd(&l1);
    let used = l1.used_bytes();
    let value = bulk(&b"abcdefgh".repeat(1000));
    let g = l1.generation(&key(0, "big"));
    assert!(l1.insert_if_current(key(0, "big"), g, Cached::Value(value.clone()), None));
    assert_eq!(l1.compressed_entries(), 1);
    assert!(l1.used_bytes() < used + value.len() as u64 / 4);
    assert_eq!(
        l1.get(&key(0, "big").as_key_ref()),
        Some(Cached::Value(value))
    );
}

#[test]
fn hits_end_with_invalidation_flush_and_expiry() {
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
fn entries_belong_to_one_l1() {
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
        cache_nil: true,
        admit_second_miss: false,
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
        cache_nil: true,
        admit_second_miss: false,
    });
    let big = key(0, "big");
    let value = bulk(&vec![b'x'; super::MAX_ENTRY_BYTES + 1]);
    assert!(!l1.insert_if_current(big.clone(), l1.generation(&big), Cached::Value(value), None));
    assert_eq!(l1.get(&big.as_key_ref()), None);
    // A huge key name: neither its nil nor a small value is kept.
    let long = CacheKey {
        key: Bytes::from(vec![b'k'; super::MAX_ENTRY_BYTES + 1]),
        ..key(0, "")
    };
    for value in [Cached::Missing, Cached::Value(bulk(b"v"))] {
        assert!(!l1.insert_if_current(long.clone(), l1.generation(&long), value, None));
    }
    assert_eq!(l1.entry_count(), 0);
}

fn user_key(user: u32, k: &str) -> CacheKey {
    CacheKey { user, ..key(0, k) }
}

#[test]
fn invalidation_evicts_the_key_for_every_user_with_entries() {
    let l1 = l1();
    for user in [0, 7, 3] {
        let k = user_key(user, "a");
        assert!(l1.insert_if_current(k.clone(), l1.generation(&k), Cached::Missing, None));
    }
    assert_eq!(l1.users.list(), [0, 3, 7]);
    l1.invalidate(0, b"a");
    for user in [0, 3, 7] {
        assert_eq!(
            l1.get(&user_key(user, "a").as_key_ref()),
            None,
            "user {user}"
        );
    }
}

#[test]
fn forget_user_removes_its_entries_and_stops_covering_it() {
    let l1 = l1();
    let (mine, theirs) = (user_key(9, "a"), user_key(2, "a"));
    for k in [&mine, &theirs] {
        assert!(l1.insert_if_current(k.clone(), l1.generation(k), Cached::Missing, None));
    }
    l1.forget_user(9);
    assert_eq!(l1.users.list(), [2]);
    assert_eq!(l1.get(&mine.as_key_ref()), None);
    assert_eq!(l1.get(&theirs.as_key_ref()), Some(Cached::Missing));
    // A fill of the forgotten user that was still in flight puts it back in the set, so
    // invalidations keep covering what it installed.
    assert!(l1.insert_if_current(mine.clone(), l1.generation(&mine), Cached::Missing, None));
    assert_eq!(l1.users.list(), [2, 9]);
    l1.invalidate(0, b"a");
    assert_eq!(l1.get(&mine.as_key_ref()), None);
}

#[test]
fn stored_values_and_keys_are_copies_not_slices_of_the_read_buffer() {
    let l1 = l1();
    let buffer = Bytes::from(b"xxxx$1\r\nv\r\nkey".to_vec());
    let (value, k) = (buffer.slice(4..11), buffer.slice(11..));
    let ck = CacheKey {
        user: 0,
        db: 0,
        key: k,
    };
    assert!(l1.insert_if_current(ck.clone(), l1.generation(&ck), Cached::Value(value), None));
    let Some(Cached::Value(stored)) = l1.get(&ck.as_key_ref()) else {
        panic!("hit")
    };
    let range = buffer.as_ptr_range();
    assert!(!range.contains(&stored.as_ptr()), "value copied");
    drop(buffer);
    assert_eq!(
        l1.get(&ck.as_key_ref()),
        Some(Cached::Value(bulk(b"v"))),
        "the table holds its own copies"
    );
}

#[test]
fn the_shared_table_takes_the_bound_the_namespaces_leave() {
    let l1 = l1();
    assert_eq!(l1.stores[0].capacity(), l1.max_bytes());
    let ns = crate::config::NamespaceConfig {
        max_bytes: Some(256 << 10),
        ..namespace("session:*")
    };
    let l1 = L1::with_namespaces(options(), &[ns]);
    assert_eq!(l1.stores.len(), 2);
    assert_eq!(l1.stores[1].capacity(), 256 << 10);
    assert_eq!(l1.stores[0].capacity(), (1 << 20) - (256 << 10));
}

fn compressible() -> Bytes {
    bulk(&b"abcdefgh".repeat(1000))
}

#[test]
fn an_invalidation_during_compression_keeps_the_value_out() {
    let l1 = Arc::new(l1());
    crowd(&l1);
    let a = key(0, "big");
    let install = l1
        .accept(
            a.clone(),
            l1.generation(&a),
            Cached::Value(compressible()),
            None,
            None,
        )
        .expect("accepted");
    // The write's eviction lands while the value is being compressed.
    l1.invalidate(a.db, &a.key);
    let installer = l1.clone();
    let installed = std::thread::spawn(move || installer.install(install))
        .join()
        .expect("joined");
    assert!(!installed);
    assert_eq!(l1.get(&a.as_key_ref()), None);
}

/// Waits (bounded) until the encoder thread has nothing left to do.
fn encoder_idle(l1: &L1) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while l1.encoder.pending() > 0 {
        assert!(Instant::now() < deadline, "the encoder never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_fill_answers_at_once_and_installs_after_compression() {
    let l1 = Arc::new(l1());
    crowd(&l1);
    let a = key(0, "big");
    let value = compressible();
    let fetched = l1.fill(
        a.clone(),
        l1.generation(&a),
        Instant::now(),
        &value,
        &Bytes::from_static(b":-1\r\n"),
        true,
        Some(FilledBy::LOCAL),
    );
    assert_eq!(fetched, Fetched::Value(value.clone()));
    encoder_idle(&l1);
    assert_eq!(l1.compressed_entries(), 1);
    assert_eq!(l1.get(&a.as_key_ref()), Some(Cached::Value(value.clone())));
    // Read once, it is stored plain: the next hits skip the decompression.
    assert_eq!(l1.compressed_entries(), 0);
    assert_eq!(l1.get(&a.as_key_ref()), Some(Cached::Value(value)));
    assert_eq!(l1.entry_count(), l1.stores[0].len());
}

#[test]
fn a_fill_invalidated_while_the_encoder_is_busy_is_not_installed() {
    let l1 = Arc::new(l1());
    crowd(&l1);
    let a = key(0, "big");
    // Hold the encoder so the fill's compression cannot end before the invalidation.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    assert!(l1.encoder.submit(move || {
        let _ = gate.recv();
    }));
    let pttl = Bytes::from_static(b":-1\r\n");
    let value = compressible();
    let fetched = l1.fill(
        a.clone(),
        l1.generation(&a),
        Instant::now(),
        &value,
        &pttl,
        true,
        Some(FilledBy::LOCAL),
    );
    assert_eq!(
        fetched,
        Fetched::Value(value),
        "followers are answered at once"
    );
    l1.invalidate(a.db, &a.key);
    release.send(()).expect("encoder waiting");
    encoder_idle(&l1);
    assert_eq!(l1.get(&a.as_key_ref()), None);
    assert_eq!(l1.compressed_entries(), 0);
}

fn put(l1: &L1, k: CacheKey, value: &[u8]) {
    let g = l1.generation(&k);
    assert!(l1.insert_if_current(k, g, Cached::Value(bulk(value)), None));
}

#[test]
fn pattern_invalidation_evicts_matching_keys_in_every_db_and_for_every_user() {
    let l1 = l1();
    put(&l1, key(0, "user:1"), b"a");
    put(&l1, key(5, "user:2"), b"b");
    put(&l1, user_key(7, "user:1"), b"c");
    put(&l1, key(0, "item:1"), b"d");
    put(&l1, key(0, "user"), b"e");
    // Read before the eviction: it must not answer after it.
    for k in [key(0, "user:1"), key(0, "item:1")] {
        assert!(l1.get(&k.as_key_ref()).is_some());
    }
    assert_eq!(l1.invalidate_matching(&Pattern::new(b"user:*")), 3);
    for k in [key(0, "user:1"), key(5, "user:2"), user_key(7, "user:1")] {
        assert_eq!(l1.get(&k.as_key_ref()), None, "{k:?}");
    }
    assert_eq!(
        l1.get(&key(0, "item:1").as_key_ref()),
        Some(Cached::Value(bulk(b"d")))
    );
    assert!(l1.get(&key(0, "user").as_key_ref()).is_some());
    assert_eq!(l1.invalidate_matching(&Pattern::new(b"user:*")), 0);
    assert_eq!(l1.invalidate_matching(&Pattern::new(b"?[st]e[m-r]*")), 2);
    assert_eq!(l1.entry_count(), 0);
}

#[test]
fn pattern_invalidation_stops_fetches_in_flight() {
    let l1 = l1();
    let matching = l1.generation(&key(0, "user:9"));
    let other = l1.generation(&key(0, "item:9"));
    assert_eq!(l1.invalidate_matching(&Pattern::new(b"user:*")), 0);
    assert!(!l1.insert_if_current(key(0, "user:9"), matching, Cached::Missing, None));
    assert_eq!(l1.get(&key(0, "user:9").as_key_ref()), None);
    // Conservative: fetches of other keys that were in flight are refused too.
    assert!(!l1.insert_if_current(key(0, "item:9"), other, Cached::Missing, None));
    // A fetch that starts afterwards installs.
    put(&l1, key(0, "user:9"), b"new");
}

#[test]
fn an_invalidation_without_a_database_covers_every_database_fetched() {
    let l1 = l1();
    let (a0, a3) = (key(0, "a"), key(3, "a"));
    let taken0 = l1.generation(&a0);
    let taken3 = l1.generation(&a3);
    assert!(l1.insert_if_current(a0.clone(), taken0, Cached::Missing, None));
    l1.invalidate_everywhere(&[b"a"]);
    assert_eq!(l1.get(&a0.as_key_ref()), None);
    assert!(
        !l1.insert_if_current(a3.clone(), taken3, Cached::Missing, None),
        "a fetch in flight in another database does not land"
    );
}

#[test]
fn a_fill_not_covered_by_tracking_answers_but_is_not_installed() {
    let l1 = Arc::new(l1());
    let a = key(0, "a");
    let value = bulk(b"v");
    let pttl = Bytes::from_static(b":-1\r\n");
    let taken = l1.generation(&a);
    let fetched = l1.fill(a.clone(), taken, Instant::now(), &value, &pttl, true, None);
    assert_eq!(fetched, Fetched::Value(value));
    assert_eq!(l1.get(&a.as_key_ref()), None);
}

/// The live counts let a write skip the table only when no entry of its key's slice exists:
/// replaced, expired, evicted and flushed entries keep the counts exact or high, so a
/// write after any of them still removes what is there.
#[test]
fn writes_remove_entries_after_replacements_expiries_and_flushes() {
    let l1 = l1();
    let install = |k: &str, v: &[u8], expiry: Option<Instant>| {
        let g = l1.generation(&key(0, k));
        assert!(l1.insert_if_current(key(0, k), g, Cached::Value(bulk(v)), expiry));
    };
    let has = |k: &str| l1.get(&key(0, k).as_key_ref()).is_some();
    // Replaced twice, then written: the count is one, not zero or three.
    install("a", b"1", None);
    install("a", b"2", None);
    install("a", b"3", None);
    l1.invalidate(0, b"a");
    assert!(!has("a"), "a replaced entry survived a write");
    install("a", b"4", None);
    assert!(has("a"));
    l1.invalidate(0, b"a");
    assert!(
        !has("a"),
        "an entry installed after a write survived the next write"
    );
    // Expired and removed by the table, then installed again and written.
    install("b", b"1", Some(Instant::now() + Duration::from_millis(20)));
    std::thread::sleep(Duration::from_millis(40));
    install("b", b"2", None);
    l1.invalidate(0, b"b");
    assert!(
        !has("b"),
        "an entry installed after an expiry survived a write"
    );
    // Flushed, installed again, written.
    install("c", b"1", None);
    l1.flush_all();
    install("c", b"2", None);
    l1.invalidate(0, b"c");
    assert!(
        !has("c"),
        "an entry installed after a flush survived a write"
    );
    // Many keys written and rewritten: none survives its write.
    for round in 0..3 {
        for i in 0..2000 {
            install(&format!("k{i}"), format!("{round}").as_bytes(), None);
        }
        for i in (0..2000).step_by(3) {
            l1.invalidate(0, format!("k{i}").as_bytes());
            assert!(
                !has(&format!("k{i}")),
                "round {round}: k{i} survived its write"
            );
        }
    }
}
