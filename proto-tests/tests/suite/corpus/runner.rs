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

use std::net::SocketAddr;
use std::time::Duration;

use proto_tests::{encode_command, show, Conn, Redis, Sidecar};

/// How long the tested side may take for a reply the reference already gave.
const TESTED_TIMEOUT: Duration = Duration::from_secs(2);

/// One step of a case.
#[derive(Clone, Debug)]
pub struct Cmd {
    /// The request; empty for "read `frames` more frames on the main connection".
    pub args: Vec<Vec<u8>>,
    /// Sent on the case's second connection (PUBLISH, the write that breaks a WATCH).
    pub on_other: bool,
    /// Reply frames to read after sending it (0: send only, e.g. a blocking pop that the
    /// other connection will serve; several: SUBSCRIBE to many channels).
    pub frames: usize,
    /// Only sent in this protocol version (where its reply has another frame count in the
    /// other, or cannot be framed by the client's decoder).
    pub only: Option<u8>,
}

/// A named command sequence, run from an empty dataset on fresh connections.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub commands: Vec<Cmd>,
}

impl Case {
    /// A case from lines in the tokenizer's syntax (see [`parse_line`]).
    pub fn new(name: &str, lines: &[&str]) -> Case {
        Case {
            name: name.to_string(),
            commands: lines.iter().map(|l| parse_line(l)).collect(),
        }
    }

    /// Appends a main-connection command given as raw arguments (binary, big values).
    pub fn raw(mut self, args: Vec<Vec<u8>>) -> Case {
        self.commands.push(Cmd {
            args,
            on_other: false,
            frames: 1,
            only: None,
        });
        self
    }

    /// Appends lines.
    pub fn then(mut self, lines: &[&str]) -> Case {
        self.commands.extend(lines.iter().map(|l| parse_line(l)));
        self
    }
}

/// One line of a case:
///
/// - `CMD arg ...`: a command on the main connection, one reply frame;
/// - `@N CMD arg ...`: the same, reading N frames (`@0`: send without reading);
/// - `@other CMD arg ...`: on the second connection, one frame;
/// - `@read N`: read N more frames (pub/sub messages, a blocked pop's reply);
/// - `@resp2 ...`, `@resp3 ...`: any of these, only in that protocol.
///
/// Arguments are split on whitespace; `"..."` quotes with `\\ \" \r \n \t \0 \xHH` escapes,
/// `'...'` quotes literally; `""` is an empty argument.
pub fn parse_line(line: &str) -> Cmd {
    let mut tokens = tokenize(line);
    let mut cmd = Cmd {
        args: Vec::new(),
        on_other: false,
        frames: 1,
        only: None,
    };
    for (prefix, proto) in [(&b"@resp2"[..], 2), (b"@resp3", 3)] {
        if tokens.first().is_some_and(|t| t == prefix) {
            tokens.remove(0);
            cmd.only = Some(proto);
        }
    }
    if let Some(first) = tokens.first().cloned() {
        if first == b"@other" {
            tokens.remove(0);
            cmd.on_other = true;
        } else if first == b"@read" {
            let n = std::str::from_utf8(&tokens[1]).expect("utf8");
            cmd.frames = n.parse().expect("@read N");
            return cmd;
        } else if let Some(n) = first.strip_prefix(b"@") {
            cmd.frames = std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad prefix in {line:?}"));
            tokens.remove(0);
        }
    }
    assert!(!tokens.is_empty(), "empty command line {line:?}");
    cmd.args = tokens;
    cmd
}

/// Splits a line into arguments (see [`parse_line`]).
pub fn tokenize(line: &str) -> Vec<Vec<u8>> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let mut tok = Vec::new();
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            match bytes[i] {
                b'"' => {
                    i += 1;
                    while bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            i += 1;
                            match bytes[i] {
                                b'r' => tok.push(b'\r'),
                                b'n' => tok.push(b'\n'),
                                b't' => tok.push(b'\t'),
                                b'0' => tok.push(0),
                                b'x' => {
                                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                                    tok.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                                    i += 2;
                                }
                                c => tok.push(c),
                            }
                        } else {
                            tok.push(bytes[i]);
                        }
                        i += 1;
                    }
                    i += 1;
                }
                b'\'' => {
                    i += 1;
                    while bytes[i] != b'\'' {
                        tok.push(bytes[i]);
                        i += 1;
                    }
                    i += 1;
                }
                c => {
                    tok.push(c);
                    i += 1;
                }
            }
        }
        out.push(tok);
    }
    out
}

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

/// The servers of one test: A (reference, direct) and B behind the sidecar.
pub struct Env {
    a: Redis,
    // Dropped before B (fields drop in order).
    sidecar: Option<Sidecar>,
    b: Redis,
    self_check: bool,
    /// `CORPUS_TRACE=1`: print every command with its (reference) reply.
    trace: bool,
}

impl Env {
    pub fn start() -> Env {
        let self_check = std::env::var("CORPUS_SELF_CHECK").is_ok_and(|v| v == "1");
        let perturb = std::env::var("CORPUS_PERTURB").is_ok_and(|v| v == "1");
        let a = Redis::start();
        let b = if perturb {
            Redis::start_with(&[
                "--hash-max-listpack-entries",
                "1",
                "--zset-max-listpack-entries",
                "1",
                "--set-max-intset-entries",
                "1",
            ])
        } else {
            Redis::start()
        };
        let sidecar = (!self_check).then(|| Sidecar::start(b.port(), &[]));
        Env {
            a,
            sidecar,
            b,
            self_check,
            trace: std::env::var("CORPUS_TRACE").is_ok_and(|v| v == "1"),
        }
    }

    fn tested_addr(&self) -> SocketAddr {
        match &self.sidecar {
            Some(s) => s.addr(),
            None => self.b.addr(),
        }
    }

    fn what(&self) -> &'static str {
        if self.self_check {
            "redis B (self-check)"
        } else {
            "sidecar"
        }
    }
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

/// One connection pair (main, other) on one side.
struct Side {
    main: Conn,
    other: Conn,
}

impl Side {
    /// Two fresh connections (after `HELLO 3` in RESP3); the main one then empties the
    /// server: `FLUSHALL`, `SCRIPT FLUSH`, `FUNCTION FLUSH`.
    fn open(addr: SocketAddr, proto: u8, timeout: Duration) -> Result<Side, String> {
        let mut main = connect(addr, proto, timeout)?;
        let other = connect(addr, proto, timeout)?;
        let resets: [&[&[u8]]; 3] = [
            &[b"FLUSHALL"],
            &[b"SCRIPT", b"FLUSH"],
            &[b"FUNCTION", b"FLUSH"],
        ];
        for reset in resets {
            main.try_send(&encode_command(reset))
                .map_err(|e| format!("write: {e}"))?;
            let r = main.try_read_reply().map_err(|e| format!("reset: {e}"))?;
            if r != b"+OK\r\n" {
                return Err(format!("reset {}: {}", show(&reset.concat()), show(&r)));
            }
        }
        Ok(Side { main, other })
    }

    fn conn(&mut self, other: bool) -> &mut Conn {
        if other {
            &mut self.other
        } else {
            &mut self.main
        }
    }
}

/// A connection with `timeout` on reads, switched to RESP3 with `HELLO 3` if `proto` is 3
/// (the reply, which carries a connection id, is only checked to be a map).
fn connect(addr: SocketAddr, proto: u8, timeout: Duration) -> Result<Conn, String> {
    let mut c = Conn::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(timeout);
    if proto == 3 {
        c.try_send(&encode_command(&[b"HELLO", b"3"]))
            .map_err(|e| format!("write: {e}"))?;
        c.set_protocol(proto_tests::Protocol::Resp3);
        let hello = c.try_read_reply().map_err(|e| format!("HELLO 3: {e}"))?;
        if hello.first() != Some(&b'%') {
            return Err(format!("HELLO 3 is not a map: {}", show(&hello)));
        }
    }
    Ok(c)
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
    let env = Env::start();
    let report = run(&env, cases);
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
    let mut reference = Side::open(env.a.addr(), proto, proto_tests::IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("{label}: reference redis: {e}"));
    let mut tested = Side::open(env.tested_addr(), proto, TESTED_TIMEOUT)?;
    let commands: Vec<Cmd> = case
        .commands
        .iter()
        .filter(|c| c.only.is_none_or(|only| only == proto))
        .cloned()
        .collect();
    let case = &Case {
        name: case.name.clone(),
        commands,
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
            let (g, w) = (normalise(args, &got), normalise(args, &want[n]));
            if env.trace {
                eprintln!("{label} #{k} `{}`{where_} -> {}", show_args(args), show(&w));
            }
            if g != w {
                report.divergences.push(format!(
                    "{label}: command {k} `{}`{where_}:\n    direct: {}\n    {}: {}",
                    show_args(args),
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
