//! Namespaces at run time: which `[[namespace]]` a key belongs to (first match wins, keys
//! that match none are the `default` namespace), each namespace's policy, and its figures.
//!
//! Finding a key's namespace is cheap enough for the hit path: patterns are compiled once
//! and indexed by the byte a key must start with, so a key is tried only against the
//! patterns that could match it (plus those starting with a wildcard), and a prefix pattern
//! (`user:*`) is one byte comparison.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::{NamespaceConfig, DEFAULT_NAMESPACE};
use crate::glob::Pattern;

/// How L1 treats one namespace's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `false`: reads are forwarded and nothing is filled.
    pub cache: bool,
    /// Longest lifetime of an entry.
    pub ttl: Duration,
    /// Missing keys are cached as nil.
    pub cache_nil: bool,
    /// Values at least this long are stored compressed.
    pub compress_min_bytes: usize,
    /// Its own share of L1 (`None`: the shared rest).
    pub max_bytes: Option<u64>,
}

/// One namespace's figures.
#[derive(Default)]
pub struct Figures {
    /// Reads L1 answered.
    pub hits: AtomicU64,
    /// Reads L1 did not answer (for a namespace with `cache = false`, every read).
    pub misses: AtomicU64,
    /// Entries held and their weight (see [`super::weigh`]), kept on insert and removal.
    pub(super) entries: AtomicI64,
    pub(super) bytes: AtomicI64,
}

/// One namespace as `NEARCACHE NAMESPACES`, INFO and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The label.
    pub name: String,
    /// The glob (`*` for the default namespace).
    pub pattern: String,
    /// How its keys are cached.
    pub policy: Policy,
    /// Entries held.
    pub entries: u64,
    /// Their weight (see [`super::ENTRY_OVERHEAD`]).
    pub bytes: u64,
    /// Reads L1 answered.
    pub hits: u64,
    /// Reads L1 did not answer.
    pub misses: u64,
}

/// One pattern a key with a given first byte may match, as [`Namespaces::of`] tries it:
/// the key's first 8 bytes (zero-padded), masked, must equal `word` (the pattern's literal
/// head, up to 8 bytes) and the key be at least `len` long; then, unless `whole` says that
/// settles it (a prefix pattern of at most 8 bytes), the pattern itself is matched.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    word: u64,
    mask: u64,
    len: u32,
    whole: bool,
    index: u16,
}

impl Candidate {
    fn new(index: u16, pattern: &Pattern) -> Candidate {
        let head = pattern.literal_head();
        let head = &head[..head.len().min(8)];
        Candidate {
            word: first_word(head),
            mask: u64::MAX
                .checked_shr(64 - 8 * head.len() as u32)
                .unwrap_or(0),
            len: head.len() as u32,
            whole: pattern.prefix().is_some_and(|p| p.len() <= 8),
            index,
        }
    }
}

/// The first 8 bytes of `key` as a little-endian word, zero-padded.
#[inline]
fn first_word(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(word) => u64::from_le_bytes(*word),
        None => {
            let mut word = [0u8; 8];
            word[..key.len()].copy_from_slice(key);
            u64::from_le_bytes(word)
        }
    }
}

/// The configured namespaces, then the default one (the last index).
pub struct Namespaces {
    names: Vec<String>,
    patterns: Vec<Pattern>,
    /// By index; the default namespace's is the global policy.
    policies: Vec<Policy>,
    /// By index: which of L1's tables holds its entries (0: the shared one).
    stores: Vec<usize>,
    /// For each first byte of a key, the patterns that may match it, in configured order.
    /// Empty when no namespace is configured.
    by_first: Vec<Box<[Candidate]>>,
    /// Patterns that may match the empty key (those not starting with a literal byte).
    for_empty: Box<[u16]>,
    figures: Box<[Figures]>,
    /// Some namespace has `cache = false`.
    bypasses: bool,
}

impl Namespaces {
    /// Compiles `configured` over the `default` policy; namespaces with `max_bytes` get
    /// stores 1, 2, ... in order.
    pub fn new(configured: &[NamespaceConfig], default: Policy) -> Namespaces {
        let patterns: Vec<Pattern> = configured
            .iter()
            .map(|n| Pattern::new(n.pattern.as_bytes()))
            .collect();
        let mut policies: Vec<Policy> = configured
            .iter()
            .map(|n| Policy {
                cache: n.cache,
                ttl: n.l1_ttl.unwrap_or(default.ttl),
                cache_nil: n.cache_nil.unwrap_or(default.cache_nil),
                compress_min_bytes: n.compress_min_bytes.unwrap_or(default.compress_min_bytes),
                max_bytes: n.max_bytes,
            })
            .collect();
        policies.push(Policy {
            max_bytes: None,
            ..default
        });
        let mut next_store = 0;
        let stores = policies
            .iter()
            .map(|p| match p.max_bytes {
                Some(_) => {
                    next_store += 1;
                    next_store
                }
                None => 0,
            })
            .collect();
        let candidates = |first: Option<u8>| -> Vec<u16> {
            let may = |p: &Pattern| p.first_byte().is_none_or(|b| Some(b) == first);
            (0..patterns.len() as u16)
                .filter(|&i| may(&patterns[i as usize]))
                .collect()
        };
        let by_first = match patterns.is_empty() {
            true => Vec::new(),
            false => (0..=255u8)
                .map(|b| {
                    let of = candidates(Some(b)).into_iter();
                    of.map(|i| Candidate::new(i, &patterns[i as usize]))
                        .collect()
                })
                .collect(),
        };
        let for_empty = candidates(None).into();
        let mut names: Vec<String> = configured.iter().map(|n| n.name.clone()).collect();
        names.push(DEFAULT_NAMESPACE.to_owned());
        let figures = (0..names.len()).map(|_| Figures::default()).collect();
        let bypasses = policies.iter().any(|p| !p.cache);
        Namespaces {
            names,
            patterns,
            policies,
            stores,
            by_first,
            for_empty,
            figures,
            bypasses,
        }
    }

    /// No namespace is configured: every key is in the default one (index 0).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some namespace (the default one included) has `cache = false`: without one,
    /// every key's reads may be answered by L1 and no key needs matching to know it.
    #[inline]
    pub fn bypasses(&self) -> bool {
        self.bypasses
    }

    /// Namespaces, the default one included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The index of `key`'s namespace: the first configured pattern it matches, or the
    /// default namespace's (the last index).
    #[inline]
    pub fn of(&self, key: &[u8]) -> usize {
        if self.patterns.is_empty() {
            return 0;
        }
        let Some(&first) = key.first() else {
            return self.of_empty();
        };
        let word = first_word(key);
        for c in self.by_first[first as usize].iter() {
            if key.len() >= c.len as usize
                && word & c.mask == c.word
                && (c.whole || self.patterns[c.index as usize].matches(key))
            {
                return c.index as usize;
            }
        }
        self.patterns.len()
    }

    #[cold]
    fn of_empty(&self) -> usize {
        self.for_empty
            .iter()
            .map(|&i| i as usize)
            .find(|&i| self.patterns[i].matches(b""))
            .unwrap_or(self.patterns.len())
    }

    /// The policy of namespace `i`.
    #[inline]
    pub fn policy(&self, i: usize) -> &Policy {
        &self.policies[i]
    }

    /// The table of namespace `i` (0: the shared one).
    #[inline]
    pub(super) fn store(&self, i: usize) -> usize {
        self.stores[i]
    }

    /// Each store's own bound, after the shared one: the `max_bytes` of the namespaces
    /// that have one, in order.
    pub(super) fn shares(&self) -> Vec<u64> {
        self.policies.iter().filter_map(|p| p.max_bytes).collect()
    }

    /// The figures of namespace `i`.
    #[inline]
    pub fn figures(&self, i: usize) -> &Figures {
        &self.figures[i]
    }

    /// Counts reads of namespace `i`.
    pub fn count(&self, i: usize, hits: u64, misses: u64) {
        let f = &self.figures[i];
        if hits > 0 {
            f.hits.fetch_add(hits, Relaxed);
        }
        if misses > 0 {
            f.misses.fetch_add(misses, Relaxed);
        }
    }

    /// An entry of namespace `i` weighing `weight` was installed (`+1`) or removed (`-1`).
    pub(super) fn held(&self, i: usize, sign: i64, weight: u32) {
        let f = &self.figures[i];
        f.entries.fetch_add(sign, Relaxed);
        f.bytes.fetch_add(sign * i64::from(weight), Relaxed);
    }

    /// Every namespace, the default one last.
    pub fn rows(&self) -> Vec<Row> {
        (0..self.len())
            .map(|i| {
                let f = &self.figures[i];
                let pattern = match self.patterns.get(i) {
                    Some(p) => String::from_utf8_lossy(p.as_bytes()).into_owned(),
                    None => "*".to_owned(),
                };
                Row {
                    name: self.names[i].clone(),
                    pattern,
                    policy: self.policies[i],
                    entries: f.entries.load(Relaxed).max(0) as u64,
                    bytes: f.bytes.load(Relaxed).max(0) as u64,
                    hits: f.hits.load(Relaxed),
                    misses: f.misses.load(Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, pattern: &str) -> NamespaceConfig {
        NamespaceConfig {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
            cache: true,
            l1_ttl: None,
            cache_nil: None,
            compress_min_bytes: None,
            max_bytes: None,
        }
    }

    fn default_policy() -> Policy {
        Policy {
            cache: true,
            ttl: Duration::from_secs(60),
            cache_nil: true,
            compress_min_bytes: 1024,
            max_bytes: None,
        }
    }

    #[test]
    fn first_match_wins_and_the_rest_is_default() {
        let n = Namespaces::new(
            &[
                ns("flags", "flag:*"),
                ns("all-f", "f*"),
                ns("odd", "*[13579]"),
                ns("empty", ""),
            ],
            default_policy(),
        );
        assert_eq!(n.len(), 5);
        assert_eq!(n.of(b"flag:1"), 0);
        assert_eq!(n.of(b"flog"), 1);
        assert_eq!(n.of(b"fla"), 1);
        assert_eq!(n.of(b"user:3"), 2);
        assert_eq!(n.of(b"flag3"), 1, "f* comes before *[13579]");
        assert_eq!(n.of(b"user:2"), 4);
        assert_eq!(
            n.of(b""),
            3,
            "only the empty pattern and * match the empty key"
        );
        assert_eq!(n.rows()[4].name, "default");
        assert_eq!(n.rows()[4].pattern, "*");
    }

    #[test]
    fn every_pattern_kind_matches_as_the_glob_does() {
        let patterns = [
            "a*",
            "key:*",
            "12345678*",
            "123456789*",
            "*",
            "k?y:*",
            "ke\\y*",
            "key:*:tmp",
            "k*:lock",
            "ab?c*",
            "12345678*9",
            "user:[ab]*",
            "a\\*b*c",
        ];
        let configured: Vec<_> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| ns(&format!("n{i}"), p))
            .collect();
        let keys: &[&[u8]] = &[
            b"a",
            b"ab",
            b"key:",
            b"key:1",
            b"key",
            b"kez:1",
            b"1234567",
            b"12345678",
            b"123456789",
            b"1234567890",
            b"k\xffy:",
            b"ke\\y",
            b"b",
            b"\x00",
            b"key::tmp",
            b"key:1:tmp",
            b"key:tmp",
            b"k:lock",
            b"kx:lock",
            b"abxc",
            b"abc",
            b"user:a1",
            b"user:c1",
            b"a*bc",
            b"a*b",
            b"12345678x9",
            b"123456789",
        ];
        for skip in 0..patterns.len() {
            // Each pattern first in turn, so every one is decided by its own matcher.
            let mut order = configured.clone();
            let first = order.remove(skip);
            order.insert(0, first);
            let n = Namespaces::new(&order, default_policy());
            for key in keys {
                let want = order
                    .iter()
                    .position(|c| Pattern::new(c.pattern.as_bytes()).matches(key))
                    .unwrap_or(order.len());
                assert_eq!(n.of(key), want, "{:?} in {:?}", show(key), order[0].pattern);
            }
        }
    }

    fn show(key: &[u8]) -> String {
        String::from_utf8_lossy(key).into_owned()
    }

    #[test]
    fn no_namespaces_is_index_zero_with_the_default_policy() {
        let n = Namespaces::new(&[], default_policy());
        assert!(n.is_empty());
        assert_eq!(n.of(b"anything"), 0);
        assert_eq!(*n.policy(0), default_policy());
        assert_eq!(n.store(0), 0);
    }

    #[test]
    fn options_left_out_take_the_default_and_shares_get_their_own_store() {
        let mut flags = ns("flags", "flag:*");
        flags.l1_ttl = Some(Duration::from_secs(300));
        flags.cache_nil = Some(false);
        flags.max_bytes = Some(1 << 20);
        let mut session = ns("session", "session:*");
        session.cache = false;
        let mut big = ns("big", "big:*");
        big.max_bytes = Some(2 << 20);
        let n = Namespaces::new(&[flags, session, big], default_policy());
        let p = n.policy(0);
        assert_eq!(p.ttl, Duration::from_secs(300));
        assert!(!p.cache_nil);
        assert_eq!(p.compress_min_bytes, 1024);
        assert!(!n.policy(1).cache);
        assert_eq!(n.policy(1).ttl, Duration::from_secs(60));
        assert_eq!(
            (n.store(0), n.store(1), n.store(2), n.store(3)),
            (1, 0, 2, 0)
        );
        assert_eq!(n.shares(), vec![1 << 20, 2 << 20]);
    }

    #[test]
    fn figures_follow_counts_and_holdings() {
        let n = Namespaces::new(&[ns("a", "a:*")], default_policy());
        n.count(0, 3, 1);
        n.held(0, 1, 600);
        n.held(0, 1, 700);
        n.held(0, -1, 600);
        let row = &n.rows()[0];
        assert_eq!(
            (row.hits, row.misses, row.entries, row.bytes),
            (3, 1, 1, 700)
        );
    }
}
