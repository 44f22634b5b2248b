//! Unit tests of `audit`.

use super::*;

fn selected(rate: f64, seed: u64, hits: usize) -> usize {
    let mut c = Countdown::new(rate, seed);
    (0..hits).filter(|_| c.tick()).count()
}

#[test]
fn countdown_selects_about_rate_of_hits() {
    for (rate, hits) in [(0.001, 2_000_000), (0.01, 1_000_000), (0.3, 100_000)] {
        let want = rate * hits as f64;
        for seed in [1, 2, 42] {
            let got = selected(rate, seed, hits) as f64;
            // Binomial: the standard deviation is at most sqrt(want); allow 5 of them.
            assert!(
                (got - want).abs() < 5.0 * want.sqrt(),
                "{rate} {seed}: {got}"
            );
        }
    }
}

#[test]
fn countdown_is_deterministic_per_seed() {
    let draw = |seed| {
        let mut c = Countdown::new(0.05, seed);
        (0..10_000).map(|_| c.tick()).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn countdown_zero_never_selects_and_one_always_does() {
    for seed in [0, 1, u64::MAX] {
        assert_eq!(selected(0.0, seed, 1_000_000), 0);
        assert_eq!(selected(1.0, seed, 100_000), 100_000);
    }
}

#[test]
fn countdown_tiny_rates_do_not_overflow() {
    let mut c = Countdown::new(f64::MIN_POSITIVE, 3);
    assert!(c.left >= 1);
    assert!(!c.tick());
}

#[test]
fn limiter_writes_one_line_per_period_and_counts_the_rest() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut l = Limiter::default();
    assert_eq!(l.admit(at(0)), Admit::Log { suppressed: 0 });
    assert_eq!(
        l.admit(at(10)),
        Admit::Suppress {
            flush_at: Some(at(1000))
        }
    );
    assert_eq!(l.admit(at(20)), Admit::Suppress { flush_at: None });
    assert_eq!(l.flush(at(999)), None, "not before the period ends");
    assert_eq!(l.admit(at(1000)), Admit::Log { suppressed: 2 });
    assert_eq!(l.flush(at(1000)), None, "reported by the line");
    assert_eq!(
        l.admit(at(1500)),
        Admit::Suppress {
            flush_at: Some(at(2000))
        }
    );
    assert_eq!(l.flush(at(2000)), Some(1));
    assert_eq!(l.flush(at(3000)), None);
    assert_eq!(
        l.admit(at(2500)),
        Admit::Suppress {
            flush_at: Some(at(3000))
        },
        "a flushed count is a line: the period restarts"
    );
}

#[test]
fn long_and_binary_keys_are_escaped_and_cut() {
    assert_eq!(shown(b"user:1"), "user:1");
    assert_eq!(shown(b"a\"b\n\xff"), "a\\\"b\\n\\xff");
    let long = vec![b'k'; 1000];
    assert_eq!(shown(&long), format!("{}...", "k".repeat(LOG_KEY_BYTES)));
}
