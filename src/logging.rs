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
//! Lines that a client's traffic can repeat (stale hits found by the audit, N+1 reads) go
//! through a [`Limiter`]: at most one of a kind per [`LOG_EVERY`] for the whole process,
//! the others counted and reported as `(N more since the last line)`.
//!
//! No event carries a password: the upstream URL is shown without its user info, and error
//! replies quoted from the upstream have the password of the request that caused them
//! replaced (see [`crate::upstream::Credentials::redact`]).

use std::time::Duration;

use tokio::time::Instant;
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
/// configuration problem (an invalid `RUST_LOG`), or a subscriber already installed. The
/// filter can be replaced later by [`set_level`] (a reload).
pub fn init(config: &Config) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(config.log_level, rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed: Result<Reload, _> = match config.log_format {
        LogFormat::Human => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder
                .try_init()
                .map(|()| Box::new(move |f| handle.reload(f)) as Reload)
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder
                .try_init()
                .map(|()| Box::new(move |f| handle.reload(f)) as Reload)
        }
    };
    let reload = installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    let _ = INSTALLED.set(Installed { reload, rust_log });
    Ok(())
}

/// Replaces the installed subscriber's filter with the filter of `level` and the
/// `RUST_LOG` read at start (the precedence in the module docs). The error says why.
pub fn set_level(level: Option<LevelFilter>) -> Result<(), String> {
    let Some(installed) = INSTALLED.get() else {
        return Err("no logger installed".to_owned());
    };
    let filter = filter(level, installed.rust_log.as_deref())?;
    (installed.reload)(filter).map_err(|e| format!("cannot change the log filter: {e}"))
}

/// Swaps the installed subscriber's filter.
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), tracing_subscriber::reload::Error> + Send + Sync>;

/// The installed subscriber's filter handle, and the `RUST_LOG` it was built with.
struct Installed {
    reload: Reload,
    rust_log: Option<String>,
}

/// Set once by [`init`].
static INSTALLED: std::sync::OnceLock<Installed> = std::sync::OnceLock::new();

/// At most one line of a kind per this period; the others are counted in the next line.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Whether a log line may be written now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it, mentioning the lines suppressed since the last one.
    Log {
        /// Lines suppressed since the last one written.
        suppressed: u64,
    },
    /// Suppressed; the first suppressed of a period says when to report the count.
    Suppress {
        /// When to report the count of suppressed lines (the first suppressed of a period).
        flush_at: Option<Instant>,
    },
}

/// At most one line per [`LOG_EVERY`], with a count of the suppressed ones.
#[derive(Debug, Default)]
pub struct Limiter {
    /// When the last line was written.
    last: Option<Instant>,
    /// Lines suppressed since.
    suppressed: u64,
}

impl Limiter {
    /// Whether a line may be written at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                self.suppressed += 1;
                let flush_at = (self.suppressed == 1).then_some(last + LOG_EVERY);
                Admit::Suppress { flush_at }
            }
            _ => {
                self.last = Some(now);
                Admit::Log {
                    suppressed: std::mem::take(&mut self.suppressed),
                }
            }
        }
    }

    /// At the end of a period: the count of suppressed lines to report now as one line, if
    /// any are left unreported and a line may be written.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_EVERY);
        if self.suppressed == 0 || !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// ` (N more since the last line)` for a line written after `suppressed` were held back.
pub fn more(suppressed: u64) -> String {
    match suppressed {
        0 => String::new(),
        n => format!(" ({n} more since the last line)"),
    }
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
