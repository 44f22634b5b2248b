//! Secret files (`--upstream-password-file` and the like): a file's content is the secret,
//! without one trailing newline (`\n` or `\r\n`, as `echo` or an editor leaves it).
//! Errors name the path, never the content.

use std::path::Path;

use bytes::Bytes;

/// Largest secret file read (a Secret holds one line).
const MAX_FILE_BYTES: u64 = 64 << 10;

/// The secret in the file at `path`: its content without one trailing newline (`\n` or
/// `\r\n`). An unreadable, too large or empty file is an error naming the path (never the
/// content).
pub fn read_secret(path: &Path) -> Result<Bytes, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {size} bytes: not a secret file (at most {MAX_FILE_BYTES})",
            path.display()
        ));
    }
    let mut text = std::fs::read(path).map_err(cannot)?;
    if text.ends_with(b"\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with(b"\n") {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Bytes::from(text))
}
