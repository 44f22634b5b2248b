//! Resolution tests: precedence, file handling, problem collection, secrecy
//! (`precedence`), each family of options (`families`), and broadcast tracking's prefixes
//! (`tracking`). Flags are built in code; the
//! process environment is never read or changed.

mod families;
mod precedence;
mod tracking;

use super::*;

fn flags_with_file() -> Flags {
    Flags {
        config: Some("nearcache.toml".into()),
        ..Default::default()
    }
}

fn problems(flags: &Flags, file: Option<&str>) -> Vec<String> {
    Config::from_parts(flags, file).unwrap_err().problems
}
