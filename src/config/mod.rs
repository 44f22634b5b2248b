//! Configuration: flags (already merged with `NEARCACHE_*` env by clap) over a TOML file over
//! defaults, resolved into one validated [`Config`]; every problem is reported at once.
//!
//! Values stay text until [`Config::from_parts`], so flags, env and file share one parser
//! (the private `parse` module), and every problem names the option as the flag is spelled
//! (`--l1-ttl: invalid duration "abc" ...`), whichever source the value came from.

pub mod bus_key;
mod flags;
pub mod namespaces;
mod parse;
pub mod url;
mod warm;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
pub use tracing::level_filters::LevelFilter;

pub use crate::protocol::Limits;
pub use flags::{Command, Flags};
pub use namespaces::{NamespaceConfig, DEFAULT_NAMESPACE, MAX_NAMESPACES};
pub use warm::WarmConfig;

/// A DURATION as the options take it (`500ms`, `60s`, a bare integer is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse::duration(s)
}

/// Default `--metrics-listen`: the HTTP address of `/metrics`, `/healthz`, `/readyz`.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9380);

/// Default `--listen`: the client listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6380);
/// Default `--upstream`: the upstream Redis URL.
pub const DEFAULT_UPSTREAM: &str = "redis://127.0.0.1:6379";
/// Default `--l1-max-bytes`: 256MiB.
pub const DEFAULT_L1_MAX_BYTES: u64 = 256 << 20;
/// Default `--l1-ttl`: 60s.
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(60);
/// Default `--l1-compress-min-bytes`: 4096.
pub const DEFAULT_L1_COMPRESS_MIN_BYTES: usize = 4096;
/// Default `--l1-cache-nil`: true.
pub const DEFAULT_L1_CACHE_NIL: bool = true;
/// Default `--serve-stale-when-down`: false.
pub const DEFAULT_SERVE_STALE_WHEN_DOWN: bool = false;
/// Default `--acl-recheck`: 1s.
pub const DEFAULT_ACL_RECHECK: Duration = Duration::from_secs(1);
/// Default `--upstream-connections`: 4.
pub const DEFAULT_UPSTREAM_CONNECTIONS: usize = 4;
/// Default `--upstream-timeout`: 5s.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `--upstream-idle-timeout`: 30s.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--max-upstream-routes`: 64.
pub const DEFAULT_MAX_UPSTREAM_ROUTES: usize = 64;
/// Default `--connect-timeout`: 1s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `--max-clients`: 10000.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default `--max-pinned`: 1024.
pub const DEFAULT_MAX_PINNED: usize = 1024;
/// Default `--max-bulk-bytes`: 512MiB.
pub const DEFAULT_MAX_BULK_BYTES: usize = 512 << 20;
/// Default `--max-array-len`: 1048576.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1_048_576;
/// Default `--max-inline-bytes`: 64KiB.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 64 << 10;
/// Default `--shutdown-grace`: 5s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default `--threads`: 1. A sidecar shares its host with the application; one worker
/// thread avoids cross-core traffic on the hit path and serves over a million pipelined
/// hits per second on its own.
pub const DEFAULT_THREADS: usize = 1;
/// Default `--tracking`: Redis server-assisted tracking covers every key L1 holds.
pub const DEFAULT_TRACKING: TrackingMode = TrackingMode::Default;
/// Default `--invalidation-heartbeat`: 1s.
pub const DEFAULT_INVALIDATION_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default `--invalidation-channel`: the invalidation bus every sidecar subscribes to.
pub const DEFAULT_INVALIDATION_CHANNEL: &str = "nearcache:invalidate";

/// How L1 learns of writes made elsewhere (`--tracking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMode {
    /// Redis server-assisted tracking: every upstream connection that fills L1 redirects
    /// its invalidations to the sidecar's control connection.
    Default,
    /// No tracking: only writes through this sidecar and `--l1-ttl` bound staleness.
    Off,
}
/// Default `--audit-rate`: one L1 hit in a thousand is re-read from the upstream and compared.
pub const DEFAULT_AUDIT_RATE: f64 = 0.001;
/// Default `--log-format`: plain text lines.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Human;
/// Default `--log-level` when neither it nor `RUST_LOG` is set: start-up, outages and
/// recoveries, and everything worse.
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::INFO;

/// How log lines are written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text: timestamp, level, module, message, then `name=value` fields.
    Human,
    /// One JSON object a line (`timestamp`, `level`, `fields.message`, `target`), for log
    /// pipelines.
    Json,
}
/// Default `--slow-threshold`: 10ms.
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(10);
/// Default `--slowlog-max-len`: 128 entries.
pub const DEFAULT_SLOWLOG_MAX_LEN: usize = 128;
/// Default `--n-plus-one-threshold`: 10 reads.
pub const DEFAULT_N_PLUS_ONE_THRESHOLD: usize = 10;
/// Default `--n-plus-one-window`: 100ms.
pub const DEFAULT_N_PLUS_ONE_WINDOW: Duration = Duration::from_millis(100);

/// Where the upstream Redis is and how to log in; `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL user name from the URL, percent-decoded.
    pub username: Option<String>,
    /// Password from the URL, percent-decoded.
    pub password: Option<String>,
    /// Logical database selected on new upstream connections (default 0).
    pub db: u32,
}

impl UpstreamAddr {
    /// `host:port` for connecting, with an IPv6 host in brackets (`[::1]:6379`).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}/{}", self.host_port(), self.db)
    }
}

impl fmt::Debug for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

/// The validated configuration the rest of the binary runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client listen address (`--listen`).
    pub listen: SocketAddr,
    /// Upstream Redis (`--upstream`).
    pub upstream: UpstreamAddr,
    /// L1 bound in bytes: key + value + overhead (`--l1-max-bytes`).
    pub l1_max_bytes: u64,
    /// Max L1 lifetime, also capped by the key's upstream PTTL; zero disables L1 (`--l1-ttl`).
    pub l1_ttl: Duration,
    /// Values at least this big are stored zstd-compressed (`--l1-compress-min-bytes`).
    pub l1_compress_min_bytes: usize,
    /// Cache missing keys as nil (`--l1-cache-nil`).
    pub l1_cache_nil: bool,
    /// Keep answering L1 hits while the upstream is unreachable (`--serve-stale-when-down`).
    pub serve_stale_when_down: bool,
    /// Longest time a learned ACL permission to answer GET/MGET from L1 is trusted before
    /// the upstream is asked again; zero: until an ACL change through the sidecar
    /// (`--acl-recheck`).
    pub acl_recheck: Duration,
    /// Multiplexed upstream connections per (db, protocol, user) (`--upstream-connections`).
    pub upstream_connections: usize,
    /// Bound on one upstream reply (`--upstream-timeout`).
    pub upstream_timeout: Duration,
    /// Bound on one upstream connect + handshake (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// Upstream pools no client has used this long are closed (`--upstream-idle-timeout`).
    pub upstream_idle_timeout: Duration,
    /// Most upstream pools, one per (db, protocol, user) (`--max-upstream-routes`).
    pub max_upstream_routes: usize,
    /// Most client connections at once (`--max-clients`).
    pub max_clients: usize,
    /// Most upstream connections pinned to one client each, kept ones included
    /// (`--max-pinned`).
    pub max_pinned: usize,
    /// Bounds on client requests (`--max-bulk-bytes`, `--max-array-len`, `--max-inline-bytes`).
    pub limits: Limits,
    /// Drain time on SIGTERM / SIGINT (`--shutdown-grace`).
    pub shutdown_grace: Duration,
    /// Worker threads (`--threads`).
    pub threads: usize,
    /// How writes made elsewhere reach L1 (`--tracking`).
    pub tracking: TrackingMode,
    /// Heartbeat of the control connection (`--invalidation-heartbeat`).
    pub invalidation_heartbeat: Duration,
    /// Pub/sub channel of the invalidation bus (`--invalidation-channel`).
    pub invalidation_channel: String,
    /// File with the bus's shared key(s) (`--bus-key-file`); `None`: the bus is open.
    pub bus_key_file: Option<std::path::PathBuf>,
    /// Fraction of L1 hits re-read from the upstream and compared with what was served, in
    /// `0..=1`; zero disables the staleness audit (`--audit-rate`).
    pub audit_rate: f64,
    /// HTTP address of `/metrics`, `/healthz`, `/readyz` (`--metrics-listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Format of the log lines on stderr (`--log-format`).
    pub log_format: LogFormat,
    /// Log level (`--log-level`); `None` when given nowhere: then `RUST_LOG` applies if
    /// set, else [`DEFAULT_LOG_LEVEL`] (see [`crate::logging`]).
    pub log_level: Option<LevelFilter>,
    /// Upstream calls that keep a client waiting at least this long are logged as slow;
    /// zero logs every call (`--slow-threshold`).
    pub slow_threshold: Duration,
    /// Entries kept in the slow log (`--slowlog-max-len`).
    pub slowlog_max_len: usize,
    /// Single-key reads of one key shape by one client that make an N+1
    /// (`--n-plus-one-threshold`).
    pub n_plus_one_threshold: usize,
    /// The window those reads must fall in (`--n-plus-one-window`).
    pub n_plus_one_window: Duration,
    /// Per-pattern cache policies, first match wins (`[[namespace]]`, config file only).
    pub namespaces: Vec<NamespaceConfig>,
    /// Warming at start, from peers and after a flush (`[warm]`, config file only).
    pub warm: WarmConfig,
}

/// Every configuration problem found, one line each when displayed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// One message per problem, each naming the option (`--l1-ttl: invalid duration "abc" ...`).
    pub problems: Vec<String>,
}

/// The TOML file: keys are the flag names with `_`; unknown keys are refused.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Scalar>,
    upstream: Option<Scalar>,
    l1_max_bytes: Option<Scalar>,
    l1_ttl: Option<Scalar>,
    l1_compress_min_bytes: Option<Scalar>,
    l1_cache_nil: Option<Scalar>,
    serve_stale_when_down: Option<Scalar>,
    acl_recheck: Option<Scalar>,
    upstream_connections: Option<Scalar>,
    upstream_timeout: Option<Scalar>,
    connect_timeout: Option<Scalar>,
    upstream_idle_timeout: Option<Scalar>,
    max_upstream_routes: Option<Scalar>,
    max_clients: Option<Scalar>,
    max_pinned: Option<Scalar>,
    max_bulk_bytes: Option<Scalar>,
    max_array_len: Option<Scalar>,
    max_inline_bytes: Option<Scalar>,
    shutdown_grace: Option<Scalar>,
    threads: Option<Scalar>,
    tracking: Option<Scalar>,
    invalidation_heartbeat: Option<Scalar>,
    invalidation_channel: Option<Scalar>,
    bus_key_file: Option<Scalar>,
    audit_rate: Option<Scalar>,
    metrics_listen: Option<Scalar>,
    log_format: Option<Scalar>,
    log_level: Option<Scalar>,
    slow_threshold: Option<Scalar>,
    slowlog_max_len: Option<Scalar>,
    n_plus_one_threshold: Option<Scalar>,
    n_plus_one_window: Option<Scalar>,
    namespace: Option<Vec<toml::Value>>,
    warm: Option<toml::Value>,
}

/// A TOML string, integer, float or boolean kept as text, so file and flags share one parser.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// Collects problems while picking each option's text (flag, else file) and parsing it.
struct Resolver {
    file_name: String,
    problems: Vec<String>,
}

impl Resolver {
    /// The parsed value of the option stored in field `name` (flag `--name-with-dashes`),
    /// or `None` when given nowhere or invalid (then the problem is recorded).
    fn pick<T>(
        &mut self,
        name: &str,
        given: &Option<String>,
        in_file: Option<Scalar>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, origin) = match (given, in_file) {
            (Some(text), _) => (text.clone(), String::new()),
            (None, Some(Scalar(text))) => (text, format!(" (in {})", self.file_name)),
            (None, None) => return None,
        };
        parse(&text)
            .map_err(|e| {
                let flag = name.replace('_', "-");
                self.problems.push(format!("--{flag}: {e}{origin}"));
            })
            .ok()
    }
}

impl Config {
    /// Pure: flags (already merged with env by clap) over file text over defaults.
    /// Reports every problem at once.
    pub fn from_parts(flags: &Flags, file_text: Option<&str>) -> Result<Config, ConfigError> {
        let file_name = match &flags.config {
            Some(path) => path.display().to_string(),
            None => "the config file".to_owned(),
        };
        let mut r = Resolver {
            file_name,
            problems: Vec::new(),
        };
        let file = match file_text.map(toml::from_str::<FileConfig>) {
            None => FileConfig::default(),
            Some(Ok(file)) => file,
            Some(Err(e)) => {
                // Message and position only: the source line may hold the upstream password.
                let text = file_text.unwrap_or_default();
                let before = text.get(..e.span().map_or(0, |s| s.start)).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rsplit('\n')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .count()
                    + 1;
                let msg = match e.message().trim() {
                    "" => "invalid TOML syntax".to_owned(),
                    msg => msg.replace('\n', " "),
                };
                let file = &r.file_name;
                r.problems.push(format!(
                    "--config: {file} line {line}, column {column}: {msg}"
                ));
                FileConfig::default()
            }
        };
        // `pick!(field, parser)`: that option's flag text, else its file text, parsed.
        macro_rules! pick {
            ($field:ident, $parse:expr) => {
                r.pick(stringify!($field), &flags.$field, file.$field, $parse)
            };
        }
        let mut config = Config {
            namespaces: Vec::new(),
            warm: WarmConfig::defaults(DEFAULT_L1_MAX_BYTES),
            listen: pick!(listen, parse::socket_addr).unwrap_or(DEFAULT_LISTEN),
            upstream: pick!(upstream, url::upstream)
                .unwrap_or_else(|| url::upstream(DEFAULT_UPSTREAM).expect("valid default")),
            l1_max_bytes: pick!(l1_max_bytes, parse::size).unwrap_or(DEFAULT_L1_MAX_BYTES),
            l1_ttl: pick!(l1_ttl, parse::duration).unwrap_or(DEFAULT_L1_TTL),
            l1_compress_min_bytes: pick!(l1_compress_min_bytes, parse::positive_size)
                .unwrap_or(DEFAULT_L1_COMPRESS_MIN_BYTES),
            l1_cache_nil: pick!(l1_cache_nil, parse::boolean).unwrap_or(DEFAULT_L1_CACHE_NIL),
            serve_stale_when_down: pick!(serve_stale_when_down, parse::boolean)
                .unwrap_or(DEFAULT_SERVE_STALE_WHEN_DOWN),
            acl_recheck: pick!(acl_recheck, parse::duration).unwrap_or(DEFAULT_ACL_RECHECK),
            upstream_connections: pick!(upstream_connections, parse::count)
                .unwrap_or(DEFAULT_UPSTREAM_CONNECTIONS),
            upstream_timeout: pick!(upstream_timeout, parse::positive_duration)
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
            connect_timeout: pick!(connect_timeout, parse::positive_duration)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            upstream_idle_timeout: pick!(upstream_idle_timeout, parse::positive_duration)
                .unwrap_or(DEFAULT_UPSTREAM_IDLE_TIMEOUT),
            max_upstream_routes: pick!(max_upstream_routes, parse::count)
                .unwrap_or(DEFAULT_MAX_UPSTREAM_ROUTES),
            max_clients: pick!(max_clients, parse::count).unwrap_or(DEFAULT_MAX_CLIENTS),
            max_pinned: pick!(max_pinned, parse::count).unwrap_or(DEFAULT_MAX_PINNED),
            limits: Limits {
                max_bulk_bytes: pick!(max_bulk_bytes, parse::positive_size)
                    .unwrap_or(DEFAULT_MAX_BULK_BYTES),
                max_array_len: pick!(max_array_len, parse::count).unwrap_or(DEFAULT_MAX_ARRAY_LEN),
                max_inline_bytes: pick!(max_inline_bytes, parse::positive_size)
                    .unwrap_or(DEFAULT_MAX_INLINE_BYTES),
            },
            shutdown_grace: pick!(shutdown_grace, parse::duration)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            threads: pick!(threads, parse::count).unwrap_or(DEFAULT_THREADS),
            tracking: pick!(tracking, parse::tracking).unwrap_or(DEFAULT_TRACKING),
            invalidation_heartbeat: pick!(invalidation_heartbeat, parse::positive_duration)
                .unwrap_or(DEFAULT_INVALIDATION_HEARTBEAT),
            invalidation_channel: pick!(invalidation_channel, parse::channel)
                .unwrap_or_else(|| DEFAULT_INVALIDATION_CHANNEL.to_owned()),
            bus_key_file: pick!(bus_key_file, parse::path),
            audit_rate: pick!(audit_rate, parse::fraction).unwrap_or(DEFAULT_AUDIT_RATE),
            metrics_listen: pick!(metrics_listen, parse::optional_socket_addr)
                .unwrap_or(Some(DEFAULT_METRICS_LISTEN)),
            log_format: pick!(log_format, parse::log_format).unwrap_or(DEFAULT_LOG_FORMAT),
            log_level: pick!(log_level, parse::log_level),
            slow_threshold: pick!(slow_threshold, parse::duration)
                .unwrap_or(DEFAULT_SLOW_THRESHOLD),
            slowlog_max_len: pick!(slowlog_max_len, parse::count)
                .unwrap_or(DEFAULT_SLOWLOG_MAX_LEN),
            n_plus_one_threshold: pick!(n_plus_one_threshold, parse::count)
                .unwrap_or(DEFAULT_N_PLUS_ONE_THRESHOLD),
            n_plus_one_window: pick!(n_plus_one_window, parse::positive_duration)
                .unwrap_or(DEFAULT_N_PLUS_ONE_WINDOW),
        };
        config.namespaces = namespaces::parse_all(
            file.namespace.as_deref().unwrap_or_default(),
            config.l1_max_bytes,
            &mut r.problems,
        );
        config.warm = warm::parse(file.warm.as_ref(), config.l1_max_bytes, &mut r.problems);
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: r.problems,
            })
        }
    }

    /// Reads the `--config` file (if any) then calls [`Config::from_parts`]; an unreadable
    /// file is a problem too, reported with any others.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let config = Self::load_text(flags)?;
        // The key file is read here too, so that a missing or bad one stops the start.
        if let Some(path) = &config.bus_key_file {
            if let Err(e) = bus_key::read_bus_keys(path) {
                let problems = vec![format!("--bus-key-file: {e}")];
                return Err(ConfigError { problems });
            }
        }
        Ok(config)
    }

    fn load_text(flags: &Flags) -> Result<Config, ConfigError> {
        let Some(path) = &flags.config else {
            return Self::from_parts(flags, None);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_parts(flags, Some(&text)),
            Err(e) => {
                let mut problems = vec![format!("--config: cannot read {}: {e}", path.display())];
                if let Err(more) = Self::from_parts(flags, None) {
                    problems.extend(more.problems);
                }
                Err(ConfigError { problems })
            }
        }
    }
}

#[cfg(test)]
mod tests;
