//! The targets, each PASS or FAIL from this run's figures.

use super::memory::overhead;
use super::Figures;

/// One of the targets, judged on this run.
pub(super) struct Check {
    pub(super) name: String,
    /// `None`: not measured.
    pass: Option<bool>,
    pub(super) shown: String,
}

impl Check {
    pub(super) fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        }
    }
}

/// Every target of the issue.
pub(super) fn checks(f: &Figures) -> Vec<Check> {
    let ops = "ops_per_sec";
    let at_least = |name: String, value: Option<f64>, min: f64| Check {
        name,
        pass: value.map(|v| v >= min),
        shown: value.map_or("not measured".into(), |v| format!("{v:.2}x")),
    };
    let mut out = Vec::new();
    for (cmd, w1, w16) in [
        ("SET", "set_p1", "set_p16"),
        ("INCR", "incr_p1", "incr_p16"),
    ] {
        for target in ["forward", "hits"] {
            out.push(at_least(
                format!("{cmd} -P 1 through {target} >= 0.9x direct"),
                f.ratio(w1, ops, target, "direct"),
                0.9,
            ));
            out.push(at_least(
                format!("{cmd} -P 16 through {target} >= 0.8x direct"),
                f.ratio(w16, ops, target, "direct"),
                0.8,
            ));
        }
    }
    let against_direct = [
        (
            "GET -P 1 misses >= 0.8x direct",
            "getmiss_p1",
            "misses",
            0.8,
        ),
        (
            "GET -P 16 misses >= 0.6x direct",
            "getmiss_p16",
            "misses",
            0.6,
        ),
        ("GET -P 1 L1 hits >= 1.0x direct", "get_p1", "hits", 1.0),
        ("GET -P 16 L1 hits >= 0.9x direct", "get_p16", "hits", 0.9),
        ("MGET 10 all hits >= 1.0x direct", "mget_hits", "hits", 1.0),
        (
            "MGET 10, 5 hot 5 cold >= 0.9x direct",
            "mget_half",
            "hits",
            0.9,
        ),
    ];
    for (name, workload, target, min) in against_direct {
        let ratio = f.ratio(workload, ops, target, "direct");
        out.push(at_least(name.into(), ratio, min));
    }
    for (workload, label) in [
        ("mix", "mix 95/5, 100k keys of 1 KiB"),
        ("mix_read", "mix 100/0, 100k keys of 1 KiB"),
        ("mix_small", "mix 95/5, the large key space of 100 B"),
        ("mix_large", "mix 95/5, 10k keys of 16 KiB"),
    ] {
        out.push(at_least(
            format!("{label}: >= 1.0x direct"),
            f.ratio(workload, ops, "hits", "direct"),
            1.0,
        ));
        let p99 = f.ratio(workload, "p99_ms", "hits", "direct");
        out.push(Check {
            name: format!("{label}: p99 <= 1.5x direct"),
            pass: p99.map(|v| v <= 1.5),
            shown: p99.map_or("not measured".into(), |v| format!("{v:.2}x")),
        });
    }
    let ms = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.3} ms"));
    let near = f.median("remote_get", "hits", "p99_ms");
    out.push(Check {
        name: "remote: hot GET p99 through nearcache < 0.3 ms".into(),
        pass: near.map(|v| v < 0.3),
        shown: ms(near),
    });
    let far = f.median("remote_get", "direct", "p99_ms");
    out.push(Check {
        name: "remote: GET p99 direct through the relay > 1 ms".into(),
        pass: far.map(|v| v > 1.0),
        shown: ms(far),
    });
    let over = overhead(f);
    out.push(Check {
        name: "L1 overhead <= 64 bytes per entry beyond key and value".into(),
        pass: over.map(|v| v <= 64.0),
        shown: over.map_or("not measured".into(), |v| format!("{v:.0} bytes")),
    });
    let b = |metric| f.median("bounded", "nearcache", metric);
    let growth = (|| Some((b("rss_after")? - b("rss_before")?) / b("bound")?))();
    out.push(Check {
        name: "bounded L1: RSS growth within 10% of --l1-max-bytes".into(),
        pass: growth.map(|g| g <= 1.10),
        shown: growth.map_or("not measured".into(), |g| format!("{:.1}%", g * 100.0)),
    });
    out
}
