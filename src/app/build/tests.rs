use clap::Parser;

use super::*;
use crate::config::Flags;

fn config(args: &[&str]) -> Config {
    let flags =
        Flags::try_parse_from(std::iter::once("nearcache").chain(args.iter().copied())).unwrap();
    Config::from_parts(&flags, None).unwrap()
}

/// `config` of a Sentinel upstream with `args`.
fn sentinel_config(args: &[&str]) -> Config {
    let upstream = ["--upstream", "redis+sentinel://127.0.0.1:26379/mymaster"];
    config(&[&upstream[..], args].concat())
}

#[test]
fn sentinel_credentials_come_from_their_options_or_files_and_follow_the_files() {
    let dir = std::env::temp_dir().join(format!("nearcache-sentinel-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (user, pass) = (dir.join("user"), dir.join("pass"));
    std::fs::write(&user, "watcher\n").unwrap();
    std::fs::write(&pass, "s1\n").unwrap();

    let none = sentinel_credentials(&config(&[])).unwrap();
    assert!(none.current().is_none());
    let given = sentinel_config(&["--sentinel-username", "w", "--sentinel-password", "p"]);
    let c = sentinel_credentials(&given).unwrap().current().unwrap();
    assert_eq!(
        (c.user.as_deref(), &c.pass[..]),
        (Some(&b"w"[..]), &b"p"[..])
    );

    let files = sentinel_config(&[
        "--sentinel-username-file",
        user.to_str().unwrap(),
        "--sentinel-password-file",
        pass.to_str().unwrap(),
    ]);
    let source = sentinel_credentials(&files).unwrap();
    let c = source.current().unwrap();
    assert_eq!(
        (c.user.as_deref(), &c.pass[..]),
        (Some(&b"watcher"[..]), &b"s1"[..])
    );
    let tmp = dir.join("pass.tmp");
    std::fs::write(&tmp, "s2\n").unwrap();
    std::fs::rename(&tmp, &pass).unwrap();
    assert_eq!(&source.current().unwrap().pass[..], b"s2");
    // The upstream's own credentials are not the sentinels'.
    assert!(credentials(&files).unwrap().current().is_none());

    std::fs::remove_file(&pass).unwrap();
    let e = sentinel_credentials(&files).unwrap_err();
    assert!(e.contains(&*pass.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upstream_credentials_take_the_url_user_and_the_password_file() {
    let dir = std::env::temp_dir().join(format!("nearcache-upstream-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pass = dir.join("pass");
    std::fs::write(&pass, "from-file\r\n").unwrap();
    let c = config(&[
        "--upstream",
        "redis://app@127.0.0.1:6379",
        "--upstream-password-file",
        pass.to_str().unwrap(),
    ]);
    let c = credentials(&c).unwrap().current().unwrap();
    assert_eq!(
        (c.user.as_deref(), &c.pass[..]),
        (Some(&b"app"[..]), &b"from-file"[..])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
