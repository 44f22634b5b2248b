//! Reconnect delays: exponential with equal jitter, so sidecars that lost the same Redis
//! do not all come back at the same instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The delays between reconnect attempts of one connection.
pub(crate) struct Backoff {
    /// The ceiling of the next delay.
    ceiling: Duration,
    /// xorshift64 state (never 0).
    state: u64,
}

impl Backoff {
    /// A sequence seeded from `seed` (mixed with the clock, so processes started together
    /// still differ).
    pub(crate) fn new(seed: u64) -> Backoff {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff::seeded(seed ^ clock)
    }

    fn seeded(seed: u64) -> Backoff {
        // splitmix64 scrambles nearby seeds into unrelated states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Backoff {
            ceiling: MIN_BACKOFF,
            state: (z ^ (z >> 31)) | 1,
        }
    }

    /// After a connection was established: the next outage starts from the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.ceiling = MIN_BACKOFF;
    }

    /// The next delay: half the ceiling plus a random part of the other half (equal
    /// jitter), then the ceiling doubles up to [`MAX_BACKOFF`].
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(MAX_BACKOFF);
        let half = ceiling / 2;
        let span = (ceiling - half).as_micros() as u64;
        half + Duration::from_micros(self.random() % (span + 1))
    }

    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_half_to_full_ceiling_which_doubles_to_the_max() {
        for seed in 0..50 {
            let mut b = Backoff::seeded(seed);
            let mut ceiling = MIN_BACKOFF;
            for _ in 0..12 {
                let d = b.next_delay();
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "{d:?} outside [{ceiling:?}/2, {ceiling:?}]"
                );
                ceiling = (ceiling * 2).min(MAX_BACKOFF);
            }
            b.reset();
            let d = b.next_delay();
            assert!(
                d >= MIN_BACKOFF / 2 && d <= MIN_BACKOFF,
                "after reset: {d:?}"
            );
        }
    }

    #[test]
    fn sidecars_do_not_retry_in_step() {
        let sequence = |seed| {
            let mut b = Backoff::seeded(seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(sequence(1), sequence(2));
        let at_max: Vec<Duration> = (0..20)
            .map(|seed| {
                let mut b = Backoff::seeded(seed);
                (0..10).map(|_| b.next_delay()).last().expect("ten delays")
            })
            .collect();
        let distinct: std::collections::HashSet<_> = at_max.iter().collect();
        assert!(
            distinct.len() > 10,
            "delays at the ceiling are spread: {at_max:?}"
        );
    }
}
