//! Reload on SIGHUP: the configuration is read again as at start (the same flags, the
//! environment as it was at start, the `--config` file re-read), validated, and the options
//! that can change at run time are applied without dropping a client; the others are
//! reported as taking effect after a restart. An invalid configuration changes nothing.
//!
//! Applied at once: `log_level`, `slow_threshold`, `slowlog_max_len`,
//! `n_plus_one_threshold`, `n_plus_one_window`, `acl_recheck` (the re-check task follows
//! within [`crate::acl::RECHECK_POLL`]) and `audit_rate` (taken by each client connection
//! when it connects): the rows marked `reload live` in the options table
//! (`config/options.rs`). Every other option needs a restart: see [`restart_only`].

use std::fmt::Debug;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::config::{Config, Flags, LevelFilter, OPTIONS};
use crate::services::Services;

/// Re-reads and applies the configuration of a running sidecar.
pub struct Reloader {
    /// The flags (and environment) the process started with; they do not change.
    flags: Flags,
    shared: Arc<Services>,
    /// The configuration in force: the start one with every applied change.
    running: Config,
}

/// What one reload found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `name old -> new` for each option applied.
    pub applied: Vec<String>,
    /// The name of each changed option that needs a restart.
    pub restart: Vec<&'static str>,
}

impl Reloader {
    /// A reloader for the sidecar built from `shared.config`, read with `flags`.
    pub fn new(flags: Flags, shared: Arc<Services>) -> Reloader {
        let running = shared.config.clone();
        Reloader {
            flags,
            shared,
            running,
        }
    }

    /// Reads the configuration again and applies it, logging what changed (one line per
    /// option, then a summary) or, when it is invalid, every problem (nothing changes).
    pub fn reload(&mut self) {
        tracing::info!("reload: SIGHUP received, reading the configuration again");
        let stats = self.shared.stats.clone();
        let new = match Config::load(&self.flags) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(
                    "reload: invalid configuration ({} problem(s)); the running configuration stays",
                    e.problems.len()
                );
                for problem in &e.problems {
                    tracing::error!("reload: {problem}");
                }
                // Counted once logged: whoever sees the count can read the lines.
                stats.config_reload_failures.fetch_add(1, Relaxed);
                return;
            }
        };
        let outcome = self.apply(new);
        for line in &outcome.applied {
            tracing::info!("reload: {line}");
        }
        for name in &outcome.restart {
            tracing::warn!("reload: {name} changed; takes effect after a restart");
        }
        tracing::info!("reload: {}", summary(&outcome));
        stats.config_reloads.fetch_add(1, Relaxed);
    }

    /// Applies what can change at run time from `new` and lists what changed.
    fn apply(&mut self, new: Config) -> Outcome {
        let mut out = Outcome {
            restart: restart_only(&self.running, &new),
            ..Outcome::default()
        };
        let (old, shared) = (&mut self.running, &self.shared);
        if old.log_level != new.log_level {
            match crate::logging::set_level(new.log_level) {
                Ok(()) => {
                    out.applied.push(format!(
                        "log_level {} -> {}",
                        level(old.log_level),
                        level(new.log_level)
                    ));
                    old.log_level = new.log_level;
                }
                Err(e) => tracing::warn!("reload: log_level not changed: {e}"),
            }
        }
        let profiler = &shared.profiler;
        if changed(
            &mut out,
            "slow_threshold",
            &mut old.slow_threshold,
            new.slow_threshold,
        ) {
            profiler.slowlog.set_threshold(new.slow_threshold);
        }
        if changed(
            &mut out,
            "slowlog_max_len",
            &mut old.slowlog_max_len,
            new.slowlog_max_len,
        ) {
            profiler.slowlog.set_max_len(new.slowlog_max_len);
        }
        let threshold = changed(
            &mut out,
            "n_plus_one_threshold",
            &mut old.n_plus_one_threshold,
            new.n_plus_one_threshold,
        );
        let window = changed(
            &mut out,
            "n_plus_one_window",
            &mut old.n_plus_one_window,
            new.n_plus_one_window,
        );
        if threshold || window {
            profiler.set_n_plus_one(old.n_plus_one_threshold, old.n_plus_one_window);
        }
        if changed(
            &mut out,
            "acl_recheck",
            &mut old.acl_recheck,
            new.acl_recheck,
        ) {
            shared.acl.set_recheck(new.acl_recheck);
        }
        if changed(&mut out, "audit_rate", &mut old.audit_rate, new.audit_rate) {
            shared.audit.set_rate(new.audit_rate);
        }
        out
    }
}

/// Records `name old -> new` and takes `new` when they differ; true when they did.
fn changed<T: PartialEq + Debug>(out: &mut Outcome, name: &str, old: &mut T, new: T) -> bool {
    if *old == new {
        return false;
    }
    out.applied.push(format!("{name} {old:?} -> {new:?}"));
    *old = new;
    true
}

/// `info`, or `unset` when no level is given (then `RUST_LOG` or the default applies).
fn level(level: Option<LevelFilter>) -> String {
    level.map_or_else(|| "unset".to_owned(), |l| l.to_string().to_lowercase())
}

/// `3 options applied, 1 needs a restart`, or `nothing changed`.
pub fn summary(outcome: &Outcome) -> String {
    let (a, r) = (outcome.applied.len(), outcome.restart.len());
    if a == 0 && r == 0 {
        return "nothing changed".to_owned();
    }
    let options = if a == 1 { "option" } else { "options" };
    let needs = if r == 1 { "needs" } else { "need" };
    format!("{a} {options} applied, {r} {needs} a restart")
}

/// The options that differ between `old` and `new` and take effect only after a restart
/// (named as in the TOML file).
pub fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let live = |key: &&str| OPTIONS.iter().any(|s| s.key == *key && s.live);
    let mut names: Vec<&'static str> = old
        .differing(new)
        .into_iter()
        .filter(|k| !live(k))
        .collect();
    if old.namespaces != new.namespaces {
        names.push("namespace");
    }
    if old.warm != new.warm {
        names.push("warm");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(file: &str) -> Config {
        Config::from_parts(&Flags::default(), Some(file)).expect("valid config")
    }

    #[test]
    fn restart_only_options_are_named_as_in_the_file() {
        let old = config("listen = \"127.0.0.1:7000\"\nl1_ttl = \"60s\"\n");
        let new =
            config("listen = \"127.0.0.1:7001\"\nl1_ttl = \"5s\"\nslow_threshold = \"1ms\"\n");
        assert_eq!(restart_only(&old, &new), ["listen", "l1_ttl"]);
        assert!(restart_only(&old, &old.clone()).is_empty());
    }

    #[test]
    fn summary_counts_both_kinds() {
        let mut o = Outcome::default();
        assert_eq!(summary(&o), "nothing changed");
        o.applied = vec!["a".into(), "b".into(), "c".into()];
        o.restart = vec!["listen"];
        assert_eq!(summary(&o), "3 options applied, 1 needs a restart");
        o.applied.truncate(1);
        o.restart.push("threads");
        assert_eq!(summary(&o), "1 option applied, 2 need a restart");
    }
}
