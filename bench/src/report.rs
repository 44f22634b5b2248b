//! The report of `make bench`: reads every raw figure (`workload,target,round,metric,value`
//! lines), takes the median over rounds, and renders one table (a row per workload, a
//! column per target, each figure with its ratio to direct Redis), the memory figures, and
//! the targets with PASS or FAIL computed from this run.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Context, Result};

/// Column order.
const TARGETS: [&str; 5] = ["direct", "hits", "misses", "forward", "twemproxy"];

/// What a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    OpsPerSec,
    Ms,
}

/// One row: a workload's metric on every target that ran it.
struct Row {
    workload: &'static str,
    metric: &'static str,
    label: &'static str,
}

impl Row {
    fn unit(&self) -> Unit {
        if self.metric == "ops_per_sec" {
            Unit::OpsPerSec
        } else {
            Unit::Ms
        }
    }
}

const fn row(workload: &'static str, metric: &'static str, label: &'static str) -> Row {
    Row {
        workload,
        metric,
        label,
    }
}

/// The table, in order. `{keys}` is replaced by the large key space's size.
const ROWS: &[Row] = &[
    row("get_p1", "ops_per_sec", "GET -P 1, 10k keys"),
    row("get_p16", "ops_per_sec", "GET -P 16, 10k keys"),
    row("getmiss_p1", "ops_per_sec", "GET -P 1, {keys} keys"),
    row("getmiss_p16", "ops_per_sec", "GET -P 16, {keys} keys"),
    row("set_p1", "ops_per_sec", "SET -P 1"),
    row("set_p16", "ops_per_sec", "SET -P 16"),
    row("incr_p1", "ops_per_sec", "INCR -P 1"),
    row("incr_p16", "ops_per_sec", "INCR -P 16"),
    row("mget_hits", "ops_per_sec", "MGET 10 keys, all hot"),
    row("mget_half", "ops_per_sec", "MGET 10 keys, 5 hot 5 cold"),
    row("mix", "ops_per_sec", "mix 95/5 GET/SET, Zipf, 1 KiB"),
    row("mix", "p50_ms", "mix p50 ms"),
    row("mix", "p99_ms", "mix p99 ms"),
    row("idle", "ops_per_sec", "GET -P 1 + 2000 idle clients"),
    row("remote_get", "p50_ms", "remote: GET p50 ms, 4 clients"),
    row("remote_get", "p99_ms", "remote: GET p99 ms, 4 clients"),
    row("remote_mix", "ops_per_sec", "remote: mix"),
    row("remote_mix", "p99_ms", "remote: mix p99 ms"),
];

/// Every figure of a run.
#[derive(Debug, Default)]
pub struct Figures {
    /// (workload, target, metric) -> one value per round.
    values: BTreeMap<(String, String, String), Vec<f64>>,
    /// (workload, target) -> why it could not be measured.
    errors: BTreeMap<(String, String), String>,
    /// `meta` lines: name -> text.
    meta: BTreeMap<String, String>,
}

impl Figures {
    /// Parses the raw CSV (a header line, then `workload,target,round,metric,value`; the
    /// value of `error` and `meta` lines is text and may hold commas).
    pub fn parse(csv: &str) -> Result<Figures> {
        let mut figures = Figures::default();
        for (i, line) in csv.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.splitn(5, ',').collect();
            let [workload, target, _round, metric, value] = fields[..] else {
                bail!("line {}: want 5 fields: {line}", i + 1);
            };
            match (workload, metric) {
                ("meta", _) => {
                    figures.meta.insert(target.into(), value.into());
                }
                (_, "error") => {
                    figures
                        .errors
                        .insert((workload.into(), target.into()), value.into());
                }
                _ => {
                    let v: f64 = value
                        .parse()
                        .with_context(|| format!("line {}: value {value:?}", i + 1))?;
                    figures
                        .values
                        .entry((workload.into(), target.into(), metric.into()))
                        .or_default()
                        .push(v);
                }
            }
        }
        Ok(figures)
    }

    /// The median over rounds.
    fn median(&self, workload: &str, target: &str, metric: &str) -> Option<f64> {
        let key = (workload.to_owned(), target.to_owned(), metric.to_owned());
        let mut v = self.values.get(&key)?.clone();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        })
    }

    /// `target`'s median over `base`'s.
    fn ratio(&self, workload: &str, metric: &str, target: &str, base: &str) -> Option<f64> {
        let b = self.median(workload, base, metric)?;
        (b > 0.0).then_some(self.median(workload, target, metric)? / b)
    }

    fn meta(&self, name: &str) -> &str {
        self.meta.get(name).map_or("?", String::as_str)
    }
}

/// The rendered report: markdown for the file, aligned text for the terminal.
pub struct Rendered {
    /// For `report.md`.
    pub markdown: String,
    /// For stdout.
    pub text: String,
}

/// Renders every section.
pub fn render(f: &Figures) -> Rendered {
    let mut notes = Vec::new();
    let table = table(f, &mut notes);
    let memory = memory_lines(f);
    let checks = checks(f);

    let mut md = String::new();
    let mut text = String::new();
    let intro = format!(
        "{}; rounds: {}, {} s per measurement, each figure the median of the rounds, \
         the ratio to direct Redis in parentheses. {}.",
        f.meta("versions"),
        f.meta("rounds"),
        f.meta("seconds"),
        f.meta("machine")
    );
    let _ = writeln!(md, "# nearcache benchmark\n\n{intro}\n");
    let _ = writeln!(text, "{}\n", wrap(&intro, "", "", 100));
    md.push_str(&markdown_table(&table));
    text.push_str(&text_table(&table));
    md.push('\n');
    text.push('\n');
    let notes = notes.iter().enumerate().map(|(k, note)| {
        format!(
            "[{}] not measured in the rounds without a figure: {note}",
            k + 1
        )
    });
    for line in legend(f).into_iter().chain(notes) {
        let _ = writeln!(md, "- {line}");
        let _ = writeln!(text, "{}", wrap(&line, "  - ", "    ", 100));
    }

    let _ = writeln!(md, "\n## Memory\n");
    let _ = writeln!(text, "\nmemory:");
    for line in &memory {
        let _ = writeln!(md, "- {line}");
        let _ = writeln!(text, "{}", wrap(line, "  - ", "    ", 100));
    }

    let _ = writeln!(
        md,
        "\n## Targets\n\n| result | target | this run |\n|---|---|---|"
    );
    let _ = writeln!(text, "\ntargets:");
    for c in &checks {
        let _ = writeln!(md, "| {} | {} | {} |", c.verdict(), c.name, c.shown);
        let _ = writeln!(text, "  {:<5} {} ({})", c.verdict(), c.name, c.shown);
    }
    Rendered { markdown: md, text }
}

/// Header and cells of the main table.
fn table(f: &Figures, notes: &mut Vec<String>) -> Vec<Vec<String>> {
    let mut rows = vec![std::iter::once("test")
        .chain(TARGETS)
        .map(str::to_owned)
        .collect::<Vec<_>>()];
    let keys = f.meta("keys");
    for r in ROWS {
        let mut cells = vec![r.label.replace("{keys}", &short_count(keys))];
        for target in TARGETS {
            cells.push(cell(f, r, target, notes));
        }
        rows.push(cells);
    }
    rows
}

/// One figure with its ratio to direct; `-` when not run; `n/a [k]` when it could not be
/// measured, note k saying why (a figure from the rounds that could is shown before `[k]`).
fn cell(f: &Figures, r: &Row, target: &str, notes: &mut Vec<String>) -> String {
    let note = f
        .errors
        .get(&(r.workload.to_owned(), target.to_owned()))
        .map(|why| {
            let note = format!("{} on {target}: {why}", r.workload);
            let k = notes.iter().position(|n| *n == note).unwrap_or_else(|| {
                notes.push(note);
                notes.len() - 1
            });
            format!(" [{}]", k + 1)
        });
    let Some(v) = f.median(r.workload, target, r.metric) else {
        return match note {
            Some(note) => format!("n/a{note}"),
            None => "-".into(),
        };
    };
    let shown = match r.unit() {
        Unit::OpsPerSec => short_rate(v),
        Unit::Ms => format!("{v:.3}"),
    };
    let ratio = match (target, f.ratio(r.workload, r.metric, target, "direct")) {
        ("direct", _) | (_, None) => String::new(),
        (_, Some(ratio)) => format!(" ({ratio:.2}x)"),
    };
    format!("{shown}{ratio}{}", note.unwrap_or_default())
}

/// What the table's rows and columns mean.
fn legend(f: &Figures) -> Vec<String> {
    vec![
        "Targets: direct = redis-server itself; hits = nearcache with default flags (L1 warmed \
         before each run); misses = nearcache with --l1-max-bytes 1MiB over the large key \
         space, so nearly every GET misses, fetches and fills; forward = nearcache with \
         --l1-ttl 0; twemproxy = nutcracker, one server, the reference forwarder. Figures are \
         ops/s unless the row says ms."
            .into(),
        format!(
            "50 clients and 100-byte values unless the row says otherwise. The mix is 95% GET / \
             5% SET over 100k keys of 1 KiB, Zipf s = 0.99. MGET cold keys are drawn from 10^12 \
             names that almost never repeat (nil upstream). The {} key space exists upstream. \
             Redis runs with --tracking-table-max-keys 0: past its default of 1M tracked keys \
             (all sidecars together) it invalidates tracked keys at random, hits among them.",
            short_count(f.meta("keys"))
        ),
        format!(
            "remote rows: Redis behind a relay adding {} ms each way (measured added round \
             trip {} ms); direct = the benchmark through the relay, hits = nearcache whose \
             upstream is the relay; GET latency over 1000 hot keys with 4 clients, the mix \
             with 50.",
            f.meta("relay_delay_ms"),
            f.median("relay", "direct", "added_rtt_ms")
                .map_or("?".into(), |v| format!("{v:.3}"))
        ),
    ]
}

/// The memory section's lines.
fn memory_lines(f: &Figures) -> Vec<String> {
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
fn overhead(f: &Figures) -> Option<f64> {
    let m = |metric| f.median("memory", "nearcache", metric);
    let entries = m("l1_entries").filter(|&e| e > 0.0).or(m("keys"))?;
    Some((m("rss_after")? - m("rss_before")?) / entries - m("key_bytes")? - m("value_bytes")?)
}

/// One of the targets, judged on this run.
struct Check {
    name: String,
    /// `None`: not measured.
    pass: Option<bool>,
    shown: String,
}

impl Check {
    fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        }
    }
}

/// Every target of the issue.
fn checks(f: &Figures) -> Vec<Check> {
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
        }
        for target in ["forward", "hits"] {
            out.push(at_least(
                format!("{cmd} -P 16 through {target} >= 2x twemproxy"),
                f.ratio(w16, ops, target, "twemproxy"),
                2.0,
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
        ("GET -P 1 L1 hits >= 1.0x direct", "get_p1", "hits", 1.0),
        ("GET -P 16 L1 hits >= 0.9x direct", "get_p16", "hits", 0.9),
        ("MGET 10 all hits >= 1.0x direct", "mget_hits", "hits", 1.0),
    ];
    for (name, workload, target, min) in against_direct {
        let ratio = f.ratio(workload, ops, target, "direct");
        out.push(at_least(name.into(), ratio, min));
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
        name: "L1 overhead <= 150 bytes per entry beyond key and value".into(),
        pass: over.map(|v| v <= 150.0),
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

/// `1000000` -> `1M`, `10000` -> `10k`; other text unchanged.
fn short_count(n: &str) -> String {
    match n.parse::<f64>() {
        Ok(v) if v >= 1e6 && v % 1e5 == 0.0 => format!("{}M", v / 1e6),
        Ok(v) if v >= 1e3 && v % 1e2 == 0.0 => format!("{}k", v / 1e3),
        _ => n.to_owned(),
    }
}

/// `78412` -> `78.4k`, `1035727` -> `1.04M`.
fn short_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// `text` in lines of at most `width` characters (a longer word alone), the first after
/// `first`, the others after `rest`.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{line}");
            line = String::from(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(out, "| {} |", r.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(r.len()));
        }
    }
    out
}

fn text_table(rows: &[Vec<String>]) -> String {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = format!("{:<w$}", r[0], w = widths[0]);
        for (c, cell) in r.iter().enumerate().skip(1) {
            let _ = write!(line, "  {:>w$}", cell, w = widths[c]);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
