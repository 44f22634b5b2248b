//! Unit tests of the segment store: bound, second chance, expiry, removals, large entries,
//! iteration and the listener's causes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::*;

/// What the listener was told: (key, cause).
type Told = Arc<Mutex<Vec<(Vec<u8>, Cause)>>>;

fn table(capacity: u64) -> (Table, Told) {
    let told: Told = Arc::default();
    let log = told.clone();
    let table = Table::new(capacity, KeyHasher::new(), move |r: &Removed<'_>| {
        log.lock().push((r.key.to_vec(), r.cause));
    });
    (table, told)
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn put<'a>(key: &'a [u8], value: &'a [u8], expires_at: Instant) -> Put<'a> {
    Put {
        user: 0,
        db: 0,
        key,
        value: Value::Plain(value),
        expires_at,
        fence: Fence::default(),
    }
}

fn insert(t: &Table, key: &[u8], value: &[u8]) -> bool {
    t.insert(t.hash(0, key), &put(key, value, later()))
}

fn get(t: &Table, key: &[u8]) -> Option<Vec<u8>> {
    let k = KeyRef {
        user: 0,
        db: 0,
        key,
    };
    t.read(t.hash(0, key), &k, |v, _| match v {
        Value::Plain(b) => b.to_vec(),
        Value::Missing => b"(nil)".to_vec(),
        Value::Compressed { data, .. } => data.to_vec(),
    })
}

fn causes(told: &Told, cause: Cause) -> usize {
    told.lock().iter().filter(|(_, c)| *c == cause).count()
}

#[test]
fn round_trips_values_missing_and_compressed_entries() {
    let (t, _) = table(1 << 20);
    assert!(insert(&t, b"a", b"$1\r\nx\r\n"));
    assert_eq!(get(&t, b"a").as_deref(), Some(&b"$1\r\nx\r\n"[..]));
    let mut p = put(b"m", b"", later());
    p.value = Value::Missing;
    assert!(t.insert(t.hash(0, b"m"), &p));
    assert_eq!(get(&t, b"m").as_deref(), Some(&b"(nil)"[..]));
    p.key = b"z";
    p.value = Value::Compressed {
        data: b"zstd",
        len: 99,
    };
    assert!(t.insert(t.hash(0, b"z"), &p));
    let k = KeyRef {
        user: 0,
        db: 0,
        key: b"z",
    };
    let got = t.read(t.hash(0, b"z"), &k, |v, _| match v {
        Value::Compressed { data, len } => (data.to_vec(), len),
        _ => panic!("compressed"),
    });
    assert_eq!(got, Some((b"zstd".to_vec(), 99)));
    assert_eq!(get(&t, b"b"), None);
    assert_eq!(t.len(), 3);
}

#[test]
fn users_and_databases_are_distinct_keys() {
    let (t, _) = table(1 << 20);
    for (user, db) in [(0, 0), (1, 0), (0, 1)] {
        let mut p = put(b"k", b"v", later());
        (p.user, p.db) = (user, db);
        p.value = Value::Plain(if user == 1 { b"u" } else { b"v" });
        assert!(t.insert(t.hash(db, b"k"), &p));
    }
    assert_eq!(t.len(), 3);
    let k = KeyRef {
        user: 1,
        db: 0,
        key: b"k",
    };
    let v = t.read(t.hash(0, b"k"), &k, |v, _| v == Value::Plain(b"u"));
    assert_eq!(v, Some(true));
    assert!(t.remove(t.hash(0, b"k"), &k));
    assert!(!t.contains(t.hash(0, b"k"), &k));
    assert_eq!(t.len(), 2);
}

#[test]
fn user_ids_and_databases_past_65535_are_not_held() {
    let (t, _) = table(1 << 20);
    for (user, db, held) in [
        (65535, 65535, true),
        (65536, 0, false),
        (0, 65536, false),
        (70_000, 70_000, false),
    ] {
        let mut p = put(b"k", b"v", later());
        (p.user, p.db) = (user, db);
        assert_eq!(t.insert(t.hash(db, b"k"), &p), held, "user {user} db {db}");
        let k = KeyRef {
            user,
            db,
            key: b"k",
        };
        assert_eq!(
            t.contains(t.hash(db, b"k"), &k),
            held,
            "user {user} db {db}"
        );
    }
    // (65535, 65535) is not read back as (65535 + 65536k, ...): the header holds 16 bits.
    let k = KeyRef {
        user: 65535 + 65536,
        db: 65535,
        key: b"k",
    };
    assert!(!t.contains(t.hash(65535, b"k"), &k));
}

#[test]
fn stays_under_the_bound_and_evicts_for_size() {
    let (t, told) = table(1 << 20);
    let value = [b'x'; 100];
    for i in 0..100_000u32 {
        assert!(insert(&t, format!("key:{i}").as_bytes(), &value));
        assert!(t.footprint() <= t.capacity(), "at {i}: {}", t.footprint());
    }
    let held = t.len();
    assert!(held > 5_000 && held < 100_000, "{held}");
    // The bound is used, not only respected: the index's share is not rounded up to a
    // whole segment, and entries take most of the rest.
    assert!(t.footprint() > t.capacity() / 100 * 97, "{}", t.footprint());
    let entries = (t.weighed_bytes() - held * INDEX_SHARE) as f64;
    assert!(entries > t.capacity() as f64 * 0.8, "{entries}");
    assert_eq!(causes(&told, Cause::Size) as u64, 100_000 - held);
    // The newest entries are the ones held.
    assert!(get(&t, b"key:99999").is_some());
    assert!(get(&t, b"key:0").is_none());
    let weighed = t.weighed_bytes();
    assert!(weighed >= held * weight_of(5, 100) && weighed <= held * weight_of(9, 100));
}

#[test]
fn entries_read_since_written_get_a_second_chance() {
    let (t, _) = table(1 << 20);
    let value = [b'x'; 200];
    insert(&t, b"hot", &value);
    for i in 0..50_000u32 {
        insert(&t, format!("cold:{i}").as_bytes(), &value);
        if i % 500 == 0 {
            assert!(get(&t, b"hot").is_some(), "hot evicted by {i}");
        }
    }
    assert!(get(&t, b"hot").is_some());
    assert!(get(&t, b"cold:0").is_none(), "never read: evicted");
}

#[test]
fn an_expired_entry_is_never_returned_and_counts_as_expired() {
    let (t, told) = table(1 << 20);
    let soon = Instant::now() + Duration::from_millis(20);
    assert!(t.insert(t.hash(0, b"a"), &put(b"a", b"v", soon)));
    assert!(get(&t, b"a").is_some());
    std::thread::sleep(Duration::from_millis(30));
    let k = KeyRef {
        user: 0,
        db: 0,
        key: b"a",
    };
    assert!(!t.contains(t.hash(0, b"a"), &k));
    assert_eq!(get(&t, b"a"), None);
    assert_eq!(causes(&told, Cause::Expired), 1);
    assert_eq!(t.len(), 0);
    // Already expired when inserted: held, never returned.
    let past = Instant::now() - Duration::from_millis(1);
    t.insert(t.hash(0, b"b"), &put(b"b", b"v", past));
    assert_eq!(get(&t, b"b"), None);
}

#[test]
fn expired_entries_leave_as_expired_when_their_segment_is_retired() {
    let (t, told) = table(1 << 20);
    let soon = Instant::now() + Duration::from_millis(10);
    for i in 0..100u32 {
        let k = format!("short:{i}");
        t.insert(t.hash(0, k.as_bytes()), &put(k.as_bytes(), b"v", soon));
    }
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..50_000u32 {
        insert(&t, format!("key:{i}").as_bytes(), &[b'x'; 100]);
    }
    assert_eq!(causes(&told, Cause::Expired), 100);
}

#[test]
fn remove_remove_if_and_clear_tell_explicit() {
    let (t, told) = table(1 << 20);
    for (db, k) in [(0, &b"a"[..]), (0, b"b"), (3, b"a"), (3, b"c")] {
        let mut p = put(k, b"v", later());
        p.db = db;
        t.insert(t.hash(db, k), &p);
    }
    let a0 = KeyRef {
        user: 0,
        db: 0,
        key: b"a",
    };
    assert!(t.remove(t.hash(0, b"a"), &a0));
    assert!(!t.remove(t.hash(0, b"a"), &a0));
    t.remove_if(|_, db, _| db == 3);
    assert_eq!(t.len(), 1);
    assert_eq!(get(&t, b"b").as_deref(), Some(&b"v"[..]));
    t.clear();
    assert_eq!((t.len(), t.footprint(), t.weighed_bytes()), (0, 0, 0));
    assert_eq!(causes(&told, Cause::Explicit), 4);
    assert!(insert(&t, b"again", b"v"), "usable after a clear");
}

#[test]
fn a_replaced_entry_is_told_replaced_and_its_bytes_come_back() {
    let (t, told) = table(1 << 20);
    let value = [b'x'; 1000];
    // Rewriting one key many times over the bound: dead copies are reclaimed.
    for _ in 0..10_000 {
        assert!(insert(&t, b"k", &value));
        assert!(t.footprint() <= t.capacity());
    }
    assert_eq!(t.len(), 1);
    assert_eq!(get(&t, b"k").map(|v| v.len()), Some(1000));
    assert_eq!(causes(&told, Cause::Replaced), 9_999);
    assert_eq!(
        causes(&told, Cause::Size),
        0,
        "only dead bytes were reclaimed"
    );
    assert_eq!(t.weighed_bytes(), weight_of(1, 1000));
}

#[test]
fn an_entry_larger_than_a_segment_gets_its_own() {
    let (t, told) = table(8 << 20);
    let big = vec![b'b'; t.segment_bytes() * 2];
    for i in 0..1000u32 {
        insert(&t, format!("small:{i}").as_bytes(), &[b'x'; 100]);
    }
    assert!(insert(&t, b"big", &big));
    assert_eq!(get(&t, b"big"), Some(big.clone()));
    assert!(t.footprint() <= t.capacity());
    // Filling past the bound retires it like any segment.
    let value = [b'x'; 1000];
    for i in 0..20_000u32 {
        insert(&t, format!("fill:{i}").as_bytes(), &value);
        assert!(t.footprint() <= t.capacity());
    }
    assert_eq!(get(&t, b"big"), None);
    assert!(told
        .lock()
        .iter()
        .any(|(k, c)| k == b"big" && *c == Cause::Size));
    // Larger than half the bound: refused.
    assert!(!insert(&t, b"huge", &vec![0u8; 5 << 20]));
}

#[test]
fn keys_in_visits_every_live_entry_once() {
    let (t, _) = table(1 << 20);
    for i in 0..1000u32 {
        insert(&t, format!("k:{i}").as_bytes(), b"v");
    }
    for i in (0..1000u32).step_by(2) {
        let k = format!("k:{i}");
        let key = KeyRef {
            user: 0,
            db: 0,
            key: k.as_bytes(),
        };
        t.remove(t.hash(0, k.as_bytes()), &key);
    }
    let mut seen = Vec::new();
    for shard in 0..t.shards() {
        for segment in t.segments(shard) {
            t.keys_in(shard, segment, |k| seen.push(k.key.to_vec()));
        }
    }
    seen.sort();
    let mut want: Vec<Vec<u8>> = (1..1000u32)
        .step_by(2)
        .map(|i| format!("k:{i}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn the_fence_round_trips() {
    let (t, _) = table(1 << 20);
    let fence = crate::cache::fences::SlotEpochs::fence(7, 3, None);
    let mut p = put(b"f", b"v", later());
    p.fence = fence;
    t.insert(t.hash(0, b"f"), &p);
    let k = KeyRef {
        user: 0,
        db: 0,
        key: b"f",
    };
    assert_eq!(t.read(t.hash(0, b"f"), &k, |_, f| f), Some(fence));
}

#[test]
fn a_value_too_large_to_hold_removes_the_older_one() {
    let (t, told) = table(1 << 20);
    assert!(insert(&t, b"k", b"small"));
    assert!(!insert(&t, b"k", &vec![0u8; 600 << 10]));
    assert_eq!(get(&t, b"k"), None, "the older value is not served");
    assert_eq!(causes(&told, Cause::Replaced), 1);
}

#[test]
fn a_compressed_entry_is_promoted_only_as_it_was_read() {
    let (t, told) = table(1 << 20);
    let k = KeyRef {
        user: 0,
        db: 0,
        key: b"z",
    };
    let hash = t.hash(0, b"z");
    let mut p = put(b"z", b"", later());
    p.value = Value::Compressed {
        data: b"zstd",
        len: 7,
    };
    assert!(t.insert(hash, &p));
    // Not the bytes read (the entry changed since): nothing is rewritten.
    assert!(!t.promote(hash, &k, (b"other", b"$1\r\nx\r\n"), || true));
    assert_eq!(get(&t, b"z").as_deref(), Some(&b"zstd"[..]));
    assert!(!t.promote(hash, &k, (b"zstd", b"$1\r\nx\r\n"), || false));
    assert_eq!(get(&t, b"z").as_deref(), Some(&b"zstd"[..]));
    assert!(t.promote(hash, &k, (b"zstd", b"$1\r\nx\r\n"), || true));
    assert_eq!(get(&t, b"z").as_deref(), Some(&b"$1\r\nx\r\n"[..]));
    assert_eq!(causes(&told, Cause::Replaced), 1);
    assert_eq!(t.len(), 1);
    // A plain entry, or a key not held, is left alone.
    assert!(!t.promote(hash, &k, (b"zstd", b"$1\r\ny\r\n"), || true));
    let other = KeyRef {
        user: 0,
        db: 0,
        key: b"none",
    };
    let none = t.hash(0, b"none");
    assert!(!t.promote(none, &other, (b"zstd", b"$1\r\ny\r\n"), || true));
    assert_eq!(get(&t, b"z").as_deref(), Some(&b"$1\r\nx\r\n"[..]));
}
