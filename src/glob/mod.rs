//! Redis glob patterns, matched exactly as `KEYS` and `SCAN MATCH` match them (Redis 7.0
//! `stringmatchlen`, case-sensitive), compiled once and matched without recursion.
//!
//! - `*` matches any run of bytes, `?` any one byte.
//! - `[abc]` one of the bytes, `[^abc]` any other byte, `[a-z]` a range (reversed ends are
//!   swapped: `[z-a]` is `[a-z]`), `\x` inside a class is the byte `x`. `[]` matches nothing
//!   and `[^]` anything; a class with no closing `]` ends at the end of the pattern. A `-`
//!   starts a range whenever two bytes follow it, so `[a-]x]` is one byte from `]` to `a`
//!   or `x`, and `[a-` (unterminated) is `a` or `-`.
//! - `\x` outside a class is the byte `x`; a pattern ending in `\` ends in a literal `\`.
//! - Bytes compare as Redis compares them on x86-64, where C `char` is signed: in a range,
//!   bytes from 0x80 up sort below 0x00.
//! - The empty key matches only the patterns `*` (which `KEYS` and `SCAN` treat as "all
//!   keys") and the empty pattern.
//! - Redis gives up (no match) when `*` recursion nests more than 1000 deep; here that is a
//!   pattern with more than 1000 runs of `*` before its last other element, which then
//!   matches no key but the empty one, as in Redis. Matching itself is `O(pattern × key)`:
//!   on a mismatch it resumes after the last `*` with one more byte consumed.
//! - A literal prefix followed by one trailing `*` (`user:*`), the common case, is a prefix
//!   comparison; literal bytes around one `*` (`user:*:session`) a prefix and a suffix
//!   comparison; a pattern without wildcards is an equality test.
//! - Any other pattern is checked first against what every match must have: a length of at
//!   least its count of non-`*` elements (exactly that without `*`), its leading literal
//!   bytes as a prefix and its trailing literal bytes as a suffix; only the elements between
//!   them go through the general matcher, over the key's bytes between them. So `?*`
//!   followed by 10 KB of literal bytes costs one suffix comparison and a linear pass, not
//!   pattern times key.

/// Redis stops matching (no match) past this depth of `*` recursion.
const MAX_NESTING: usize = 1000;

/// Most patterns one invalidation may carry (`NEARCACHE INVALIDATE`, one bus `P` message):
/// every pattern costs a pass over L1's keys, so more is refused, never queued.
pub const MAX_PATTERNS: usize = 64;
/// Longest pattern an invalidation may carry, in bytes: matching costs up to pattern times
/// key bytes, so a longer one is refused.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// A compiled Redis glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as given.
    source: Vec<u8>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard: the key equals these bytes.
    Exact(Vec<u8>),
    /// Literal bytes and one trailing `*`: the key starts with these bytes.
    Prefix(Vec<u8>),
    /// Literal bytes, one `*`, literal bytes (at least one): the key starts with the first,
    /// ends with the second, and is at least as long as both.
    Affix(Vec<u8>, Vec<u8>),
    /// Anything else.
    Tokens(Glob),
    /// Past Redis's nesting limit: no non-empty key matches.
    Never,
}

/// A general pattern split into what can be compared directly and what needs the matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    /// The literal bytes the pattern starts with.
    head: Vec<u8>,
    /// The tokens between `head` and `tail` (the first and last are not literal bytes).
    middle: Vec<Token>,
    /// The literal bytes the pattern ends with (none of them in `head`).
    tail: Vec<u8>,
    /// The fewest bytes a matching key has: every token but `*` takes one.
    min_len: usize,
    /// Without `*`, a matching key has exactly `min_len` bytes.
    star: bool,
}

impl Glob {
    fn new(tokens: Vec<Token>) -> Glob {
        let min_len = tokens.iter().filter(|t| **t != Token::Star).count();
        let star = tokens.len() != min_len;
        let head: Vec<u8> = tokens.iter().map_while(Token::byte).collect();
        let rest = &tokens[head.len()..];
        let mut tail: Vec<u8> = rest.iter().rev().map_while(Token::byte).collect();
        tail.reverse();
        let middle = rest[..rest.len() - tail.len()].to_vec();
        Glob {
            head,
            middle,
            tail,
            min_len,
            star,
        }
    }

    /// Whether a non-empty key matches: a match maps `head` onto the key's first bytes and
    /// `tail` onto its last ones, so only the bytes between them are left to the matcher.
    fn matches(&self, key: &[u8]) -> bool {
        let fits = if self.star {
            key.len() >= self.min_len
        } else {
            key.len() == self.min_len
        };
        fits && key.starts_with(&self.head)
            && key.ends_with(&self.tail)
            && match_tokens(
                &self.middle,
                &key[self.head.len()..key.len() - self.tail.len()],
            )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `?`
    Any,
    /// A run of `*`.
    Star,
    Class(Class),
}

/// A bracket expression.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    /// Single bytes and inclusive ranges (ends ordered as signed chars).
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Byte(u8),
    Range(i8, i8),
}

impl Class {
    fn matches(&self, b: u8) -> bool {
        let hit = self.items.iter().any(|item| match *item {
            Item::Byte(x) => x == b,
            Item::Range(lo, hi) => (lo..=hi).contains(&(b as i8)),
        });
        hit != self.negated
    }
}

impl Token {
    /// The byte of a literal byte token.
    fn byte(&self) -> Option<u8> {
        match self {
            Token::Byte(b) => Some(*b),
            _ => None,
        }
    }

    fn matches(&self, b: u8) -> bool {
        match self {
            Token::Byte(x) => *x == b,
            Token::Any => true,
            Token::Class(c) => c.matches(b),
            Token::Star => false,
        }
    }
}

impl Pattern {
    /// Compiles `source`; every byte string is a valid pattern.
    pub fn new(source: &[u8]) -> Pattern {
        let tokens = tokenize(source);
        let kind = if let Some(bytes) = literal(&tokens) {
            Kind::Exact(bytes)
        } else if let Some(prefix) = tokens
            .split_last()
            .filter(|(last, _)| **last == Token::Star)
            .and_then(|(_, head)| literal(head))
        {
            Kind::Prefix(prefix)
        } else if let Some((prefix, suffix)) = affix(&tokens) {
            Kind::Affix(prefix, suffix)
        } else if nested_stars(&tokens) > MAX_NESTING {
            Kind::Never
        } else {
            Kind::Tokens(Glob::new(tokens))
        };
        Pattern {
            source: source.to_vec(),
            kind,
        }
    }

    /// The pattern as given.
    pub fn as_bytes(&self) -> &[u8] {
        &self.source
    }

    /// The byte every non-empty key it matches starts with, when the pattern starts with a
    /// literal byte (for indexing patterns by a key's first byte).
    pub fn first_byte(&self) -> Option<u8> {
        match &self.kind {
            Kind::Exact(bytes) | Kind::Prefix(bytes) | Kind::Affix(bytes, _) => {
                bytes.first().copied()
            }
            Kind::Tokens(glob) => glob.head.first().copied(),
            Kind::Never => None,
        }
    }

    /// The literal bytes a key must start with when the pattern is just those and one
    /// trailing `*` (`user:*`), the pattern a prefix comparison decides.
    pub fn prefix(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Prefix(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The literal bytes every non-empty key it matches starts with (empty when the pattern
    /// starts with a wildcard): a cheap test that rules most keys out before matching.
    pub fn literal_head(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Exact(bytes) | Kind::Prefix(bytes) | Kind::Affix(bytes, _) => bytes.clone(),
            Kind::Tokens(glob) => glob.head.clone(),
            Kind::Never => Vec::new(),
        }
    }

    /// Whether `key` matches, as `KEYS` would answer.
    pub fn matches(&self, key: &[u8]) -> bool {
        if key.is_empty() {
            return self.source.is_empty() || self.source == b"*";
        }
        match &self.kind {
            Kind::Exact(bytes) => key == &bytes[..],
            Kind::Prefix(prefix) => key.starts_with(prefix),
            Kind::Affix(prefix, suffix) => {
                key.len() >= prefix.len() + suffix.len()
                    && key.starts_with(prefix)
                    && key.ends_with(suffix)
            }
            Kind::Tokens(glob) => glob.matches(key),
            Kind::Never => false,
        }
    }
}

/// The bytes of `tokens` when every one is a literal byte.
fn literal(tokens: &[Token]) -> Option<Vec<u8>> {
    tokens.iter().map(Token::byte).collect()
}

/// The literal bytes before and after the only `*` run of `tokens`, when every other token
/// is a literal byte and some follow the run.
fn affix(tokens: &[Token]) -> Option<(Vec<u8>, Vec<u8>)> {
    let star = tokens.iter().position(|t| *t == Token::Star)?;
    let (head, tail) = (&tokens[..star], &tokens[star + 1..]);
    if tail.is_empty() {
        return None;
    }
    Some((literal(head)?, literal(tail)?))
}

/// Why `source` is almost certainly a mistake as a configured pattern, though Redis would
/// accept it: empty, a `[` class never closed, or a trailing lone backslash.
pub fn problem(source: &[u8]) -> Option<&'static str> {
    if source.is_empty() {
        return Some("the pattern is empty");
    }
    let mut i = 0;
    while i < source.len() {
        match source[i] {
            b'\\' if i + 1 == source.len() => return Some("it ends in a lone '\\'"),
            b'\\' => i += 2,
            b'[' => {
                let mut j = i + 1;
                if source.get(j) == Some(&b'^') {
                    j += 1;
                }
                loop {
                    match source.get(j) {
                        None => return Some("a '[' class is never closed with ']'"),
                        Some(b'\\') => j += 2,
                        Some(b']') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits a pattern into tokens exactly as `stringmatchlen` walks it (the walk does not
/// depend on the key).
fn tokenize(p: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                while i + 1 < p.len() && p[i + 1] == b'*' {
                    i += 1;
                }
                tokens.push(Token::Star);
            }
            b'?' => tokens.push(Token::Any),
            b'[' => {
                let (class, end) = class(p, i + 1);
                tokens.push(Token::Class(class));
                i = end;
            }
            b'\\' if i + 1 < p.len() => {
                i += 1;
                tokens.push(Token::Byte(p[i]));
            }
            b => tokens.push(Token::Byte(b)),
        }
        i += 1;
    }
    tokens
}

/// Parses a class whose body starts at `i`; returns it and the index of its last byte
/// (the closing `]`, or the pattern's last byte when there is none).
fn class(p: &[u8], mut i: usize) -> (Class, usize) {
    let negated = p.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let left = p.len().saturating_sub(i);
        if left >= 2 && p[i] == b'\\' {
            i += 1;
            items.push(Item::Byte(p[i]));
        } else if left > 0 && p[i] == b']' {
            break;
        } else if left == 0 {
            // Unterminated: the class takes the rest of the pattern.
            return (Class { negated, items }, p.len() - 1);
        } else if left >= 3 && p[i + 1] == b'-' {
            let (a, b) = (p[i] as i8, p[i + 2] as i8);
            items.push(Item::Range(a.min(b), a.max(b)));
            i += 2;
        } else {
            items.push(Item::Byte(p[i]));
        }
        i += 1;
    }
    (Class { negated, items }, i)
}

/// The runs of `*` that Redis would recurse into: every one followed by another token.
fn nested_stars(tokens: &[Token]) -> usize {
    let last_other = tokens.iter().rposition(|t| *t != Token::Star);
    last_other.map_or(0, |end| {
        tokens[..end].iter().filter(|t| **t == Token::Star).count()
    })
}

/// Matches a key (the whole key when it is not empty, or the bytes of a non-empty key
/// between a pattern's literal head and tail): each token but `*` takes one byte; on a
/// mismatch, the last `*` takes one more byte and matching resumes after it.
fn match_tokens(tokens: &[Token], key: &[u8]) -> bool {
    let (mut t, mut k) = (0, 0);
    // The token after the last `*` seen, and the key position it resumes from.
    let mut resume: Option<(usize, usize)> = None;
    while k < key.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                t += 1;
                resume = Some((t, k));
                continue;
            }
            Some(token) if token.matches(key[k]) => {
                t += 1;
                k += 1;
                continue;
            }
            _ => {}
        }
        let Some((after, from)) = resume else {
            return false;
        };
        t = after;
        k = from + 1;
        resume = Some((after, k));
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests;
