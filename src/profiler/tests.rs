//! The sampler's rate, the N+1 log line, its limit, and pipelined GETs.

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

fn profiler() -> Profiler {
    let config = Config::load(&crate::config::Flags::default()).expect("default config");
    Profiler::new(&config)
}

#[test]
fn gets_pipelined_in_one_read_batch_are_no_n_plus_one() {
    let p = profiler();
    let mut client = ClientProfile::new();
    client.new_batch();
    let found =
        (0..50).filter_map(|i| client.single_read(&p, format!("user:{i}").as_bytes(), None));
    assert_eq!(found.count(), 0, "one batch counts once");
    let found = (0..10).filter_map(|i| {
        client.new_batch();
        client.single_read(&p, format!("user:{i}").as_bytes(), None)
    });
    assert_eq!(found.count(), 1, "ten batches, one GET each, are an N+1");
}

#[tokio::test(start_paused = true)]
async fn n_plus_one_lines_share_one_limit_and_every_finding_is_counted() {
    let p = profiler();
    let finding = Finding {
        shape: Bytes::from_static(b"user:#"),
        reads: 10,
        examples: vec![],
    };
    for i in 0..50 {
        p.report_n_plus_one(&finding, &format!("127.0.0.1:{i}"), None);
    }
    assert_eq!(p.n_plus_one(), 50);
    let now = tokio::time::Instant::now();
    assert!(
        matches!(lock(&p.log).admit(now), Admit::Suppress { .. }),
        "no other line within the second"
    );
    let later = now + crate::logging::LOG_EVERY;
    assert_eq!(lock(&p.log).admit(later), Admit::Log { suppressed: 50 });
}
