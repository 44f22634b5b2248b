//! `INFO` keeps the upstream's sections and adds `# Nearcache` and
//! `# Nearcache_Invalidation`; `INFO nearcache` is the sidecar's own figures,
//! `INFO nearcache_invalidation` the second section alone.

use std::time::Duration;

use proto_tests::*;

const FIELDS: &[&str] = &[
    "nearcache_version",
    "uptime_in_seconds",
    "upstream_address",
    "upstream_link_status",
    "connected_clients",
    "l1_hits",
    "l1_misses",
    "l1_hit_rate",
    "l1_entries",
    "l1_used_bytes",
    "l1_max_bytes",
    "l1_compressed_entries",
    "l1_evictions",
    "upstream_requests",
    "upstream_errors",
    "upstream_latency_avg_us",
    "audit_rate",
    "audits_done",
    "audits_failed",
    "audits_skipped",
    "stale_hits_detected",
];

const INVALIDATION_FIELDS: &[&str] = &[
    "invalidation_link",
    "tracking",
    "bus",
    "bus_channel",
    "bus_sender_id",
    "bus_publishes_keys",
    "invalidation_messages",
    "invalidation_keys_evicted",
    "bus_received_key_messages",
    "bus_received_keys",
    "bus_received_patterns",
    "bus_received_flushes",
    "bus_sent_key_messages",
    "bus_sent_keys",
    "bus_sent_patterns",
    "bus_sent_flushes",
    "bus_own_messages_skipped",
    "bus_malformed_messages",
    "bus_sequence_gaps",
    "invalidation_upstream_flushes",
    "l1_flushes_bus",
    "l1_flushes_link_lost",
    "bus_lag_last_ms",
    "bus_lag_max_ms",
];

#[test]
fn info_has_upstream_and_nearcache_sections() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    for section in [None, Some("all"), Some("everything"), Some("default")] {
        let text = c.info(section);
        assert!(
            text.contains("redis_version:"),
            "INFO {section:?} keeps the upstream's text"
        );
        assert!(
            text.contains("\r\n# Nearcache\r\n"),
            "INFO {section:?} has the Nearcache section:\n{text}"
        );
        assert!(
            text.contains("\r\n\r\n# Nearcache_Invalidation\r\n"),
            "INFO {section:?} has the Nearcache_Invalidation section:\n{text}"
        );
    }
    for section in ["nearcache", "NEARCACHE", "Nearcache"] {
        let text = c.info(Some(section));
        assert!(
            text.starts_with("# Nearcache\r\n"),
            "INFO {section}:\n{text}"
        );
        assert!(
            !text.contains("redis_version"),
            "INFO {section} is only the sidecar's:\n{text}"
        );
        for field in FIELDS.iter().chain(INVALIDATION_FIELDS) {
            assert!(
                info_field(&text, field).is_some(),
                "INFO {section} lacks {field}:\n{text}"
            );
        }
        assert!(
            text.contains("\r\n\r\n# Nearcache_Invalidation\r\n"),
            "INFO {section}:\n{text}"
        );
    }
    for section in ["nearcache_invalidation", "NEARCACHE_INVALIDATION"] {
        let text = c.info(Some(section));
        assert!(
            text.starts_with("# Nearcache_Invalidation\r\n"),
            "INFO {section}:\n{text}"
        );
        assert!(
            !text.contains("redis_version") && !text.contains("l1_hits"),
            "INFO {section} is only that section:\n{text}"
        );
        for field in INVALIDATION_FIELDS {
            assert!(
                info_field(&text, field).is_some(),
                "INFO {section} lacks {field}:\n{text}"
            );
        }
    }
    let text = c.info(Some("nearcache_invalidation"));
    assert_eq!(
        info_field(&text, "invalidation_link").as_deref(),
        Some("up")
    );
    assert_eq!(info_field(&text, "tracking").as_deref(), Some("default"));
    assert_eq!(info_field(&text, "bus").as_deref(), Some("subscribed"));
    assert_eq!(
        info_field(&text, "bus_channel").as_deref(),
        Some("nearcache:invalidate")
    );
    let text = c.info(Some("nearcache"));
    assert!(!info_field(&text, "nearcache_version").unwrap().is_empty());
    assert_eq!(
        info_field(&text, "upstream_link_status").as_deref(),
        Some("up")
    );
    let upstream = info_field(&text, "upstream_address").unwrap();
    assert!(
        upstream.contains(&format!("127.0.0.1:{}", redis.port())),
        "upstream_address {upstream:?} names the upstream"
    );
    assert_eq!(
        info_u64(&text, "l1_max_bytes"),
        256 << 20,
        "default --l1-max-bytes 256MiB"
    );
    assert!(info_u64(&text, "connected_clients") >= 1);
    // An upstream section alone stays the upstream's.
    let server = c.info(Some("server"));
    assert!(server.contains("redis_version:"), "INFO server:\n{server}");
}

#[test]
fn info_nearcache_counts_hits_and_misses() {
    let (redis, sidecar) = start_pair(&[]);
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    let mut c = sidecar.conn();
    let counts = |c: &mut Conn| {
        let text = c.info(Some("nearcache"));
        (
            info_u64(&text, "l1_hits"),
            info_u64(&text, "l1_misses"),
            text,
        )
    };
    let (h0, m0, _) = counts(&mut c);
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (miss)");
    let (h1, m1, text) = counts(&mut c);
    assert_eq!((h1, m1), (h0, m0 + 1), "a miss counts one miss\n{text}");
    assert!(
        info_u64(&text, "upstream_requests") >= 1,
        "the miss went upstream\n{text}"
    );
    assert!(
        info_u64(&text, "upstream_latency_avg_us") > 0,
        "a round trip over TCP takes some microseconds\n{text}"
    );
    assert_eq!(
        info_u64(&text, "upstream_errors"),
        0,
        "nothing failed\n{text}"
    );
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (hit)");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET (hit)");
    let (h2, m2, text) = counts(&mut c);
    assert_eq!((h2, m2), (h1 + 2, m1), "two hits count two hits\n{text}");
    let rate = info_field(&text, "l1_hit_rate").unwrap();
    let well_formed = rate.len() == 6
        && rate.as_bytes()[1] == b'.'
        && rate
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 1 || b.is_ascii_digit());
    assert!(
        well_formed,
        "l1_hit_rate {rate:?} is formatted 0.0000 .. 1.0000"
    );
    let rate: f64 = rate.parse().unwrap();
    let expected = h2 as f64 / (h2 + m2) as f64;
    assert!(
        (rate - expected).abs() < 0.001,
        "l1_hit_rate {rate}, hits {h2} misses {m2}"
    );
    poll_until(
        Duration::from_secs(3),
        "l1_entries to count the cached key",
        || info_u64(&c.info(Some("nearcache")), "l1_entries") >= 1,
    );
}

#[test]
fn info_in_resp3_keeps_the_upstream_reply_type() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    direct.hello3();
    c.hello3();
    let upstream = direct.cmd_str(&["INFO"]);
    let proxied = c.cmd_str(&["INFO"]);
    assert_eq!(
        proxied.first(),
        upstream.first(),
        "INFO in RESP3 has the upstream's reply type: {}",
        show(&proxied)
    );
    let text = String::from_utf8(bulk_reply(&proxied).unwrap()).unwrap();
    assert!(
        text.contains("redis_version:") && text.contains("# Nearcache\r\n"),
        "{text}"
    );
    let own = c.cmd_str(&["INFO", "nearcache"]);
    let text = String::from_utf8(bulk_reply(&own).unwrap()).unwrap();
    assert!(text.contains("l1_hits:"), "{text}");
    // The frames were well delimited: the connection is still in step.
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING after INFO");
}
