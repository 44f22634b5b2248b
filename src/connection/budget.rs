//! The bound on what the sidecar holds for one client: the replies it owes the client and
//! has not written to its socket yet, those already known (L1 hits queued behind a miss,
//! local replies) counted as they are, those still awaited from the upstream estimated.
//! Past [`MAX_HELD_REPLIES`] the connection dispatches nothing more of the client's
//! pipeline until everything owed is written (backpressure: nothing is dropped or
//! reordered, and what is in flight completes). A client that reads its replies slowly
//! gets them slowly; one that never reads stays stuck on its own, holding about this much.
//!
//! The size of an upstream reply is not known before it arrives: each is estimated at the
//! largest upstream reply the client got in its last window (from one wait for every owed
//! reply to the next), or half the previous estimate if that is more. A connection starts
//! with [`FIRST_ESTIMATE`], so its first window is a few requests and the windows of a
//! client whose replies are small double until a whole batch fits (eight windows): a client
//! whose first replies are large values is bounded too, and one that gets a large reply
//! now and then keeps a cautious estimate between them. A client whose replies were small
//! for that long and then pipelines large values can still make the sidecar hold up to one
//! batch of them: their size shows only once they arrive.

/// Reply bytes the sidecar holds for one client (owed, not written to its socket) before
/// it stops dispatching the client's requests until they are written.
pub(super) const MAX_HELD_REPLIES: usize = 32 * 1024 * 1024;
/// Estimate of one upstream reply before the connection has seen any: a quarter of the
/// bound, so the first window is four upstream-bound requests.
const FIRST_ESTIMATE: usize = MAX_HELD_REPLIES / 4;
/// Smallest estimate (a small reply such as `:1` or a nil): an MGET of many keys is still
/// counted at something per key.
const MIN_ESTIMATE: usize = 16;

/// What one client's owed replies are estimated to hold (see the module docs).
pub(super) struct Budget {
    /// Bytes owed since everything was last written: known replies as they are, upstream
    /// ones at `estimate` each.
    held: usize,
    /// What one upstream reply is expected to weigh.
    estimate: usize,
    /// The largest upstream reply written in this window (0: none).
    largest: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            held: 0,
            estimate: FIRST_ESTIMATE,
            largest: 0,
        }
    }
}

impl Budget {
    /// True once the owed replies reach the bound: write them before dispatching more.
    #[inline]
    pub(super) fn is_spent(&self) -> bool {
        self.held >= MAX_HELD_REPLIES
    }

    /// A known reply of `len` bytes queued behind owed ones.
    #[inline]
    pub(super) fn hold(&mut self, len: usize) {
        self.held = self.held.saturating_add(len);
    }

    /// `replies` upstream replies now owed (estimated).
    #[inline]
    pub(super) fn expect(&mut self, replies: usize) {
        self.hold(self.estimate.saturating_mul(replies));
    }

    /// An upstream reply (or MGET element) of `len` bytes, written to the client.
    #[inline]
    pub(super) fn learn(&mut self, len: usize) {
        self.largest = self.largest.max(len);
    }

    /// Everything owed is written: a new window starts, its upstream replies estimated at
    /// the largest of the window that ended or half the last estimate, whichever is more
    /// (unchanged if the window had no upstream reply).
    pub(super) fn settle(&mut self) {
        if self.largest > 0 {
            self.estimate = self.largest.max(self.estimate / 2).max(MIN_ESTIMATE);
            self.largest = 0;
        }
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::MAX_BATCH;

    #[test]
    fn the_first_window_is_a_few_requests() {
        let mut b = Budget::default();
        let mut dispatched = 0;
        while !b.is_spent() {
            b.expect(1);
            dispatched += 1;
        }
        assert_eq!(dispatched, MAX_HELD_REPLIES / FIRST_ESTIMATE);
    }

    /// Windows of small replies until the estimate stops falling.
    fn small_windows(b: &mut Budget, len: usize) -> usize {
        let mut windows = 0;
        loop {
            let before = b.estimate;
            b.learn(len);
            b.settle();
            if b.estimate == before {
                return windows;
            }
            windows += 1;
        }
    }

    #[test]
    fn windows_of_small_replies_double_until_a_batch_fits() {
        let mut b = Budget::default();
        let mut windows = 0;
        while MAX_HELD_REPLIES / b.estimate < MAX_BATCH {
            b.learn(100);
            b.settle();
            windows += 1;
        }
        assert_eq!(windows, 8);
        small_windows(&mut b, 100);
        for _ in 0..MAX_BATCH - 1 {
            b.expect(1);
        }
        assert!(!b.is_spent());
    }

    #[test]
    fn large_replies_narrow_the_window_until_small_ones_come_back() {
        let mut b = Budget::default();
        b.learn(10 << 20);
        b.learn(50);
        b.settle();
        b.expect(3);
        assert!(!b.is_spent());
        b.expect(1);
        assert!(b.is_spent());
        // A window of hits only teaches nothing about upstream replies.
        b.settle();
        b.expect(3);
        assert!(!b.is_spent());
        b.settle();
        // Small replies again: half the estimate each window.
        b.learn(2048);
        b.settle();
        assert_eq!(b.estimate, 5 << 20);
        small_windows(&mut b, 2048);
        assert_eq!(b.estimate, 2048);
        b.expect(MAX_BATCH - 1);
        assert!(!b.is_spent());
    }

    #[test]
    fn mgets_of_many_small_values_are_not_stopped() {
        let mut b = Budget::default();
        small_windows(&mut b, 1);
        // A batch of MGETs of 1000 keys each, every key counted at the smallest estimate.
        for _ in 0..MAX_BATCH {
            b.expect(1000);
        }
        assert!(!b.is_spent());
    }

    #[test]
    fn known_replies_count_as_they_are() {
        let mut b = Budget::default();
        b.hold(MAX_HELD_REPLIES - 1);
        assert!(!b.is_spent());
        b.hold(1);
        assert!(b.is_spent());
        b.settle();
        assert!(!b.is_spent());
    }
}
