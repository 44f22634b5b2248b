//! The command-line flags (clap), each also read from its `NEARCACHE_*` environment variable.

use std::fmt;
use std::path::PathBuf;

/// Command-line flags; every flag also reads `NEARCACHE_<NAME>` from the environment (clap `env`).
///
/// Values are kept as given (`None` = not given) and parsed in [`super::Config::from_parts`].
/// `Debug` is written by hand so the upstream password is never printed.
#[derive(clap::Parser, Default, Clone)]
#[command(
    name = "nearcache",
    version,
    about = "A caching sidecar proxy for Redis: L1 for GET/MGET, everything else forwarded.",
    long_about = None
)]
pub struct Flags {
    /// A subcommand instead of serving (`probe`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Client listen address [default: 127.0.0.1:6380]
    #[arg(long, env = "NEARCACHE_LISTEN", value_name = "ADDR", global = true)]
    pub listen: Option<String>,
    /// Upstream Redis URL, redis://user:password@host:port/db?param=value, all but host optional (docs/configuration.md, "The upstream URL") [default: redis://127.0.0.1:6379]
    #[arg(
        long,
        env = "NEARCACHE_UPSTREAM",
        value_name = "URL",
        hide_env_values = true
    )]
    pub upstream: Option<String>,
    /// TOML file; keys are these flag names with '_' (flags and env win over it)
    #[arg(long, env = "NEARCACHE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// L1 bound in bytes, key + value + overhead [default: 256MiB]
    #[arg(long, env = "NEARCACHE_L1_MAX_BYTES", value_name = "SIZE")]
    pub l1_max_bytes: Option<String>,
    /// Max L1 lifetime, also capped by the key's upstream PTTL; 0 disables L1 [default: 60s]
    #[arg(long, env = "NEARCACHE_L1_TTL", value_name = "DURATION")]
    pub l1_ttl: Option<String>,
    /// Values at least this big are stored zstd-compressed [default: 4096]
    #[arg(long, env = "NEARCACHE_L1_COMPRESS_MIN_BYTES", value_name = "SIZE")]
    pub l1_compress_min_bytes: Option<String>,
    /// Cache missing keys as nil [default: true]
    #[arg(long, env = "NEARCACHE_L1_CACHE_NIL", value_name = "BOOL")]
    pub l1_cache_nil: Option<String>,
    /// Keep answering L1 hits while the upstream is unreachable [default: false]
    #[arg(long, env = "NEARCACHE_SERVE_STALE_WHEN_DOWN", value_name = "BOOL")]
    pub serve_stale_when_down: Option<String>,
    /// Longest time a learned ACL permission to answer GET/MGET from L1 is trusted; 0: until an ACL change through the sidecar [default: 1s]
    #[arg(long, env = "NEARCACHE_ACL_RECHECK", value_name = "DURATION")]
    pub acl_recheck: Option<String>,
    /// Multiplexed upstream connections per (db, protocol, user) [default: 4]
    #[arg(long, env = "NEARCACHE_UPSTREAM_CONNECTIONS", value_name = "N")]
    pub upstream_connections: Option<String>,
    /// Bound on one upstream reply [default: 5s]
    #[arg(long, env = "NEARCACHE_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// Bound on one upstream connect + handshake [default: 1s]
    #[arg(long, env = "NEARCACHE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Upstream connections of a (db, protocol, user) no client has used this long are closed [default: 30s]
    #[arg(long, env = "NEARCACHE_UPSTREAM_IDLE_TIMEOUT", value_name = "DURATION")]
    pub upstream_idle_timeout: Option<String>,
    /// Most (db, protocol, user) pools at once; beyond that unused ones are closed first, then clients get an error [default: 64]
    #[arg(long, env = "NEARCACHE_MAX_UPSTREAM_ROUTES", value_name = "N")]
    pub max_upstream_routes: Option<String>,
    /// Client connections; beyond that new clients get an error and are closed [default: 10000]
    #[arg(long, env = "NEARCACHE_MAX_CLIENTS", value_name = "N")]
    pub max_clients: Option<String>,
    /// Upstream connections pinned to one client each (MULTI, WATCH, SUBSCRIBE, blocking calls), kept ones included; beyond that the command that would pin gets an error [default: 1024]
    #[arg(long, env = "NEARCACHE_MAX_PINNED", value_name = "N")]
    pub max_pinned: Option<String>,
    /// Largest bulk string accepted from a client [default: 512MiB]
    #[arg(long, env = "NEARCACHE_MAX_BULK_BYTES", value_name = "SIZE")]
    pub max_bulk_bytes: Option<String>,
    /// Largest multibulk (argument count) accepted from a client [default: 1048576]
    #[arg(long, env = "NEARCACHE_MAX_ARRAY_LEN", value_name = "N")]
    pub max_array_len: Option<String>,
    /// Longest inline command line [default: 64KiB]
    #[arg(long, env = "NEARCACHE_MAX_INLINE_BYTES", value_name = "SIZE")]
    pub max_inline_bytes: Option<String>,
    /// Drain time on SIGTERM / SIGINT [default: 5s]
    #[arg(long, env = "NEARCACHE_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Worker threads serving clients and upstream connections [default: 1]
    #[arg(long, env = "NEARCACHE_THREADS", value_name = "N")]
    pub threads: Option<String>,
    /// How writes made elsewhere reach L1: default (Redis server-assisted tracking) or off [default: default]
    #[arg(long, env = "NEARCACHE_TRACKING", value_name = "MODE")]
    pub tracking: Option<String>,
    /// The control connection is lost when a PING sent this often is not answered before the next [default: 1s]
    #[arg(
        long,
        env = "NEARCACHE_INVALIDATION_HEARTBEAT",
        value_name = "DURATION"
    )]
    pub invalidation_heartbeat: Option<String>,
    /// Pub/sub channel of the invalidation bus (patterns, flushes, and the keys written when tracking is off) [default: nearcache:invalidate]
    #[arg(long, env = "NEARCACHE_INVALIDATION_CHANNEL", value_name = "CHANNEL")]
    pub invalidation_channel: Option<String>,
    /// File holding the invalidation bus's shared key (one line; a second line is the previous key, accepted during a rotation); re-read when it changes. Without it the bus is open to anyone who may PUBLISH on its channel [default: none]
    #[arg(long, env = "NEARCACHE_BUS_KEY_FILE", value_name = "FILE")]
    pub bus_key_file: Option<String>,
    /// Fraction of L1 hits re-read from the upstream in the background and compared with what was served, 0 to 1; 0 disables [default: 0.001]
    #[arg(long, env = "NEARCACHE_AUDIT_RATE", value_name = "FRACTION")]
    pub audit_rate: Option<String>,
    /// HTTP address of /metrics, /healthz and /readyz, or `off` [default: 127.0.0.1:9380]
    #[arg(long, env = "NEARCACHE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Log format on stderr: human (plain text lines) or json (one JSON object a line) [default: human]
    #[arg(long, env = "NEARCACHE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log level: error, warn, info, debug, trace or off; when given nowhere, RUST_LOG applies if set [default: info]
    #[arg(long, env = "NEARCACHE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Upstream calls that keep a client waiting this long go to the slow log (NEARCACHE SLOWLOG); 0 logs every call [default: 10ms]
    #[arg(long, env = "NEARCACHE_SLOW_THRESHOLD", value_name = "DURATION")]
    pub slow_threshold: Option<String>,
    /// Entries kept in the slow log, newest first [default: 128]
    #[arg(long, env = "NEARCACHE_SLOWLOG_MAX_LEN", value_name = "N")]
    pub slowlog_max_len: Option<String>,
    /// Single-key GETs of one key shape (user:#:profile) by one client within --n-plus-one-window reported as an N+1 [default: 10]
    #[arg(long, env = "NEARCACHE_N_PLUS_ONE_THRESHOLD", value_name = "N")]
    pub n_plus_one_threshold: Option<String>,
    /// The window of --n-plus-one-threshold [default: 100ms]
    #[arg(long, env = "NEARCACHE_N_PLUS_ONE_WINDOW", value_name = "DURATION")]
    pub n_plus_one_window: Option<String>,
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let upstream = self.upstream.as_deref().map(super::url::redact);
        f.debug_struct("Flags")
            .field("listen", &self.listen)
            .field("upstream", &upstream)
            .field("config", &self.config)
            .field("l1_max_bytes", &self.l1_max_bytes)
            .field("l1_ttl", &self.l1_ttl)
            .field("l1_compress_min_bytes", &self.l1_compress_min_bytes)
            .field("l1_cache_nil", &self.l1_cache_nil)
            .field("serve_stale_when_down", &self.serve_stale_when_down)
            .field("acl_recheck", &self.acl_recheck)
            .field("upstream_connections", &self.upstream_connections)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("upstream_idle_timeout", &self.upstream_idle_timeout)
            .field("max_upstream_routes", &self.max_upstream_routes)
            .field("max_clients", &self.max_clients)
            .field("max_pinned", &self.max_pinned)
            .field("max_bulk_bytes", &self.max_bulk_bytes)
            .field("max_array_len", &self.max_array_len)
            .field("max_inline_bytes", &self.max_inline_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("threads", &self.threads)
            .field("tracking", &self.tracking)
            .field("invalidation_heartbeat", &self.invalidation_heartbeat)
            .field("invalidation_channel", &self.invalidation_channel)
            .field("bus_key_file", &self.bus_key_file)
            .field("audit_rate", &self.audit_rate)
            .field("metrics_listen", &self.metrics_listen)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("slow_threshold", &self.slow_threshold)
            .field("slowlog_max_len", &self.slowlog_max_len)
            .field("n_plus_one_threshold", &self.n_plus_one_threshold)
            .field("n_plus_one_window", &self.n_plus_one_window)
            .finish()
    }
}

/// Subcommands of the binary.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Checks that a sidecar answers on its listen address (--listen or NEARCACHE_LISTEN):
    /// sends PING, exits 0 on PONG (or NOAUTH: it answers, clients authenticate
    /// themselves), 1 otherwise. For Kubernetes exec probes, which cannot reach 127.0.0.1.
    Probe {
        /// How long to wait for the connection and the reply
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        timeout: String,
        /// Only check that the sidecar listens and answers (QUIT), whatever the upstream
        /// does: for a startup probe that lets the application start while Redis is down
        #[arg(long)]
        listening: bool,
    },
}
