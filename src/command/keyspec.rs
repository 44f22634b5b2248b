//! Key specifications (element 8 of a Redis 7 `COMMAND` entry): where a command's keys are
//! and whether it may write them, reduced once, when the table is loaded, to [`Writes`].
//!
//! A spec is written when its flags include `RW`, `OW`, `RM`, `INSERT`, `DELETE` or
//! `UPDATE`; `RO`/`ACCESS` alone is a read. Positions are found as Redis finds them
//! (`getKeysUsingKeySpecs`): `index` or `keyword` to begin, then `range` or `keynum`.
//! Whatever cannot be known exactly widens to every argument: invalidate more, never less.

use bytes::Bytes;
use redis_protocol::resp2::types::OwnedFrame;

/// Larger positions or counts in a spec are not plausible: the spec counts as unknown.
const BOUND: i64 = 1 << 20;

/// Key-spec flags that mean the command may change the key.
const WRITE_FLAGS: &[&[u8]] = &[b"RW", b"OW", b"RM", b"INSERT", b"DELETE", b"UPDATE"];

/// What a command may write, decided once per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// No key: it only reads, or has no keys.
    Nothing,
    /// The keys these specs find (only the specs that write).
    Keys(Box<[KeySpec]>),
    /// `SORT ... STORE dst`: its spec is `unknown` because STORE may be anywhere.
    SortStore,
    /// Any argument may be a written key (a written spec is unknown or incomplete, or the
    /// command is not in the table).
    EveryArgument,
    /// Anything: the `write` flag with no way to know the keys (FUNCTION FLUSH, ...).
    Everything,
}

/// One key spec, reduced to what finding its keys needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    begin: Begin,
    find: Find,
}

/// Where the search for a spec's keys begins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Begin {
    /// At this argument (0 is the command name).
    Index(usize),
    /// Just after `keyword`, searched from argument `from` (negative: backwards from the
    /// end).
    Keyword { keyword: Box<[u8]>, from: i64 },
}

/// Which arguments from the beginning are keys.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Find {
    /// Up to `last` past the beginning (negative: from the end; with `limit`, that share
    /// of what is left), every `step`.
    Range { last: i64, step: usize, limit: i64 },
    /// The number of keys is argument `keynum` past the beginning; keys start `first` past
    /// it, every `step`.
    Keynum {
        keynum: usize,
        first: usize,
        step: usize,
    },
}

/// The spec cannot be applied to these arguments (a syntax error the upstream will
/// report); the caller widens to every argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl Writes {
    /// Decides from the key specs of a Redis 7 entry (a command without any is decided by
    /// [`Writes::from_positions`]). Only the specs' flags count, not the command's `write`
    /// flag: PFCOUNT writes (`RW`) without it, XREADGROUP has it but reads its keys (`RO`).
    pub fn from_specs(name: &[u8], specs: &[OwnedFrame]) -> Writes {
        let mut written = Vec::new();
        for spec in specs {
            let OwnedFrame::Array(fields) = spec else {
                return Writes::EveryArgument;
            };
            let flags = flags(field(fields, b"flags"));
            if !flags.iter().any(|f| any(f, WRITE_FLAGS)) {
                continue;
            }
            let parsed = KeySpec::parse(fields);
            match parsed {
                Some(k) if !flags.iter().any(|f| f.eq_ignore_ascii_case(b"incomplete")) => {
                    written.push(k)
                }
                None if name.eq_ignore_ascii_case(b"sort") && written.is_empty() => {
                    return Writes::SortStore
                }
                _ => return Writes::EveryArgument,
            }
        }
        if written.is_empty() {
            Writes::Nothing
        } else {
            Writes::Keys(written.into())
        }
    }

    /// Decides from the legacy fields (before Redis 7): `write` flag, `movablekeys`,
    /// first/last/step key positions.
    pub fn from_positions(write: bool, movable: bool, first: i64, last: i64, step: i64) -> Writes {
        let plausible = [first, last, step].iter().all(|n| n.abs() <= BOUND);
        match (write, movable, first) {
            (false, _, _) => Writes::Nothing,
            (true, true, _) => Writes::EveryArgument,
            (true, false, _) if !plausible => Writes::EveryArgument,
            (true, false, f) if f <= 0 => Writes::Everything,
            (true, false, first) => Writes::Keys(Box::new([KeySpec {
                begin: Begin::Index(first as usize),
                find: Find::Range {
                    last: if last >= 0 { last - first } else { last },
                    step: step.max(1) as usize,
                    limit: 0,
                },
            }])),
        }
    }
}

/// Where every key of a command is, read or written: what routing by key slot needs (a
/// Redis Cluster refuses a command whose keys are in more than one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// No key.
    None,
    /// The keys these specs find (an `incomplete` spec's keys included: they are keys).
    Specs(Box<[KeySpec]>),
    /// `SORT`: its first key and every `STORE dst` (the destination's spec is `unknown`).
    Sort,
    /// The keys cannot be found from the table (a spec of an unknown kind, or movable keys
    /// before Redis 7).
    Unknown,
}

impl Keys {
    /// Reads every key spec of a Redis 7 entry, whatever its flags.
    pub fn from_specs(name: &[u8], specs: &[OwnedFrame]) -> Keys {
        let mut found = Vec::with_capacity(specs.len());
        for spec in specs {
            let parsed = match spec {
                OwnedFrame::Array(fields) => KeySpec::parse(fields),
                _ => None,
            };
            match parsed {
                Some(k) => found.push(k),
                None if name.eq_ignore_ascii_case(b"sort") => return Keys::Sort,
                None => return Keys::Unknown,
            }
        }
        match found.is_empty() {
            true => Keys::None,
            false => Keys::Specs(found.into()),
        }
    }

    /// Reads the legacy fields (before Redis 7): `movablekeys`, first/last/step.
    pub fn from_positions(movable: bool, first: i64, last: i64, step: i64) -> Keys {
        match Writes::from_positions(true, movable, first, last, step) {
            Writes::Keys(specs) => Keys::Specs(specs),
            Writes::Everything => Keys::None,
            _ => Keys::Unknown,
        }
    }

    /// Pushes the position of each key in `args`, in the order of the specs (a key may
    /// come twice); [`Invalid`] when they cannot be known (the caller routes as before).
    pub fn positions(&self, args: &[Bytes], out: &mut Vec<usize>) -> Result<(), Invalid> {
        match self {
            Keys::None => Ok(()),
            Keys::Unknown => Err(Invalid),
            Keys::Sort => {
                if args.len() < 2 {
                    return Err(Invalid);
                }
                out.push(1);
                sort_store(args, |i| out.push(i));
                Ok(())
            }
            Keys::Specs(specs) => specs
                .iter()
                .try_for_each(|s| s.positions(args, |i| out.push(i))),
        }
    }
}

impl KeySpec {
    fn parse(fields: &[OwnedFrame]) -> Option<KeySpec> {
        let (kind, spec) = typed(field(fields, b"begin_search")?)?;
        let begin = match kind {
            b"index" => Begin::Index(usize::try_from(int(spec, b"index")?).ok()?),
            b"keyword" => Begin::Keyword {
                keyword: text(field(spec, b"keyword")?)?.into(),
                from: int(spec, b"startfrom")?,
            },
            _ => return None,
        };
        let (kind, spec) = typed(field(fields, b"find_keys")?)?;
        let find = match kind {
            b"range" => Find::Range {
                last: int(spec, b"lastkey")?,
                step: usize::try_from(int(spec, b"keystep")?).ok()?.max(1),
                limit: int(spec, b"limit")?,
            },
            b"keynum" => Find::Keynum {
                keynum: usize::try_from(int(spec, b"keynumidx")?).ok()?,
                first: usize::try_from(int(spec, b"firstkey")?).ok()?,
                step: usize::try_from(int(spec, b"keystep")?).ok()?.max(1),
            },
            _ => return None,
        };
        Some(KeySpec { begin, find })
    }

    /// Calls `key` with the position of each key this spec finds in `args`.
    pub fn positions(&self, args: &[Bytes], mut key: impl FnMut(usize)) -> Result<(), Invalid> {
        let argc = args.len() as i64;
        let Some(first) = self.begin(args) else {
            return Ok(()); // the keyword is absent: no key
        };
        let first = first.min(argc);
        let (first, last, step) = match self.find {
            Find::Range { last, step, limit } => {
                let last = match (last, limit) {
                    (l, _) if l >= 0 => first + l,
                    (l, 0) => argc + l,
                    (l, limit) => first + ((argc - first) / limit + l),
                };
                (first, last, step)
            }
            Find::Keynum {
                keynum,
                first: skip,
                step,
            } => {
                let count = args
                    .get(first as usize + keynum)
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok())
                    .filter(|&n| (0..=argc).contains(&n))
                    .ok_or(Invalid)?;
                if count == 0 {
                    return Ok(()); // `EVAL script 0`: no key
                }
                let first = first + skip as i64;
                (first, first + count - 1, step)
            }
        };
        if first >= argc || last >= argc || last < first {
            return Err(Invalid);
        }
        (first..=last).step_by(step).for_each(|p| key(p as usize));
        Ok(())
    }

    /// The position of the first key, or `None` when the keyword is absent.
    fn begin(&self, args: &[Bytes]) -> Option<i64> {
        let argc = args.len() as i64;
        let (keyword, from) = match &self.begin {
            Begin::Index(i) => return Some(*i as i64),
            Begin::Keyword { keyword, from } => (keyword, *from),
        };
        let found = |&i: &i64| args[i as usize].eq_ignore_ascii_case(keyword);
        let at = if from > 0 {
            // Forwards, up to the one before last (a keyword last has no key after it).
            (from..argc - 1).find(found)
        } else {
            (1..(argc + from + 1).min(argc)).rev().find(found)
        };
        at.map(|i| i + 1)
    }
}

/// SORT's destinations, parsed as SORT parses its options (every `STORE dst`).
pub fn sort_store(args: &[Bytes], mut key: impl FnMut(usize)) {
    let mut i = 2;
    while i < args.len() {
        let left = args.len() - i - 1;
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"LIMIT") && left >= 2 {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"STORE") && left >= 1 {
            key(i + 1);
            i += 1;
        } else if (a.eq_ignore_ascii_case(b"BY") || a.eq_ignore_ascii_case(b"GET")) && left >= 1 {
            i += 1;
        }
        i += 1;
    }
}

fn any(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// The value after `name` in a flattened map (`[k1, v1, k2, v2, ...]`).
fn field<'a>(pairs: &'a [OwnedFrame], name: &[u8]) -> Option<&'a OwnedFrame> {
    pairs
        .chunks_exact(2)
        .find(|kv| text(&kv[0]).is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .map(|kv| &kv[1])
}

fn text(frame: &OwnedFrame) -> Option<&[u8]> {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(b),
        _ => None,
    }
}

/// An integer field; a spec with one out of any plausible range is treated as unknown.
fn int(pairs: &[OwnedFrame], name: &[u8]) -> Option<i64> {
    match field(pairs, name)? {
        OwnedFrame::Integer(n) if (-BOUND..=BOUND).contains(n) => Some(*n),
        _ => None,
    }
}

/// `["type", kind, "spec", [...]]` as (kind, spec fields).
fn typed(frame: &OwnedFrame) -> Option<(&[u8], &[OwnedFrame])> {
    let OwnedFrame::Array(pairs) = frame else {
        return None;
    };
    let kind = text(field(pairs, b"type")?)?;
    let spec = match field(pairs, b"spec")? {
        OwnedFrame::Array(spec) => spec,
        _ => return None,
    };
    Some((kind, spec))
}

fn flags(frame: Option<&OwnedFrame>) -> Vec<&[u8]> {
    match frame {
        Some(OwnedFrame::Array(flags)) => flags.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}
