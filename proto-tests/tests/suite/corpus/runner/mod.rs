//! The corpus runner: the same cases on a reference redis-server (A, direct) and on a
//! second one (B) behind the sidecar, in RESP2 and RESP3, one command at a time and
//! pipelined, every reply compared byte for byte.
//!
//! Both servers start identically and every case starts from `FLUSHALL`, `SCRIPT FLUSH`
//! and `FUNCTION FLUSH` on fresh connections, so identical commands give identical replies
//! except for connection ids, which are normalised (`HELLO`'s `id` field, `CLIENT ID`).
//!
//! `CORPUS_SELF_CHECK=1` talks to B directly instead of through the sidecar: the harness
//! itself must then find no divergence between two plain redis-servers.
//! `CORPUS_PERTURB=1` starts B with other encoding limits (listpacks of one entry), which
//! must make divergences appear: a check that the comparison can fail.
//! `CORPUS_TRACE=1` prints every command with its reply.
//!
//! Cluster mode ([`run_cluster_corpus`], see `cluster.rs`): B is a Redis Cluster of three
//! primaries and three replicas behind the sidecar; the keys of each command get one common
//! hash tag on both sides, and what Redis Cluster itself answers otherwise is listed.

mod case;
mod cluster;
mod listed;
mod side;

use std::time::Duration;

use proto_tests::{encode_command, show};

use side::{Env, Side, RESETS};

pub use case::{parse_line, tokenize, Case, Cmd};

/// How long the tested side may take for a reply the reference already gave.
const TESTED_TIMEOUT: Duration = Duration::from_secs(2);

/// Replaces what differs between any two connections (their ids) with a placeholder.
fn normalise(args: &[Vec<u8>], reply: &[u8]) -> Vec<u8> {
    let name = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    if name == b"CLIENT" && sub == b"ID" && args.len() == 2 {
        if reply.first() == Some(&b':') {
            return b":<id>\r\n".to_vec();
        }
        return reply.to_vec();
    }
    if name == b"HELLO" {
        let marker = b"$2\r\nid\r\n:";
        if let Some(at) = reply.windows(marker.len()).position(|w| w == marker) {
            let start = at + marker.len();
            let end = start
                + reply[start..]
                    .iter()
                    .position(|&b| b == b'\r')
                    .expect("CRLF after id");
            let mut out = reply[..start].to_vec();
            out.extend_from_slice(b"<id>");
            out.extend_from_slice(&reply[end..]);
            return out;
        }
    }
    reply.to_vec()
}

/// How a case's commands are written.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// One command, then its reply frames, then the next.
    Alone,
    /// Consecutive main-connection commands written at once, then all their frames read;
    /// a step on the other connection or a `@read` is a synchronisation point (the
    /// WATCH-breaking write must land between WATCH and EXEC, a PUBLISH after SUBSCRIBE).
    Pipelined,
}

/// What a run found.
#[derive(Default)]
pub struct Report {
    pub cases: usize,
    pub commands: usize,
    pub divergences: Vec<String>,
}

fn show_args(args: &[Vec<u8>]) -> String {
    if args.is_empty() {
        return "(read more frames)".to_string();
    }
    let parts: Vec<String> = args
        .iter()
        .map(|a| {
            if a.len() > 64 {
                format!("<{} bytes>", a.len())
            } else {
                a.escape_ascii().to_string()
            }
        })
        .collect();
    parts.join(" ")
}

/// Runs `cases` in RESP2 and RESP3, alone and pipelined, on both sides of `env`; prints
/// the counts and panics listing every divergence.
pub fn run_corpus(title: &str, cases: &[Case]) {
    run_on(&Env::start(), title, cases);
}

/// Runs `cases` against a Redis Cluster behind the sidecar (see `cluster.rs`): listed
/// differences left out, keys tagged; panics listing every other divergence.
///
/// Not run under `CORPUS_SELF_CHECK=1` (the self-check compares two plain redis-servers).
pub fn run_cluster_corpus(title: &str, cases: &[Case]) {
    if std::env::var("CORPUS_SELF_CHECK").is_ok_and(|v| v == "1") {
        eprintln!(
            "corpus {title}: not run under CORPUS_SELF_CHECK (cluster mode tests the sidecar)"
        );
        return;
    }
    let env = Env::start_cluster();
    let prepared = env
        .cluster()
        .expect("a cluster environment")
        .prepare(&env.a, cases);
    run_on(&env, title, &prepared);
}

fn run_on(env: &Env, title: &str, cases: &[Case]) {
    let report = run(env, cases);
    let mut groups: Vec<(String, usize, usize)> = Vec::new();
    for case in cases {
        let group = case.name.split('/').next().unwrap_or("").to_string();
        match groups.iter_mut().find(|g| g.0 == group) {
            Some(g) => {
                g.1 += 1;
                g.2 += case.commands.len();
            }
            None => groups.push((group, 1, case.commands.len())),
        }
    }
    for (group, n, m) in &groups {
        eprintln!("  corpus {title} / {group}: {n} cases, {m} commands");
    }
    let commands: usize = cases.iter().map(|c| c.commands.len()).sum();
    eprintln!(
        "corpus {title}: {} cases, {} commands ({} case runs, {} command runs: RESP2/RESP3 x alone/pipelined), {} divergences ({} vs direct redis)",
        cases.len(),
        commands,
        report.cases,
        report.commands,
        report.divergences.len(),
        env.what(),
    );
    if !report.divergences.is_empty() {
        panic!(
            "corpus {title}: {} divergences between direct redis and the {}:\n{}",
            report.divergences.len(),
            env.what(),
            report.divergences.join("\n")
        );
    }
}

fn run(env: &Env, cases: &[Case]) -> Report {
    let mut report = Report::default();
    for proto in [2u8, 3] {
        for mode in [Mode::Alone, Mode::Pipelined] {
            let mut stalled = false;
            for case in cases {
                let label = format!("[RESP{proto} {mode:?}] {}", case.name);
                if stalled {
                    report.divergences.push(format!(
                        "{label}: skipped (an earlier case of this run timed out)"
                    ));
                    continue;
                }
                report.cases += 1;
                report.commands += case.commands.len();
                if let Err(e) = run_case(env, case, proto, mode, &label, &mut report) {
                    report.divergences.push(format!("{label}: {e}"));
                    stalled = e.contains("timed out") || e.contains("no complete reply");
                }
            }
        }
    }
    report
}

/// Runs one case; an `Err` is a failure on the tested side that ends the case.
fn run_case(
    env: &Env,
    case: &Case,
    proto: u8,
    mode: Mode,
    label: &str,
    report: &mut Report,
) -> Result<(), String> {
    let mut reference = Side::open(env.a.addr(), proto, proto_tests::IO_TIMEOUT, &RESETS)
        .unwrap_or_else(|e| panic!("{label}: reference redis: {e}"));
    let mut tested = match env.cluster() {
        Some(c) => {
            c.reset(&RESETS)?;
            Side::open(
                env.tested_addr(),
                proto,
                TESTED_TIMEOUT,
                &[cluster::L1_FLUSH],
            )?
        }
        None => Side::open(env.tested_addr(), proto, TESTED_TIMEOUT, &RESETS)?,
    };
    let commands: Vec<Cmd> = case
        .commands
        .iter()
        .filter(|c| c.only.is_none_or(|only| only == proto))
        .cloned()
        .collect();
    let case = &Case {
        commands,
        ..case.clone()
    };
    // Steps: a batch of consecutive main-connection commands when pipelined, else one.
    let mut i = 0;
    while i < case.commands.len() {
        let first = &case.commands[i];
        let mut end = i + 1;
        if matches!(mode, Mode::Pipelined) && !first.on_other && !first.args.is_empty() {
            while end < case.commands.len()
                && !case.commands[end].on_other
                && !case.commands[end].args.is_empty()
            {
                end += 1;
            }
        }
        let batch = &case.commands[i..end];
        let on_other = first.on_other;
        let request: Vec<u8> = batch
            .iter()
            .filter(|c| !c.args.is_empty())
            .flat_map(|c| {
                let args: Vec<&[u8]> = c.args.iter().map(|a| a.as_slice()).collect();
                encode_command(&args)
            })
            .collect();
        // Which command each expected frame belongs to.
        let owners: Vec<usize> = batch
            .iter()
            .enumerate()
            .flat_map(|(k, c)| std::iter::repeat_n(i + k, c.frames))
            .collect();
        let r = reference.conn(on_other);
        r.send(&request);
        let want: Vec<Vec<u8>> = owners
            .iter()
            .map(|&k| {
                r.try_read_reply().unwrap_or_else(|e| {
                    panic!(
                        "{label}: reference redis gave no reply to `{}`: {e}",
                        show_args(&case.commands[k].args)
                    )
                })
            })
            .collect();
        let t = tested.conn(on_other);
        t.try_send(&request).map_err(|e| format!("write: {e}"))?;
        for (n, &k) in owners.iter().enumerate() {
            let args = &case.commands[k].args;
            let where_ = if case.commands[k].on_other {
                " (other connection)"
            } else {
                ""
            };
            let got = t.try_read_reply().map_err(|e| {
                format!(
                    "command {k} `{}`{where_}: no reply, want {}: {e}",
                    show_args(args),
                    show(&want[n])
                )
            })?;
            let listed = case.commands[k]
                .cluster_reply
                .as_ref()
                .filter(|_| env.cluster().is_some());
            let reference = listed.unwrap_or(&want[n]);
            let (mut g, mut w) = (normalise(args, &got), normalise(args, reference));
            if env.cluster().is_some() {
                g = listed::normalise_mode(args, g);
                w = listed::normalise_mode(args, w);
            }
            if env.trace {
                eprintln!("{label} #{k} `{}`{where_} -> {}", show_args(args), show(&w));
            }
            if g != w {
                report.divergences.push(format!(
                    "{label}: command {k} `{}`{where_}:\n    {}: {}\n    {}: {}",
                    show_args(args),
                    if listed.is_some() {
                        "redis cluster"
                    } else {
                        "direct"
                    },
                    show(&w),
                    env.what(),
                    show(&g)
                ));
            }
        }
        i = end;
    }
    // Nothing more may arrive on either side (an extra push, a reply too many): a final
    // PING on each connection must get the same reply on both sides.
    for other in [false, true] {
        let ping = encode_command(&[b"PING"]);
        let r = reference.conn(other);
        r.send(&ping);
        let want = r.read_reply();
        let t = tested.conn(other);
        t.try_send(&ping).map_err(|e| format!("write: {e}"))?;
        let got = t
            .try_read_reply()
            .map_err(|e| format!("final PING: no reply, want {}: {e}", show(&want)))?;
        if got != want {
            report.divergences.push(format!(
                "{label}: final PING on the {} connection:\n    direct: {}\n    {}: {}",
                if other { "other" } else { "main" },
                show(&want),
                env.what(),
                show(&got)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        let c = parse_line(r#"SET k "a b\r\n\0\x41" '' """#);
        assert_eq!(
            c.args,
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"a b\r\n\0A".to_vec(),
                Vec::new(),
                Vec::new()
            ]
        );
        let c = parse_line("@other PUBLISH ch m");
        assert!(c.on_other && c.frames == 1 && c.args.len() == 3);
        let c = parse_line("@2 SUBSCRIBE a b");
        assert!(!c.on_other && c.frames == 2);
        let c = parse_line("@resp3 @2 PUBLISH ch m");
        assert!(c.only == Some(3) && c.frames == 2 && c.args.len() == 3);
        let c = parse_line("@read 3");
        assert!(c.args.is_empty() && c.frames == 3);
        assert_eq!(
            normalise(&[b"CLIENT".to_vec(), b"ID".to_vec()], b":17\r\n"),
            b":<id>\r\n"
        );
    }
}
