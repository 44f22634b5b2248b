//! The invalidation bus's key file (`--bus-key-file`): one key a line, the first signs
//! what this sidecar publishes, a second (the previous key during a rotation) is accepted
//! too. Lines are trimmed; blank lines and lines starting with `#` are skipped.

use std::path::Path;

/// Shortest key accepted, in bytes (`openssl rand -hex 32` gives 64).
pub const MIN_BUS_KEY_BYTES: usize = 16;
/// Most keys a file may hold: the current one and the previous one.
pub const MAX_BUS_KEYS: usize = 2;
/// Largest key file read (a Secret holds a few lines).
const MAX_FILE_BYTES: u64 = 64 << 10;

/// The keys in `text`, signing key first.
pub fn parse_bus_keys(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let keys: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect();
    match keys.len() {
        0 => return Err("the key file holds no key".into()),
        n if n > MAX_BUS_KEYS => {
            return Err(format!(
                "the key file holds {n} keys; at most {MAX_BUS_KEYS} (the current key, then the previous one)"
            ))
        }
        _ => {}
    }
    if let Some(short) = keys.iter().position(|k| k.len() < MIN_BUS_KEY_BYTES) {
        return Err(format!(
            "key {} is shorter than {MIN_BUS_KEY_BYTES} bytes (make one with: openssl rand -hex 32)",
            short + 1
        ));
    }
    Ok(keys)
}

/// Reads and parses the key file at `path`.
pub fn read_bus_keys(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {size} bytes: not a key file (at most {MAX_FILE_BYTES})",
            path.display()
        ));
    }
    parse_bus_keys(&std::fs::read(path).map_err(cannot)?)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_name_their_problem() {
        let k = |s: &str| s.as_bytes().to_vec();
        let current = "0123456789abcdef0123";
        assert_eq!(parse_bus_keys(current.as_bytes()), Ok(vec![k(current)]));
        let rotation = format!("# rotated today\n {current} \n\nprevious-key-0123456\n");
        assert_eq!(
            parse_bus_keys(rotation.as_bytes()),
            Ok(vec![k(current), k("previous-key-0123456")])
        );
        assert!(parse_bus_keys(b"\n# nothing\n")
            .unwrap_err()
            .contains("no key"));
        assert!(parse_bus_keys(b"short")
            .unwrap_err()
            .contains("shorter than 16"));
        let three = format!("{current}\n{current}1\n{current}2\n");
        assert!(parse_bus_keys(three.as_bytes())
            .unwrap_err()
            .contains("at most 2"));
    }
}
