//! Where the sidecar's own credentials come from: fixed ones (the `--upstream` URL's user and
//! password), or files (`--upstream-username-file`, `--upstream-password-file`, and the
//! Sentinel pair) re-read when they change on disk, so that a rotated Secret is used by
//! every new connection while open ones keep theirs.
//!
//! A file's change is seen from its metadata (device, inode, length, modification time),
//! checked at each use: cheap next to a connect, and a Kubernetes Secret swapped by
//! renaming its `..data` symlink gives the path a new inode. No file handle is kept. A file
//! that becomes unreadable or empty leaves the previous secret in use, with a warning
//! once per change; the log names the path, never the content.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;

use super::Credentials;
use crate::config::secret_file::read_secret;

/// The source of one set of credentials (the upstream's, or the sentinels'): it yields the
/// current [`Credentials`] for each new connection. Cheap to clone (shared).
#[derive(Clone)]
pub struct CredentialSource {
    inner: Arc<Inner>,
}

struct Inner {
    user: Part,
    pass: Part,
}

/// The user name or the password: absent, fixed, or a watched file.
enum Part {
    None,
    Fixed(Bytes),
    File(SecretFile),
}

impl Part {
    fn current(&self) -> Option<Bytes> {
        match self {
            Part::None => None,
            Part::Fixed(b) => Some(b.clone()),
            Part::File(f) => Some(f.current()),
        }
    }
}

impl std::fmt::Debug for CredentialSource {
    /// Names the user and where the password comes from, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = |p: &Part| match p {
            Part::None => "none".to_owned(),
            Part::Fixed(_) => "fixed".to_owned(),
            Part::File(file) => format!("file {}", file.path.display()),
        };
        f.debug_struct("CredentialSource")
            .field("user", &from(&self.inner.user))
            .field("pass", &from(&self.inner.pass))
            .finish()
    }
}

impl CredentialSource {
    /// Fixed credentials (or none): those of the upstream URL.
    pub fn fixed(creds: Option<Credentials>) -> CredentialSource {
        let (user, pass) = match creds {
            Some(c) => (c.user.map_or(Part::None, Part::Fixed), Part::Fixed(c.pass)),
            None => (Part::None, Part::None),
        };
        CredentialSource {
            inner: Arc::new(Inner { user, pass }),
        }
    }

    /// A user (fixed or from a file) and a password (fixed or from a file); a file is read
    /// now, and an unreadable or empty one is an error naming its path. A user without a
    /// password yields no credentials, as a URL with only a user does.
    pub fn new(
        user: Option<Bytes>,
        user_file: Option<&Path>,
        pass: Option<Bytes>,
        pass_file: Option<&Path>,
    ) -> Result<CredentialSource, String> {
        let part = |fixed: Option<Bytes>, file: Option<&Path>| -> Result<Part, String> {
            Ok(match (fixed, file) {
                (_, Some(path)) => Part::File(SecretFile::open(path)?),
                (Some(b), None) => Part::Fixed(b),
                (None, None) => Part::None,
            })
        };
        let user = part(user, user_file)?;
        let pass = part(pass, pass_file)?;
        Ok(CredentialSource {
            inner: Arc::new(Inner { user, pass }),
        })
    }

    /// Whether credentials are configured at all (a password, fixed or from a file).
    pub fn is_some(&self) -> bool {
        !matches!(self.inner.pass, Part::None)
    }

    /// The credentials a new connection authenticates with now (files re-read first when
    /// they changed); `None` without a password.
    pub fn current(&self) -> Option<Credentials> {
        let pass = self.inner.pass.current()?;
        Some(Credentials {
            user: self.inner.user.current(),
            pass,
        })
    }
}

/// A file's identity and version as its metadata tells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// One secret file and what was last read from it.
struct SecretFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    /// The secret in use.
    secret: Bytes,
    /// The metadata of the file as last looked at (read or refused), `None` when the
    /// metadata could not be read.
    seen: Option<Stamp>,
}

impl SecretFile {
    /// Reads the file now: it must hold a secret.
    fn open(path: &Path) -> Result<SecretFile, String> {
        let seen = stamp(path).ok();
        let secret = read_secret(path)?;
        Ok(SecretFile {
            path: path.to_owned(),
            state: Mutex::new(FileState { secret, seen }),
        })
    }

    /// The secret now: the file re-read when its metadata changed; the previous secret
    /// when it no longer holds one (warned once per change).
    fn current(&self) -> Bytes {
        let now = stamp(&self.path).ok();
        let mut state = self.state.lock();
        if now != state.seen {
            state.seen = now;
            match read_secret(&self.path) {
                Ok(secret) if secret != state.secret => {
                    tracing::info!(
                        file = %self.path.display(),
                        "secret file changed: new upstream connections use the new secret"
                    );
                    state.secret = secret;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("{e}: the previous secret stays in use for new connections")
                }
            }
        }
        state.secret.clone()
    }
}

#[cfg(test)]
mod tests;
