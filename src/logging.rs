//! Logs: `tracing` events written to stderr, as plain text lines (`--log-format human`, the
//! default) or one JSON object a line (`--log-format json`).
//!
//! Which events are written (first that applies):
//! 1. `--log-level` (or `NEARCACHE_LOG_LEVEL`, or `log_level` in the TOML file, in the usual
//!    flags > env > file order): one level for everything;
//! 2. else `RUST_LOG`, when set and not empty: any `tracing-subscriber` filter
//!    (`warn`, `nearcache::upstream=debug,info`, ...);
//! 3. else [`DEFAULT_LOG_LEVEL`] (`info`).
//!
//! An invalid `RUST_LOG` is a configuration error, as an invalid `--log-level` is.
//!
//! Levels: `error` for what needs an operator or means wrong data was served (accept
//! failures, stale L1 hits found by the audit, a failed start); `warn` for outages and
//! refusals the sidecar works around (upstream down, invalidation link down, a refused
//! `CLIENT TRACKING`); `info` for start-up, recoveries and shutdown.
//!
//! No event carries a password: the upstream URL is shown without its user info, and error
//! replies quoted from the upstream have the password of the request that caused them
//! replaced (see [`crate::upstream::Credentials::redact`]).

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LevelFilter, LogFormat, DEFAULT_LOG_LEVEL};

/// The filter for `level` (from `--log-level`, env or file) and `rust_log` (`RUST_LOG`),
/// applying the precedence in the module docs. Pure: the caller reads the environment.
pub fn filter(level: Option<LevelFilter>, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    let rust_log = rust_log.map(str::trim).filter(|s| !s.is_empty());
    match (level, rust_log) {
        (Some(level), _) => Ok(EnvFilter::default().add_directive(level.into())),
        (None, Some(text)) => EnvFilter::builder()
            .parse(text)
            .map_err(|e| format!("RUST_LOG: invalid filter {text:?}: {e}")),
        (None, None) => Ok(EnvFilter::default().add_directive(DEFAULT_LOG_LEVEL.into())),
    }
}

/// Installs the stderr subscriber for `config` and `RUST_LOG` (read here). The error is a
/// configuration problem (an invalid `RUST_LOG`), or a subscriber already installed.
pub fn init(config: &Config) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(config.log_level, rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(level: Option<LevelFilter>, rust_log: Option<&str>) -> String {
        filter(level, rust_log).unwrap().to_string()
    }

    #[test]
    fn log_level_beats_rust_log_which_beats_the_default() {
        assert_eq!(shown(None, None), "info");
        assert_eq!(shown(None, Some("")), "info");
        assert_eq!(shown(None, Some("  ")), "info");
        assert_eq!(shown(None, Some("debug")), "debug");
        assert_eq!(
            shown(None, Some("nearcache::upstream=trace,warn")),
            "nearcache::upstream=trace,warn"
        );
        assert_eq!(shown(Some(LevelFilter::WARN), Some("debug")), "warn");
        assert_eq!(shown(Some(LevelFilter::ERROR), None), "error");
        assert_eq!(shown(Some(LevelFilter::OFF), Some("trace")), "off");
    }

    #[test]
    fn an_invalid_rust_log_is_refused_unless_log_level_is_given() {
        let err = filter(None, Some("nearcache=loud")).unwrap_err();
        assert!(err.starts_with("RUST_LOG: invalid filter"), "{err}");
        assert!(filter(Some(LevelFilter::INFO), Some("nearcache=loud")).is_ok());
    }
}
