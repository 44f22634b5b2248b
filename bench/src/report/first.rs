//! The namespaces and warming section: what 20 configured namespaces cost on the hit path,
//! and the hit ratio of a new sidecar's first requests, cold and warmed.

use super::{short_count, Figures};

/// Hit-path rows measured on both `hits` and `ns20`.
const NAMESPACE_ROWS: [(&str, &str); 3] = [
    ("get_p1", "GET -P 1"),
    ("get_p16", "GET -P 16"),
    ("mget_hits", "MGET 10 hits"),
];

/// How a new sidecar started, as `first` lines name it.
const SCENARIOS: [(&str, &str); 4] = [
    ("cold", "cold"),
    ("patterns", "warmed from the pattern mix:*"),
    (
        "peers_1024",
        "warmed from a peer, peer_keys 1024 (the default)",
    ),
    ("peers_4096", "warmed from a peer, peer_keys 4096"),
];

/// The section's lines.
pub(super) fn lines(f: &Figures) -> Vec<String> {
    let ratios: Vec<String> = NAMESPACE_ROWS
        .iter()
        .map(|(workload, label)| {
            let shown = f
                .ratio(workload, "ops_per_sec", "ns20", "hits")
                .map_or("not measured".into(), |r| format!("{r:.2}x"));
            format!("{label} {shown}")
        })
        .collect();
    let mut out = vec![format!(
        "hit path with 20 namespaces configured against none (ns20 / hits, same run; the hot \
         keys' namespace is the last of 20 whose patterns a key:... name is tried against): {}",
        ratios.join(", ")
    )];
    let shown: Vec<String> = SCENARIOS
        .iter()
        .filter_map(|(scenario, label)| {
            if let Some(why) = f.errors.get(&("first".into(), (*scenario).into())) {
                return Some(format!("{label}: not measured: {why}"));
            }
            let ratio = f.median("first", scenario, "hit_ratio")?;
            let warmed = f
                .median("first", scenario, "keys_warmed")
                .filter(|&k| k > 0.0)
                .map_or(String::new(), |k| format!(" ({k:.0} keys loaded)"));
            Some(format!("{label}{warmed} {:.1}%", ratio * 100.0))
        })
        .collect();
    if shown.is_empty() {
        out.push("first requests of a new sidecar: not measured".into());
    } else {
        out.push(format!(
            "hit ratio of the first {} requests of a newly started sidecar (sequential GETs, \
             Zipf s = 0.99 over the 100k mix keys; the peer had served {} such GETs from 50 \
             clients, other draws, before the new sidecar started): {}",
            f.median("first", "cold", "requests")
                .map_or("10000".into(), |n| format!("{n:.0}")),
            f.median("first", "peer", "requests")
                .map_or("?".into(), |n| short_count(&format!("{n:.0}"))),
            shown.join("; ")
        ));
    }
    out
}
