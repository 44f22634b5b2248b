//! A case: named command lines in a small tokenizer syntax, with the cluster-mode options
//! (untagged keys, a reply Redis Cluster itself gives instead of the reference's).

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
    /// In cluster mode, the reply Redis Cluster itself gives (a listed difference, such as
    /// `-CROSSSLOT`): the tested side is compared with it instead of the reference's reply.
    pub cluster_reply: Option<Vec<u8>>,
}

/// A named command sequence, run from an empty dataset on fresh connections.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub commands: Vec<Cmd>,
    /// In cluster mode, keys stay as written (no common hash tag): the commands the
    /// sidecar splits across slots.
    pub untagged: bool,
}

impl Case {
    /// A case from lines in the tokenizer's syntax (see [`parse_line`]).
    pub fn new(name: &str, lines: &[&str]) -> Case {
        Case {
            name: name.to_string(),
            commands: lines.iter().map(|l| parse_line(l)).collect(),
            untagged: false,
        }
    }

    /// The same case with its keys left untagged in cluster mode.
    pub fn untagged(mut self) -> Case {
        self.untagged = true;
        self
    }

    /// Appends `line`, whose reply in cluster mode is `reply` (what Redis Cluster itself
    /// answers) rather than the reference's.
    pub fn cluster_differs(mut self, line: &str, reply: &[u8]) -> Case {
        let mut cmd = parse_line(line);
        cmd.cluster_reply = Some(reply.to_vec());
        self.commands.push(cmd);
        self
    }

    /// Appends a main-connection command given as raw arguments (binary, big values).
    pub fn raw(mut self, args: Vec<Vec<u8>>) -> Case {
        self.commands.push(Cmd {
            args,
            on_other: false,
            frames: 1,
            only: None,
            cluster_reply: None,
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
        cluster_reply: None,
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
