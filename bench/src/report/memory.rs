//! The memory section: resident bytes per L1 entry and the growth of a bounded L1.

use super::{short_count, Figures};

/// The memory section's lines.
pub(super) fn memory_lines(f: &Figures) -> Vec<String> {
    let m = |metric| f.median("memory", "nearcache", metric);
    let b = |metric| f.median("bounded", "nearcache", metric);
    let mut lines = Vec::new();
    if let Some(why) = f.errors.get(&("memory".into(), "nearcache".into())) {
        lines.push(format!("L1 overhead: not measured: {why}"));
    } else if let (Some(keys), Some(kb), Some(vb), Some(before), Some(after)) = (
        m("keys"),
        m("key_bytes"),
        m("value_bytes"),
        m("rss_before"),
        m("rss_after"),
    ) {
        lines.push(format!(
            "{} keys of {kb:.0}+{vb:.0} bytes read once through nearcache (--l1-max-bytes \
             {}): l1_entries {}, l1_used_bytes {} ({:.0} per entry as L1 counts them); RSS \
             {:.1} -> {:.1} MiB, {:.0} bytes per entry, {:.0} beyond key and value",
            short_count(&format!("{keys}")),
            f.meta("memory_bound"),
            m("l1_entries").map_or("?".into(), |v| format!("{v:.0}")),
            m("l1_used_bytes").map_or("?".into(), |v| format!("{v:.0}")),
            m("l1_used_bytes").unwrap_or(0.0) / m("l1_entries").unwrap_or(1.0).max(1.0),
            before / MIB,
            after / MIB,
            (after - before) / m("l1_entries").filter(|&e| e > 0.0).unwrap_or(keys),
            overhead(f).unwrap_or(f64::NAN),
        ));
    } else {
        lines.push("L1 overhead: not measured".into());
    }
    if let Some(why) = f.errors.get(&("bounded".into(), "nearcache".into())) {
        lines.push(format!("bounded L1: not measured: {why}"));
    } else if let (Some(bound), Some(keys), Some(before), Some(after)) =
        (b("bound"), b("keys"), b("rss_before"), b("rss_after"))
    {
        lines.push(format!(
            "--l1-max-bytes {:.0} MiB, {} keys read once (about {:.0}x what fits): \
             l1_entries {}, l1_used_bytes {:.1} MiB, l1_evictions {}; RSS growth {:.1} MiB \
             = {:.1}% of the bound (peak {:.1}%)",
            bound / MIB,
            short_count(&format!("{keys}")),
            keys / b("l1_entries").unwrap_or(keys).max(1.0),
            b("l1_entries").map_or("?".into(), |v| format!("{v:.0}")),
            b("l1_used_bytes").unwrap_or(f64::NAN) / MIB,
            b("l1_evictions").map_or("?".into(), |v| format!("{v:.0}")),
            (after - before) / MIB,
            (after - before) / bound * 100.0,
            b("hwm_after").map_or(f64::NAN, |h| (h - before) / bound * 100.0),
        ));
    } else {
        lines.push("bounded L1: not measured".into());
    }
    lines
}

const MIB: f64 = 1024.0 * 1024.0;

/// Resident bytes per L1 entry beyond its key and value (per entry L1 holds, should it
/// hold fewer than the keys read).
pub(super) fn overhead(f: &Figures) -> Option<f64> {
    let m = |metric| f.median("memory", "nearcache", metric);
    let entries = m("l1_entries").filter(|&e| e > 0.0).or(m("keys"))?;
    Some((m("rss_after")? - m("rss_before")?) / entries - m("key_bytes")? - m("value_bytes")?)
}
