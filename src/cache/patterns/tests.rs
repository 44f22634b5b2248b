//! Pattern invalidations: refused hits while pending, fills in flight, the background scan.

use super::*;
use crate::cache::tests::key;
use crate::cache::{bulk, CacheKey, Cached};

fn l1() -> Arc<L1> {
    Arc::new(crate::cache::tests::l1())
}

fn put(l1: &L1, k: &CacheKey, value: &[u8]) {
    let g = l1.generation(k);
    assert!(l1.insert_if_current(k.clone(), g, Cached::Value(bulk(value)), None));
}

fn get(l1: &L1, k: &CacheKey) -> Option<Cached> {
    l1.get(&k.as_key_ref())
}

fn patterns(sources: &[&str]) -> Vec<Pattern> {
    sources.iter().map(|s| Pattern::new(s.as_bytes())).collect()
}

#[test]
fn a_hit_on_a_matching_key_is_refused_while_its_scan_is_pending() {
    let l1 = l1();
    let (user, item) = (key(0, "user:1"), key(3, "item:1"));
    put(&l1, &user, b"old");
    put(&l1, &item, b"kept");
    assert!(get(&l1, &user).is_some() && get(&l1, &item).is_some());
    let (_, job) = l1.register(patterns(&["user:*"]), false);
    assert!(job.is_some());
    assert_eq!(l1.pending_patterns(), 1);
    // The entry is still in the table, but no hit is served for it.
    assert_eq!(get(&l1, &user), None);
    assert_eq!(get(&l1, &user), None);
    let hash = l1.key_hash(user.db, &user.key);
    assert!(l1.stores[0].contains(hash, &user.as_key_ref()));
    l1.scan_pending();
    assert_eq!(l1.pending_patterns(), 0);
    assert!(!l1.stores[0].contains(hash, &user.as_key_ref()));
    // A fetch after the registration installs and is served once the scan is done.
    put(&l1, &user, b"new");
    assert_eq!(get(&l1, &user), Some(Cached::Value(bulk(b"new"))));
}

#[test]
fn non_matching_keys_keep_being_served_while_a_scan_is_pending() {
    let l1 = l1();
    let item = key(0, "item:1");
    put(&l1, &item, b"kept");
    let (_, _job) = l1.register(patterns(&["user:*", "*:2", "?tem:[2-9]"]), false);
    for _ in 0..3 {
        assert_eq!(get(&l1, &item), Some(Cached::Value(bulk(b"kept"))));
    }
    // Fetches that start during the scan fill and serve keys outside the patterns.
    let other = key(0, "item:3x");
    put(&l1, &other, b"filled");
    assert_eq!(get(&l1, &other), Some(Cached::Value(bulk(b"filled"))));
    l1.scan_pending();
    assert_eq!(get(&l1, &item), Some(Cached::Value(bulk(b"kept"))));
}

#[test]
fn a_fill_that_started_before_registration_does_not_land() {
    let l1 = l1();
    let (user, item) = (key(0, "user:9"), key(0, "item:9"));
    let (user_taken, item_taken) = (l1.generation(&user), l1.generation(&item));
    let (_, _job) = l1.register(patterns(&["user:*"]), false);
    assert!(!l1.insert_if_current(user.clone(), user_taken, Cached::Missing, None));
    // Conservative: any fetch in flight is refused.
    assert!(!l1.insert_if_current(item, item_taken, Cached::Missing, None));
    l1.scan_pending();
    assert_eq!(get(&l1, &user), None);
}

#[tokio::test(start_paused = true)]
async fn one_background_pass_serves_every_registered_invalidation() {
    let l1 = l1();
    for (db, k) in [(0, "user:1"), (1, "user:2"), (0, "item:1"), (0, "cart:1")] {
        put(&l1, &key(db, k), b"v");
    }
    // Registered before any scan starts: one batch.
    let (first, _) = l1.register(patterns(&["user:*", "*:1"]), false);
    let (second, _) = l1.register(patterns(&["item:*"]), false);
    assert_eq!(l1.pending_patterns(), 3);
    let third = l1.invalidate_patterns(patterns(&["nothing:*"]));
    // Each counts the entries its own patterns matched.
    assert_eq!(first.evicted().await, 4);
    assert_eq!(second.evicted().await, 1);
    assert_eq!(third.evicted().await, 0);
    assert_eq!(l1.pending_patterns(), 0);
    assert_eq!(l1.entry_count(), 0);
    // A new invalidation after the scan stopped starts another one.
    put(&l1, &key(0, "user:3"), b"v");
    let again = l1.invalidate_patterns(patterns(&["user:?"]));
    assert_eq!(again.evicted().await, 1);
}

#[test]
fn a_pending_set_past_its_bound_flushes_l1_instead() {
    let l1 = l1();
    put(&l1, &key(0, "a"), b"v");
    put(&l1, &key(0, "b"), b"v");
    let mut jobs = Vec::new();
    for i in 0..MAX_PENDING / 64 {
        let many: Vec<String> = (0..64).map(|j| format!("p{i}:{j}:*")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (_, job) = l1.register(patterns(&many), false);
        jobs.push(job.expect("within the bound"));
    }
    assert_eq!(l1.pending_patterns(), MAX_PENDING);
    let (flushed, job) = l1.register(patterns(&["z*"]), false);
    assert!(job.is_none(), "not added to the pending set");
    assert_eq!(get(&l1, &key(0, "a")), None);
    assert_eq!(l1.entry_count(), 0);
    let Invalidation(mut rx) = flushed;
    assert_eq!(rx.try_recv(), Ok(2));
    l1.scan_pending();
    assert_eq!(l1.pending_patterns(), 0);
}
