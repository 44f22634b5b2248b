//! The matcher's answers, case by case, as Redis's `stringmatchlen` gives them.

use super::*;

#[test]
fn configured_patterns_that_are_mistakes_are_named() {
    for ok in ["user:*", "*", "a[bc]d", r"x\[y", "[]", "[^]]x", r"a\*"] {
        assert_eq!(problem(ok.as_bytes()), None, "{ok}");
    }
    assert_eq!(problem(b""), Some("the pattern is empty"));
    assert_eq!(
        problem(b"user:[ab"),
        Some("a '[' class is never closed with ']'")
    );
    assert_eq!(
        problem(br"a[\]"),
        Some("a '[' class is never closed with ']'")
    );
    assert_eq!(problem(br"user:\"), Some("it ends in a lone '\\'"));
}

fn m(pattern: &str, key: &str) -> bool {
    Pattern::new(pattern.as_bytes()).matches(key.as_bytes())
}

#[test]
fn wildcards() {
    let cases: &[(&str, &str, bool)] = &[
        ("*", "anything", true),
        ("*", "", true),
        ("**", "", false),
        ("", "", true),
        ("", "a", false),
        ("a*", "a", true),
        ("a*", "", false),
        ("*a", "a", true),
        ("*a*b", "xaxxb", true),
        ("*a*b", "xaxxbx", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("???", "ab", false),
        ("h*llo", "heeeello", true),
        ("*x*x*x*", "xxx", true),
        ("*x*x*x*", "xx", false),
    ];
    for &(p, k, want) in cases {
        assert_eq!(m(p, k), want, "pattern {p:?} key {k:?}");
    }
}

#[test]
fn one_star_between_literals_is_a_prefix_and_suffix_test() {
    assert!(matches!(Pattern::new(b"user:*:tmp").kind, Kind::Affix(..)));
    assert!(matches!(Pattern::new(br"a\*b*c").kind, Kind::Affix(..)));
    assert!(matches!(Pattern::new(b"a*b*c").kind, Kind::Tokens(..)));
    // The same answers as the general matcher, overlaps and escapes included.
    let patterns = [
        "user:*:tmp",
        "*tmp",
        "a*a",
        "ab*ba",
        r"a\*b*c",
        "k*:lock",
        "x**y",
    ];
    let keys = [
        "",
        "a",
        "aa",
        "aba",
        "abba",
        "ababa",
        "user::tmp",
        "user:tmp",
        "user:1:tmp",
        "user:1:tmpx",
        "tmp",
        "a*bc",
        "a*bxc",
        "abc",
        "k:lock",
        "key:0001",
        "kx:lock",
        "xy",
        "xzy",
        "yx",
    ];
    for p in patterns {
        let tokens = tokenize(p.as_bytes());
        for k in keys {
            let general = !k.is_empty() && match_tokens(&tokens, k.as_bytes());
            let general = if k.is_empty() { m(p, k) } else { general };
            assert_eq!(m(p, k), general, "pattern {p:?} key {k:?}");
        }
    }
    assert!(m("user:*:tmp", "user::tmp"));
    assert!(!m("user:*:tmp", "user:tmp"));
    assert!(!m("a*a", "a"));
    assert!(m("a*a", "aa"));
}

#[test]
fn literal_heads_are_what_every_match_starts_with() {
    let cases = [
        ("user:*", "user:"),
        ("user:*:tmp", "user:"),
        ("exact", "exact"),
        ("ab?c*", "ab"),
        (r"a\*b?", "a*b"), // an escaped star is a literal byte
        ("*x", ""),
        ("[ab]c*", ""),
    ];
    for (p, head) in cases {
        assert_eq!(
            Pattern::new(p.as_bytes()).literal_head(),
            head.as_bytes(),
            "{p}"
        );
    }
}

#[test]
fn classes() {
    let cases: &[(&str, &str, bool)] = &[
        ("h[ae]llo", "hello", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("h[b-a]llo", "hallo", true),
        ("h[b-a]llo", "hcllo", false),
        ("[]", "]", false),
        ("[]]", "]", false),
        ("[]a]", "a]", false),
        ("[^]", "x", true),
        ("[^]x", "ax", true),
        ("[a-]x]", "]", true),
        ("[a-]x]", "_", true),
        ("[a-]x]", "x", true),
        ("[a-]x]", "]x]", false),
        ("[a-]x]", "-", false),
        ("[-a]", "-", true),
        ("[a-", "a", true),
        ("[a-", "b", false),
        ("[a-", "-", true),
        ("[\\]]", "]", true),
        ("[\\-a]", "-", true),
        ("[\\-a]", "b", false),
        ("[a-\\]", "\\", true),
        ("[^a", "b", true),
        ("[^a", "a", false),
        ("[^", "z", true),
        ("[^", "zz", false),
        ("[", "[", false),
        ("[abc", "b", true),
        ("[abc", "bx", false),
        ("[a\\", "\\", true),
    ];
    for &(p, k, want) in cases {
        assert_eq!(m(p, k), want, "pattern {p:?} key {k:?}");
    }
}

#[test]
fn escapes() {
    let cases: &[(&str, &str, bool)] = &[
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("\\?", "?", true),
        ("\\[a]", "[a]", true),
        ("a\\", "a\\", true),
        ("a\\", "a", false),
        ("\\\\", "\\", true),
        ("\\a", "a", true),
        ("*\\", "x\\", true),
    ];
    for &(p, k, want) in cases {
        assert_eq!(m(p, k), want, "pattern {p:?} key {k:?}");
    }
}

#[test]
fn high_bytes_sort_as_signed_chars_in_ranges() {
    let p = Pattern::new(b"[\x80-a]");
    assert!(p.matches(b"\x00"));
    assert!(p.matches(b"\xff"));
    assert!(p.matches(b"a"));
    assert!(!p.matches(b"b"));
    assert!(Pattern::new(b"\xe9*").matches(b"\xe9t\xe9"));
}

#[test]
fn literal_prefix_and_exact_patterns_skip_the_token_matcher() {
    assert_eq!(
        Pattern::new(b"user:*").kind,
        Kind::Prefix(b"user:".to_vec())
    );
    assert_eq!(
        Pattern::new(b"user:\\*").kind,
        Kind::Exact(b"user:*".to_vec())
    );
    assert_eq!(Pattern::new(b"*").kind, Kind::Prefix(Vec::new()));
    assert_eq!(
        Pattern::new(b"user:**x").kind,
        Kind::Affix(b"user:".to_vec(), b"x".to_vec())
    );
    assert!(matches!(Pattern::new(b"user:*x*").kind, Kind::Tokens(_)));
    assert!(m("user:*", "user:1"));
    assert!(!m("user:*", "users:1"));
}

#[test]
fn many_stars_take_linear_passes_not_exponential_time() {
    let pattern = format!("{}b", "a*".repeat(30));
    let key = "a".repeat(5000);
    let started = std::time::Instant::now();
    assert!(!m(&pattern, &key));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn more_than_a_thousand_nested_stars_match_nothing_as_in_redis() {
    let at_limit = "*a".repeat(MAX_NESTING);
    let over = "*a".repeat(MAX_NESTING + 1);
    let key = "a".repeat(MAX_NESTING + 1);
    assert!(m(&at_limit, &key));
    assert!(!m(&over, &key));
    // A trailing star does not recurse.
    assert!(m(&format!("{at_limit}*"), &key));
    assert!(m("", "") && !m(&over, ""));
}

#[test]
fn general_patterns_check_length_head_and_tail_before_matching() {
    // The same answers as the general matcher on the whole key, for every split.
    let patterns = [
        "a?c",
        "ab?*cd",
        "?*x",
        "*[0-9]?x*",
        "user:*x*",
        "user:[ab]*:tmp",
        "[ab]c*d?e",
        r"a\?*?\*",
        "*a*a",
        "a*a*",
        "??",
        "[^x]?",
        "k?y*:lock",
        "*x*x*x*",
    ];
    let keys = [
        "a",
        "ab",
        "abc",
        "abxcd",
        "abcd",
        "abxxcd",
        "xx",
        "x",
        "zx",
        "1ax",
        "12axy",
        "user:x",
        "user:ax",
        "user:xa",
        "user:a:tmp",
        "user:c:tmp",
        "user:a:tmpx",
        "acde",
        "acxde",
        "bcdxe",
        "a?*",
        "a?x*",
        "a*",
        "aa",
        "aaa",
        "aba",
        "key:lock",
        "kay:x:lock",
        "xxx",
    ];
    for p in patterns {
        assert!(
            matches!(Pattern::new(p.as_bytes()).kind, Kind::Tokens(_)),
            "{p}"
        );
        let tokens = tokenize(p.as_bytes());
        for k in keys {
            let general = match_tokens(&tokens, k.as_bytes());
            assert_eq!(m(p, k), general, "pattern {p:?} key {k:?}");
        }
    }
    assert!(m("ab?*cd", "abxcd") && !m("ab?*cd", "abcd"));
    assert!(m("a?c", "abc") && !m("a?c", "abcc"));
    assert!(m("*[0-9]?x*", "12axy") && !m("*[0-9]?x*", "1x") && !m("*[0-9]?x*", "ax1"));
}

#[test]
fn a_literal_tail_after_the_last_star_is_one_comparison_not_a_scan() {
    let literal = "x".repeat(10 * 1024);
    let pattern = format!("?*{literal}");
    let p = Pattern::new(pattern.as_bytes());
    let Kind::Tokens(glob) = &p.kind else {
        panic!("not the general matcher")
    };
    // Only `?*` is left for the matcher; the 10 KB are compared once.
    assert_eq!(glob.middle, [Token::Any, Token::Star]);
    assert_eq!(glob.tail.len(), literal.len());
    let long = "x".repeat(20 * 1024);
    assert!(p.matches(long.as_bytes()));
    assert!(!p.matches(format!("{long}y").as_bytes()));
    assert!(!p.matches(literal.as_bytes()), "`?` needs one more byte");
    assert!(p.matches(format!("a{literal}").as_bytes()));
    // Shorter than the count of non-star elements: no match without matching.
    assert!(!m("a?b?c*", "a1b2"));
    assert!(m("a?b?c*", "a1b2c"));
}
