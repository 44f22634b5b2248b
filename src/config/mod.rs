//! Configuration: flags (already merged with `NEARCACHE_*` env by clap) over a TOML file over
//! defaults, resolved into one validated [`Config`]; every problem is reported at once.
//!
//! Values stay text until [`Config::from_parts`], so flags, env and file share one parser
//! (the private `parse` module), and every problem names the option as the flag is spelled
//! (`--l1-ttl: invalid duration "abc" ...`), whichever source the value came from.

pub mod bus_key;
mod flags;
pub mod grammar;
pub mod namespace_tables;
#[macro_use]
mod table;
mod options;
mod parse;
mod print;
mod problems;
pub mod secret_file;
pub mod url;
mod warm;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
pub use tracing::level_filters::LevelFilter;

pub use crate::protocol::Limits;
pub use flags::Command;
pub use namespace_tables::{NamespaceConfig, DEFAULT_NAMESPACE, MAX_NAMESPACES};
pub use options::{spec, Config, Flags, OPTIONS};
pub use table::{DefaultText, OptionSpec};
pub use warm::WarmConfig;

/// A DURATION as the options take it (`500ms`, `60s`, a bare integer is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse::duration(s)
}

/// Default `--metrics-listen` as a value (the injector's metrics port); the options table
/// ([`spec::metrics_listen`]) declares it, a test checks they agree.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9380);
/// Default `--listen` as a value (the injector's client port); declared in
/// [`spec::listen`], a test checks they agree.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6380);

/// How L1 learns of writes made elsewhere (`--tracking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingMode {
    /// Redis server-assisted tracking: every upstream connection that fills L1 redirects
    /// its invalidations to the sidecar's control connection.
    Default,
    /// No tracking: only writes through this sidecar and `--l1-ttl` bound staleness.
    Off,
    /// Broadcast tracking: the control connection alone runs `CLIENT TRACKING on BCAST`
    /// for `--tracking-prefixes` and hears of every write under them; Redis keeps no
    /// per-key state, and keys outside every prefix are not cached.
    Bcast,
}
/// The log level when neither `--log-level` nor `RUST_LOG` is set: start-up, outages and
/// recoveries, and everything worse (shown as the default of [`spec::log_level`]).
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
    /// `rediss://`: every upstream connection runs TLS.
    pub tls: bool,
    /// `redis+sentinel://`: the primary is the one these sentinels name (`host` and `port`
    /// are then the first sentinel's).
    pub sentinel: Option<Sentinels>,
    /// `redis+cluster://`: a Redis Cluster found through these seeds (`host` and `port` are
    /// then the first seed's; `db` is 0).
    pub cluster: Option<Seeds>,
}

/// The seed nodes of a `redis+cluster://` upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds {
    /// `host:port` of each seed, in the URL's order (IPv6 in brackets), tried in that order.
    pub addresses: Vec<String>,
}

/// The sentinels of a `redis+sentinel://` upstream and the primary's name among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// `host:port` of each sentinel, in the URL's order (IPv6 in brackets).
    pub addresses: Vec<String>,
    /// The name the sentinels monitor the primary under (`mymaster`).
    pub master: String,
}

impl UpstreamAddr {
    /// `redis`, `rediss`, `redis+sentinel`, `rediss+sentinel`, `redis+cluster` or
    /// `rediss+cluster`.
    pub fn scheme(&self) -> &'static str {
        match (self.tls, self.sentinel.is_some(), self.cluster.is_some()) {
            (false, true, _) => "redis+sentinel",
            (true, true, _) => "rediss+sentinel",
            (false, false, true) => "redis+cluster",
            (true, false, true) => "rediss+cluster",
            (false, false, false) => "redis",
            (true, false, false) => "rediss",
        }
    }

    /// Where the URL points, without credentials: `host:port`, for Sentinel
    /// `sentinel1:port,sentinel2:port/master`, for Cluster `seed1:port,seed2:port`.
    pub fn location(&self) -> String {
        match (&self.sentinel, &self.cluster) {
            (Some(s), _) => format!("{}/{}", s.addresses.join(","), s.master),
            (None, Some(c)) => c.addresses.join(","),
            (None, None) => self.host_port(),
        }
    }

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
        write!(f, "{}://{}/{}", self.scheme(), self.location(), self.db)
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
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Every configuration problem found, one line each when displayed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// One message per problem, each naming the option (`--l1-ttl: invalid duration "abc" ...`).
    pub problems: Vec<String>,
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

/// Collects problems, and the text each option was picked from, while picking each option
/// (flag, else file, else default) and parsing it.
struct Resolver {
    file_name: String,
    problems: Vec<String>,
    /// The text each option took, in declaration order (unset ones left out).
    picked: Vec<(OptionSpec, String)>,
}

impl Resolver {
    /// The parsed value of option `spec`: its flag (or env) text, else its file text, else
    /// its declared default; `None` when unset or invalid (then the problem is recorded).
    fn pick<T>(
        &mut self,
        spec: &OptionSpec,
        given: &Option<String>,
        in_file: Option<Scalar>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, origin) = match (given, in_file, spec.default) {
            (Some(text), _, _) => (text.clone(), String::new()),
            (None, Some(Scalar(text)), _) => (text, format!(" (in {})", self.file_name)),
            (None, None, DefaultText::Value(text)) => (text.to_owned(), " (the default)".into()),
            (None, None, DefaultText::Unset(_)) => return None,
        };
        let parsed = parse(&text)
            .map_err(|e| {
                let flag = spec.flag();
                self.problems.push(format!("{flag}: {e}{origin}"));
            })
            .ok();
        self.picked.push((*spec, text));
        parsed
    }

    /// The declared default of `spec`, parsed: what stands in for an invalid value while
    /// the other options are checked.
    fn default<T>(&self, spec: &OptionSpec, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        parse(spec.default.shown()).expect("every declared default parses (config tests)")
    }
}

/// What `--print-config` shows: the text each option took and the file's tables.
struct Printable {
    picked: Vec<(OptionSpec, String)>,
    namespace: Option<Vec<toml::Value>>,
    warm: Option<toml::Value>,
}

impl Config {
    /// Pure: flags (already merged with env by clap) over file text over defaults.
    /// Reports every problem at once.
    pub fn from_parts(flags: &Flags, file_text: Option<&str>) -> Result<Config, ConfigError> {
        Self::resolve(flags, file_text).map(|(config, _)| config)
    }

    fn resolve(flags: &Flags, file_text: Option<&str>) -> Result<(Config, Printable), ConfigError> {
        let file_name = match &flags.config {
            Some(path) => path.display().to_string(),
            None => "the config file".to_owned(),
        };
        let mut r = Resolver {
            file_name,
            problems: Vec::new(),
            picked: Vec::new(),
        };
        let mut file = match file_text.map(toml::from_str::<options::FileConfig>) {
            None => options::FileConfig::default(),
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
                options::FileConfig::default()
            }
        };
        let mut config = options::pick_all(flags, &mut file, &mut r);
        config.limits = Limits {
            max_bulk_bytes: config.max_bulk_bytes,
            max_array_len: config.max_array_len,
            max_inline_bytes: config.max_inline_bytes,
        };
        config.namespaces = namespace_tables::parse_all(
            file.namespace.as_deref().unwrap_or_default(),
            config.l1_max_bytes,
            &mut r.problems,
        );
        config.warm = warm::parse(file.warm.as_ref(), config.l1_max_bytes, &mut r.problems);
        problems::tls_problems(&config, &mut r.problems);
        problems::sentinel_problems(&config, &mut r.problems);
        problems::credential_problems(&config, &mut r.problems);
        problems::tracking_problems(&config, &mut r.problems);
        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        let printable = Printable {
            picked: r.picked,
            namespace: file.namespace,
            warm: file.warm,
        };
        Ok((config, printable))
    }

    /// `--print-config`: [`Config::load`], then the effective configuration as a TOML file
    /// that `--config` accepts back; secrets are redacted (see [`OptionSpec::redact`]).
    pub fn print(flags: &Flags) -> Result<String, ConfigError> {
        let (config, printable) = Self::load_resolved(flags)?;
        Self::check_files(&config)?;
        Ok(print::render(&printable))
    }

    /// Reads the `--config` file (if any) then calls [`Config::from_parts`]; an unreadable
    /// file is a problem too, reported with any others.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let (config, _) = Self::load_resolved(flags)?;
        Self::check_files(&config)?;
        Ok(config)
    }

    /// The key file and the secret files are read at start too, so that a missing or bad
    /// one stops the start (the problem names the path, never the content).
    fn check_files(config: &Config) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Some(path) = &config.bus_key_file {
            if let Err(e) = bus_key::read_bus_keys(path) {
                problems.push(format!("--bus-key-file: {e}"));
            }
        }
        let secrets = [
            ("--upstream-username-file", &config.upstream_username_file),
            ("--upstream-password-file", &config.upstream_password_file),
            ("--sentinel-username-file", &config.sentinel_username_file),
            ("--sentinel-password-file", &config.sentinel_password_file),
        ];
        for (flag, path) in secrets {
            if let Some(Err(e)) = path.as_deref().map(secret_file::read_secret) {
                problems.push(format!("{flag}: {e}"));
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ConfigError { problems }),
        }
    }

    fn load_resolved(flags: &Flags) -> Result<(Config, Printable), ConfigError> {
        let Some(path) = &flags.config else {
            return Self::resolve(flags, None);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::resolve(flags, Some(&text)),
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
mod table_tests;
#[cfg(test)]
mod tests;
