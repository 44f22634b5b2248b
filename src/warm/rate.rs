//! The warming's rate limit: a token bucket on tokio's clock, refilled at `[warm] rate`
//! keys per second and holding at most one batch, so a warming never asks the upstream
//! for more than that rate over any period longer than a batch.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket; one token is one key fetched.
#[derive(Debug)]
pub struct Rate {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Rate {
    /// `per_sec` tokens a second (at least 1), at most `burst` (at least 1) held; starts
    /// full.
    pub fn new(per_sec: u64, burst: usize) -> Rate {
        let burst = burst.max(1) as f64;
        Rate {
            per_sec: per_sec.max(1) as f64,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }

    /// How long until `n` tokens (at most the burst) are there.
    pub fn wait_for(&mut self, n: usize) -> Duration {
        self.refill();
        let n = (n as f64).min(self.burst);
        match self.tokens >= n {
            true => Duration::ZERO,
            false => Duration::from_secs_f64((n - self.tokens) / self.per_sec),
        }
    }

    /// Waits until `n` tokens (at most the burst) are there and takes them.
    pub async fn take(&mut self, n: usize) {
        let wait = self.wait_for(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.refill();
        }
        self.tokens = (self.tokens - (n as f64).min(self.burst)).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_free_then_the_rate_holds() {
        let mut rate = Rate::new(200, 100);
        let start = Instant::now();
        rate.take(100).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // 300 more keys at 200 a second: 1.5 s.
        for _ in 0..3 {
            rate.take(100).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((1.49..1.51).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_at_most_one_burst() {
        let mut rate = Rate::new(10, 5);
        rate.take(5).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        rate.take(5).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        rate.take(5).await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.49..0.51).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn asking_beyond_the_burst_takes_the_burst() {
        let mut rate = Rate::new(1000, 10);
        rate.take(10).await;
        let start = Instant::now();
        rate.take(1_000_000).await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.009..0.011).contains(&took), "{took}");
        assert_eq!(Rate::new(0, 0).wait_for(1), Duration::ZERO);
    }
}
