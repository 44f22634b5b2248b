//! The sampler's rate and the N+1 log line.

use super::*;

#[test]
fn the_sampler_picks_about_one_read_in_eight_without_a_fixed_period() {
    let mut s = Sampler::new(42);
    let picked: Vec<usize> = (0..80_000).filter(|_| s.tick()).collect();
    let rate = 80_000.0 / picked.len() as f64;
    assert!((7.6..8.4).contains(&rate), "one in {rate}");
    // An alternating pattern (hot, other, hot, ...) is sampled on both sides.
    let even = picked.iter().filter(|i| *i % 2 == 0).count();
    let share = even as f64 / picked.len() as f64;
    assert!((0.45..0.55).contains(&share), "{share}");
}

#[test]
fn samplers_with_different_seeds_differ() {
    let (mut a, mut b) = (Sampler::new(1), Sampler::new(2));
    let a: Vec<bool> = (0..64).map(|_| a.tick()).collect();
    let b: Vec<bool> = (0..64).map(|_| b.tick()).collect();
    assert_ne!(a, b);
}

#[test]
fn the_n_plus_one_line_names_client_shape_and_an_mget() {
    let finding = Finding {
        shape: Bytes::from_static(b"user:#:profile"),
        reads: 10,
        examples: vec![
            Bytes::from_static(b"user:1:profile"),
            Bytes::from_static(b"user:2:profile"),
        ],
    };
    let window = Duration::from_millis(100);
    assert_eq!(
        n_plus_one_line(&finding, "127.0.0.1:4000", Some(b"web"), window),
        "N+1: client 127.0.0.1:4000 name web read 10 keys like user:#:profile \
         within 100ms; one MGET would do: MGET user:1:profile user:2:profile ..."
    );
    assert!(n_plus_one_line(&finding, "a:1", None, window).contains(" name - read "));
}
