//! `--tracking bcast` and `--tracking-prefixes`: parsing the list, the overlaps Redis would
//! refuse, and the options it excludes.

use super::*;

fn prefixes(text: &str) -> Result<Option<Vec<String>>, Vec<String>> {
    let flags = Flags {
        tracking: Some("bcast".into()),
        tracking_prefixes: Some(text.into()),
        ..Flags::default()
    };
    match Config::from_parts(&flags, None) {
        Ok(c) => Ok(c.tracking_prefixes),
        Err(e) => Err(e.problems),
    }
}

#[test]
fn bcast_parses_with_no_prefixes_meaning_every_key() {
    let flags = Flags {
        tracking: Some("BCAST".into()),
        ..Flags::default()
    };
    let c = Config::from_parts(&flags, None).unwrap();
    assert_eq!(c.tracking, TrackingMode::Bcast);
    assert_eq!(c.tracking_prefixes, None);
    assert_eq!(prefixes(""), Ok(Some(vec![])));
    assert_eq!(prefixes("  "), Ok(Some(vec![])));
}

#[test]
fn prefixes_are_split_on_commas_and_trimmed() {
    let want = vec!["user:".to_owned(), "session:".to_owned(), "a b".to_owned()];
    assert_eq!(prefixes("user:, session: ,a b"), Ok(Some(want)));
    let c = Config::from_parts(
        &flags_with_file(),
        Some("tracking = \"bcast\"\ntracking_prefixes = \"x:,y:\"\n"),
    )
    .unwrap();
    assert_eq!(c.tracking_prefixes, Some(vec!["x:".into(), "y:".into()]));
}

#[test]
fn overlapping_or_empty_prefixes_are_refused_with_the_pair() {
    for (text, said) in [
        ("user:,user:1", r#"prefixes "user:" and "user:1" overlap"#),
        ("a:1,b:,a:", r#"prefixes "a:1" and "a:" overlap"#),
        ("x,x", r#"prefixes "x" and "x" overlap"#),
        ("x,,y", "an empty prefix"),
        ("x,", "an empty prefix"),
        ("x\ny", "invalid prefix"),
    ] {
        let got = prefixes(text).unwrap_err();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("--tracking-prefixes: "), "{got:?}");
        assert!(got[0].contains(said), "{text:?}: {got:?}");
    }
}

#[test]
fn prefixes_without_bcast_and_bcast_with_a_cluster_are_refused() {
    let flags = Flags {
        tracking_prefixes: Some("user:".into()),
        ..Flags::default()
    };
    let got = problems(&flags, None);
    assert!(
        got[0].starts_with("--tracking-prefixes: only with --tracking bcast"),
        "{got:?}"
    );
    let flags = Flags {
        tracking: Some("bcast".into()),
        upstream: Some("redis+cluster://127.0.0.1:7000".into()),
        ..Flags::default()
    };
    let got = problems(&flags, None);
    assert!(
        got[0].starts_with("--tracking bcast: not supported with a Redis Cluster"),
        "{got:?}"
    );
}
