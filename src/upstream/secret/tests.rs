use super::*;

/// A scratch directory of this test, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("nearcache-secret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// Writes `content` to `name` as Kubernetes does: a new file renamed over the old one.
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        let path = self.0.join(name);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pass(source: &CredentialSource) -> Bytes {
    source.current().unwrap().pass
}

#[test]
fn one_trailing_newline_is_stripped() {
    let dir = Dir::new("newline");
    for (content, secret) in [
        ("s3cret\n", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\n\n", "s3cret\n"),
        (" spaced \n", " spaced "),
    ] {
        let path = dir.write("pass", content);
        assert_eq!(
            crate::config::secret_file::read_secret(&path).unwrap(),
            secret,
            "{content:?}"
        );
    }
}

#[test]
fn empty_or_missing_files_are_refused_naming_the_path_not_the_content() {
    let dir = Dir::new("refused");
    let empty = dir.write("empty", "\n");
    let e = CredentialSource::new(None, None, None, Some(&empty)).unwrap_err();
    assert!(
        e.contains(&*empty.display().to_string()) && e.contains("empty"),
        "{e}"
    );
    let missing = dir.0.join("missing");
    let e = CredentialSource::new(None, Some(&missing), Some("p".into()), None).unwrap_err();
    assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
}

#[test]
fn fixed_credentials_are_those_of_the_url() {
    assert!(CredentialSource::fixed(None).current().is_none());
    assert!(!CredentialSource::fixed(None).is_some());
    let c = Credentials {
        user: Some("app".into()),
        pass: "p".into(),
    };
    let s = CredentialSource::fixed(Some(c.clone()));
    assert!(s.is_some());
    assert_eq!(s.current(), Some(c));
    // A user without a password is no credentials, as in a URL.
    let s = CredentialSource::new(Some("app".into()), None, None, None).unwrap();
    assert!(s.current().is_none() && !s.is_some());
}

#[test]
fn a_rotated_file_is_used_and_a_broken_one_keeps_the_previous_secret() {
    let dir = Dir::new("rotate");
    let user = dir.write("user", "app\n");
    let path = dir.write("pass", "old\n");
    let s = CredentialSource::new(None, Some(&user), None, Some(&path)).unwrap();
    assert_eq!(
        s.current(),
        Some(Credentials {
            user: Some("app".into()),
            pass: "old".into()
        })
    );
    dir.write("pass", "new\n");
    assert_eq!(pass(&s), "new");
    // Emptied, then removed: the previous secret stays.
    dir.write("pass", "");
    assert_eq!(pass(&s), "new");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(pass(&s), "new");
    dir.write("pass", "newer\r\n");
    assert_eq!(pass(&s), "newer");
    // The clones share the file.
    let clone = s.clone();
    dir.write("user", "other");
    assert_eq!(
        clone.current().unwrap().user.as_deref(),
        Some(&b"other"[..])
    );
    assert!(!format!("{s:?}").contains("newer"));
}

#[test]
fn a_symlinked_secret_swapped_as_kubernetes_does_is_followed() {
    let dir = Dir::new("k8s");
    std::fs::create_dir_all(dir.0.join("v1")).unwrap();
    std::fs::create_dir_all(dir.0.join("v2")).unwrap();
    std::fs::write(dir.0.join("v1/password"), "one\n").unwrap();
    std::fs::write(dir.0.join("v2/password"), "two\n").unwrap();
    std::os::unix::fs::symlink("v1", dir.0.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/password", dir.0.join("password")).unwrap();
    let s = CredentialSource::new(None, None, None, Some(&dir.0.join("password"))).unwrap();
    assert_eq!(pass(&s), "one");
    std::os::unix::fs::symlink("v2", dir.0.join("..data_tmp")).unwrap();
    std::fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).unwrap();
    assert_eq!(pass(&s), "two");
}
