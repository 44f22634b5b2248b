//! The report of `make bench`: reads every raw figure (`workload,target,round,metric,value`
//! lines), takes the median over rounds, and renders one table (a row per workload, a
//! column per target, each figure with its ratio to direct Redis), the memory figures, and
//! the targets with PASS or FAIL computed from this run.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Context, Result};

mod checks;
mod first;
mod memory;

use checks::checks;
use memory::memory_lines;

/// Column order.
const TARGETS: [&str; 8] = [
    "direct",
    "hits",
    "ns20",
    "bcast",
    "misses",
    "admit2",
    "forward",
    "twemproxy",
];

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
    row("mix_read", "ops_per_sec", "mix 100/0 GET/SET, Zipf, 1 KiB"),
    row("mix_read", "p99_ms", "mix 100/0 p99 ms"),
    row(
        "mix_small",
        "ops_per_sec",
        "mix 95/5, Zipf, {keys} keys of 100 B",
    ),
    row("mix_small", "p99_ms", "mix 95/5 {keys} keys p99 ms"),
    row(
        "mix_large",
        "ops_per_sec",
        "mix 95/5, Zipf, 10k keys of 16 KiB",
    ),
    row("mix_large", "p99_ms", "mix 95/5 16 KiB p99 ms"),
    row("idle", "ops_per_sec", "GET -P 1 + 2000 idle clients"),
    row("remote_get", "p50_ms", "remote: GET p50 ms, 4 clients"),
    row("remote_get", "p99_ms", "remote: GET p99 ms, 4 clients"),
    row("remote_mix", "ops_per_sec", "remote: mix"),
    row("remote_mix", "p99_ms", "remote: mix p99 ms"),
    row("invalidate_quiet", "p99_ms", "GET p99 ms, {keys}-entry L1"),
    row(
        "invalidate_busy",
        "p99_ms",
        "GET p99 ms, {keys}-entry L1, INVALIDATE loop",
    ),
    row("tls_get_p1", "ops_per_sec", "TLS: GET -P 1, 10k keys"),
    row("tls_get_p16", "ops_per_sec", "TLS: GET -P 16, 10k keys"),
    row(
        "tls_getmiss_p1",
        "ops_per_sec",
        "TLS: GET -P 1, {keys} keys",
    ),
    row(
        "tls_getmiss_p16",
        "ops_per_sec",
        "TLS: GET -P 16, {keys} keys",
    ),
    row("tls_set_p1", "ops_per_sec", "TLS: SET -P 1"),
    row("tls_set_p16", "ops_per_sec", "TLS: SET -P 16"),
    row(
        "cluster_get_p1",
        "ops_per_sec",
        "Cluster: GET -P 1, 10k keys",
    ),
    row(
        "cluster_get_p16",
        "ops_per_sec",
        "Cluster: GET -P 16, 10k keys",
    ),
    row(
        "cluster_getmiss_p1",
        "ops_per_sec",
        "Cluster: GET -P 1, {keys} keys",
    ),
    row("cluster_set_p1", "ops_per_sec", "Cluster: SET -P 1"),
    row("cluster_set_p16", "ops_per_sec", "Cluster: SET -P 16"),
    row("cluster_mget", "ops_per_sec", "Cluster: MGET 10 keys"),
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

    let _ = writeln!(md, "\n## Namespaces and warming\n");
    let _ = writeln!(text, "\nnamespaces and warming:");
    for line in &first::lines(f) {
        let _ = writeln!(md, "- {line}");
        let _ = writeln!(text, "{}", wrap(line, "  - ", "    ", 100));
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
         space, so nearly every GET misses, fetches and fills; admit2 = misses with \
         --l1-admit-second-miss true (GET miss rows only: a first miss is the plain GET); \
         forward = nearcache with \
         --l1-ttl 0; ns20 = hits with 20 namespaces configured (hit-path rows only); bcast = hits with --tracking bcast --tracking-prefixes key: (hit-path rows only); twemproxy = nutcracker, one server, the reference forwarder. Figures are \
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
        format!(
            "{keys}-entry L1 rows: GET latency of 50 clients over the 10k hot keys of a \
             nearcache whose L1 holds the {keys} keys, quiet, then while one more client sends \
             NEARCACHE INVALIDATE 'user:*' back to back (no key matches; each one registers \
             the pattern and waits for a pass over L1 off the worker thread): {} of them \
             completed in a run of {} s.",
            f.median("invalidate_busy", "hits", "invalidations")
                .map_or("?".into(), |v| format!("{v:.0}")),
            f.median("invalidate_busy", "hits", "seconds")
                .map_or("?".into(), |v| format!("{v:.1}")),
            keys = short_count(f.meta("keys")),
        ),
        "TLS rows: a second redis-server listening for TLS only (certificates made by the \
         script, no client certificate asked for); direct = redis-benchmark --tls to it (what \
         an application doing TLS itself pays); hits and misses = nearcache over rediss:// \
         (--upstream-tls-ca) with the flags of those columns, redis-benchmark in plain text to \
         it on localhost (the sidecar does TLS upstream). The ratio is to direct TLS."
            .into(),
        "Cluster rows: three primaries (`redis-cli --cluster create`, no replicas); direct = \
         redis-benchmark --cluster to them (it learns the slots and sends each key to its \
         owner; its keys carry a hash tag per node); hits and misses = nearcache over \
         redis+cluster:// with the flags of those columns, redis-benchmark to it as to one \
         Redis. MGET: redis-benchmark running MGET of 10 keys; straight to the cluster they carry \
         one {tag} (one slot of a node, a cluster client's best case, as a command cannot span \
         slots), through the sidecar they are 10 random hot keys over the three primaries (L1 \
         first, the misses one MGET per slot)."
            .into(),
    ]
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
