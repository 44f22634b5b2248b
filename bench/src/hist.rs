//! A latency histogram: log-linear buckets over nanoseconds (128 per power of two, so a
//! percentile is within 1% of the true value), fixed size, no allocation per record.

use std::time::Duration;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) << SUB_BITS;

/// Counts of latencies by bucket.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The latency at quantile `q` (0 to 1): the middle of the bucket holding the
    /// `ceil(q * count)`-th smallest; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                return Duration::from_nanos(low + width / 2);
            }
        }
        Duration::MAX
    }
}

/// The bucket of `ns`: exact below [`SUB`], then [`SUB`] buckets per power of two.
fn index(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exponent = 63 - ns.leading_zeros(); // >= SUB_BITS
    let mantissa = ns >> (exponent - SUB_BITS); // in SUB..2*SUB
    (((exponent - SUB_BITS + 1) as u64) << SUB_BITS) as usize + (mantissa - SUB) as usize
}

/// Lowest value and width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let shift = (i >> SUB_BITS) - 1; // exponent - SUB_BITS
    let mantissa = SUB + (i & (SUB - 1));
    (mantissa << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        // 1 µs .. 10 ms in 1 µs steps, split across two histograms and merged.
        for us in 1..=10_000u64 {
            let h = if us % 2 == 0 { &mut a } else { &mut b };
            h.record(Duration::from_micros(us));
        }
        a.merge(&b);
        assert_eq!(a.total, 10_000);
        for (q, want_us) in [
            (0.5, 5_000.0),
            (0.99, 9_900.0),
            (0.999, 9_990.0),
            (1.0, 10_000.0),
        ] {
            let got = a.quantile(q).as_nanos() as f64 / 1000.0;
            assert!(
                (got / want_us - 1.0).abs() < 0.01,
                "q{q}: {got} µs, want {want_us}"
            );
        }
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
        // Every bucket's bounds contain the values it counts.
        for ns in [0, 1, 127, 128, 129, 255, 256, 1_000_003, u64::MAX] {
            let (low, width) = bounds(index(ns));
            assert!(low <= ns && ns - low < width, "{ns}: [{low}, +{width})");
        }
    }
}
