//! [`ProfilerFigures`]: one snapshot of the profiler's figures (the slow log, N+1 reads, the
//! hottest key), what INFO and `/metrics` render.

use super::Profiler;

/// The profiler's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilerFigures {
    /// `--slow-threshold`, microseconds.
    pub slow_threshold_us: u64,
    /// Slow commands seen since start.
    pub slow_commands: u64,
    /// Slow calls by the name (upper case) of their first command, most first.
    pub slow_by_command: Vec<(String, u64)>,
    /// Entries in the slow log now.
    pub slowlog_len: u64,
    /// Its bound (`--slowlog-max-len`).
    pub slowlog_max_len: u64,
    /// `--n-plus-one-threshold`.
    pub n_plus_one_threshold: u64,
    /// `--n-plus-one-window`, milliseconds.
    pub n_plus_one_window_ms: u64,
    /// N+1 patterns found since start.
    pub n_plus_one_detected: u64,
    /// Approximate reads of the most read key (0 when none was sampled).
    pub hottest_key_reads: u64,
}

impl Profiler {
    /// The figures now.
    pub fn figures(&self) -> ProfilerFigures {
        ProfilerFigures {
            slow_threshold_us: self.slowlog.threshold().as_micros() as u64,
            slow_commands: self.slow_commands(),
            slow_by_command: self.slow_by_command(),
            slowlog_len: self.slowlog.len() as u64,
            slowlog_max_len: self.slowlog.max_len() as u64,
            n_plus_one_threshold: self.n_plus_one_threshold() as u64,
            n_plus_one_window_ms: self.n_plus_one_window().as_millis() as u64,
            n_plus_one_detected: self.n_plus_one(),
            hottest_key_reads: self.hot_keys(1).into_iter().next().map_or(0, |(_, n)| n),
        }
    }
}
