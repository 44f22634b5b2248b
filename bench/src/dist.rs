//! Which key a request touches: a xorshift generator (uniform draws) and a Zipf sampler
//! (skewed draws, rank 0 the hottest key).

/// xorshift64*: fast, small, good enough to pick keys; not for anything secret.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; zero is replaced, xorshift cannot leave it).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0), by multiply-shift: no division, negligible bias.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ranks `0..n`: rank `k` is drawn with probability proportional to `1/(k+1)^s`.
/// Built once (one `f64` per rank); a draw is one binary search.
#[derive(Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks (`n` > 0) with exponent `s`.
    pub fn new(n: u64, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut XorShift) -> u64 {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|&c| c <= u);
        rank.min(self.cdf.len() - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_follow_the_skew() {
        let (n, s) = (100_000u64, 0.99);
        let zipf = Zipf::new(n, s);
        let h: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        let top_share: f64 = (1..=1000u64).map(|k| (k as f64).powf(-s)).sum::<f64>() / h;

        let mut rng = XorShift::new(7);
        let draws = 200_000;
        let (mut hottest, mut top) = (0u32, 0u32);
        for _ in 0..draws {
            let rank = zipf.sample(&mut rng);
            assert!(rank < n);
            hottest += u32::from(rank == 0);
            top += u32::from(rank < 1000);
        }
        let hottest = f64::from(hottest) / f64::from(draws);
        let top = f64::from(top) / f64::from(draws);
        // Rank 0 is drawn about 1/H of the time (8% here); the hottest 1% of keys get ~60%.
        assert!(
            (hottest * h - 1.0).abs() < 0.05,
            "rank 0: {hottest}, want {}",
            1.0 / h
        );
        assert!(
            (top - top_share).abs() < 0.01,
            "top 1%: {top}, want {top_share}"
        );
    }
}
