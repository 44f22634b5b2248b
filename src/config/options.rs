//! Every option of the sidecar, declared once: its `Config` type and parser, environment
//! variable, value placeholder, default and help. The flag is the name with `-`
//! (`--l1-ttl`), the TOML key the name itself (`l1_ttl`); see [`super::table`] for what is
//! derived from a row.
//!
//! `reload live` marks the options a SIGHUP applies without a restart (`crate::app::reload`).
//!
//! Row order is the order of `--help`, of problems, of the TOML file's expected keys and of
//! `--print-config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::flags::Command;
use super::table::OptionSpec;
use super::{
    namespace_tables::NamespaceConfig, parse, url, LevelFilter, Limits, LogFormat, Resolver,
    Scalar, TrackingMode, UpstreamAddr, WarmConfig,
};

options! {
    listen: SocketAddr = parse::socket_addr,
        "NEARCACHE_LISTEN", "ADDR", default "127.0.0.1:6380",
        "Client listen address",
        clap(global = true);
    upstream: UpstreamAddr = url::upstream,
        "NEARCACHE_UPSTREAM", "URL", default "redis://127.0.0.1:6379",
        "Upstream Redis URL, redis://user:password@host:port/db?param=value, all but host optional (docs/configuration.md, \"The upstream URL\")",
        secret crate::config::url::printable;
    // Paths are not secrets: the files' contents never pass through the options.
    upstream_username_file: PathBuf = parse::path,
        "NEARCACHE_UPSTREAM_USERNAME_FILE", "FILE", unset "none",
        "File holding the upstream ACL user name, instead of the URL's (one trailing newline is dropped); re-read when it changes, for new connections";
    upstream_password_file: PathBuf = parse::path,
        "NEARCACHE_UPSTREAM_PASSWORD_FILE", "FILE", unset "none",
        "File holding the upstream password, instead of the URL's (one trailing newline is dropped); re-read when it changes: new connections authenticate with the new one, open ones stay";
    sentinel_username: String = parse::user_name,
        "NEARCACHE_SENTINEL_USERNAME", "NAME", unset "none",
        "redis+sentinel:// only: the ACL user the sidecar authenticates to the sentinels as (with --sentinel-password)";
    sentinel_password: String = parse::secret,
        "NEARCACHE_SENTINEL_PASSWORD", "SECRET", unset "none",
        "redis+sentinel:// only: the password the sidecar authenticates to the sentinels with (separate from the data credentials)",
        secret crate::config::parse::redacted;
    sentinel_username_file: PathBuf = parse::path,
        "NEARCACHE_SENTINEL_USERNAME_FILE", "FILE", unset "none",
        "redis+sentinel:// only: file holding the sentinels' ACL user name, instead of --sentinel-username; re-read when it changes";
    sentinel_password_file: PathBuf = parse::path,
        "NEARCACHE_SENTINEL_PASSWORD_FILE", "FILE", unset "none",
        "redis+sentinel:// only: file holding the sentinels' password, instead of --sentinel-password; re-read when it changes";
    // Paths are not secrets: the files' contents never pass through the options.
    upstream_tls_ca: PathBuf = parse::path,
        "NEARCACHE_UPSTREAM_TLS_CA", "FILE", unset "none",
        "rediss:// only: PEM file of the CA certificates that verify the upstream's certificate; without it the system's roots; re-read when it changes";
    upstream_tls_cert: PathBuf = parse::path,
        "NEARCACHE_UPSTREAM_TLS_CERT", "FILE", unset "none",
        "rediss:// only: PEM client certificate chain for mutual TLS (with --upstream-tls-key); re-read when it changes";
    upstream_tls_key: PathBuf = parse::path,
        "NEARCACHE_UPSTREAM_TLS_KEY", "FILE", unset "none",
        "rediss:// only: PEM private key of --upstream-tls-cert; re-read when it changes";
    upstream_tls_server_name: String = parse::server_name,
        "NEARCACHE_UPSTREAM_TLS_SERVER_NAME", "NAME", unset "none",
        "rediss:// only: the name the upstream's certificate must be valid for (and the SNI) instead of the URL's host, e.g. when the URL names an IP address";
    upstream_tls_insecure: bool = parse::boolean,
        "NEARCACHE_UPSTREAM_TLS_INSECURE", "BOOL", default "false",
        "rediss:// only: accept any upstream certificate, unverified (a warning is logged at start); for tests only. The bare flag means true",
        clap(num_args = 0..=1, default_missing_value = "true");
    sentinel_recheck: Duration = parse::positive_duration,
        "NEARCACHE_SENTINEL_RECHECK", "DURATION", default "1s",
        "redis+sentinel:// only: how often the sentinels are asked again for the primary (and its role checked) besides +switch-master";
    l1_max_bytes: u64 = parse::size,
        "NEARCACHE_L1_MAX_BYTES", "SIZE", default "256MiB",
        "L1 bound in bytes, key + value + overhead";
    l1_ttl: Duration = parse::duration,
        "NEARCACHE_L1_TTL", "DURATION", default "60s",
        "Max L1 lifetime, also capped by the key's upstream PTTL; 0 disables L1";
    l1_compress_min_bytes: usize = parse::positive_size,
        "NEARCACHE_L1_COMPRESS_MIN_BYTES", "SIZE", default "4096",
        "Values at least this big are stored zstd-compressed once L1 is three quarters full";
    l1_cache_nil: bool = parse::boolean,
        "NEARCACHE_L1_CACHE_NIL", "BOOL", default "true",
        "Cache missing keys as nil";
    l1_admit_second_miss: bool = parse::boolean,
        "NEARCACHE_L1_ADMIT_SECOND_MISS", "BOOL", default "false",
        "Once L1 is three quarters full, fill it only on a key's second miss (a first miss is the plain GET, without a PTTL)";
    serve_stale_when_down: bool = parse::boolean,
        "NEARCACHE_SERVE_STALE_WHEN_DOWN", "BOOL", default "false",
        "Keep answering L1 hits while the upstream is unreachable";
    acl_recheck: Duration = parse::duration,
        "NEARCACHE_ACL_RECHECK", "DURATION", default "1s",
        "Longest time a learned ACL permission to answer GET/MGET from L1 is trusted; 0: until an ACL change through the sidecar",
        reload live;
    upstream_connections: usize = parse::count,
        "NEARCACHE_UPSTREAM_CONNECTIONS", "N", default "4",
        "Multiplexed upstream connections per (db, protocol, user)";
    upstream_timeout: Duration = parse::positive_duration,
        "NEARCACHE_UPSTREAM_TIMEOUT", "DURATION", default "5s",
        "Bound on one upstream reply";
    connect_timeout: Duration = parse::positive_duration,
        "NEARCACHE_CONNECT_TIMEOUT", "DURATION", default "1s",
        "Bound on one upstream connect + handshake";
    upstream_idle_timeout: Duration = parse::positive_duration,
        "NEARCACHE_UPSTREAM_IDLE_TIMEOUT", "DURATION", default "30s",
        "Upstream connections of a (db, protocol, user) no client has used this long are closed";
    max_upstream_routes: usize = parse::count,
        "NEARCACHE_MAX_UPSTREAM_ROUTES", "N", default "64",
        "Most (db, protocol, user) pools at once; beyond that unused ones are closed first, then clients get an error";
    max_clients: usize = parse::count,
        "NEARCACHE_MAX_CLIENTS", "N", default "10000",
        "Client connections; beyond that new clients get an error and are closed";
    max_pinned: usize = parse::count,
        "NEARCACHE_MAX_PINNED", "N", default "1024",
        "Upstream connections pinned to one client each (MULTI, WATCH, SUBSCRIBE, blocking calls), kept ones included; beyond that the command that would pin gets an error";
    max_bulk_bytes: usize = parse::positive_size,
        "NEARCACHE_MAX_BULK_BYTES", "SIZE", default "512MiB",
        "Largest bulk string accepted from a client";
    max_array_len: usize = parse::count,
        "NEARCACHE_MAX_ARRAY_LEN", "N", default "1048576",
        "Largest multibulk (argument count) accepted from a client";
    max_inline_bytes: usize = parse::positive_size,
        "NEARCACHE_MAX_INLINE_BYTES", "SIZE", default "64KiB",
        "Longest inline command line";
    shutdown_grace: Duration = parse::duration,
        "NEARCACHE_SHUTDOWN_GRACE", "DURATION", default "5s",
        "Drain time on SIGTERM / SIGINT";
    // One thread: a sidecar shares its host with the application; one worker avoids
    // cross-core traffic on the hit path and serves over a million pipelined hits a second.
    threads: usize = parse::count,
        "NEARCACHE_THREADS", "N", default "1",
        "Worker threads serving clients and upstream connections";
    tracking: TrackingMode = parse::tracking,
        "NEARCACHE_TRACKING", "MODE", default "default",
        "How writes made elsewhere reach L1: default (Redis server-assisted tracking of the keys read), bcast (broadcast tracking of --tracking-prefixes, no per-key state in Redis) or off";
    tracking_prefixes: Vec<String> = parse::tracking_prefixes,
        "NEARCACHE_TRACKING_PREFIXES", "PREFIXES", unset "none",
        "--tracking bcast only: key prefixes, comma-separated, whose writes Redis broadcasts to every sidecar; keys outside them are not cached; none: every key";
    invalidation_heartbeat: Duration = parse::positive_duration,
        "NEARCACHE_INVALIDATION_HEARTBEAT", "DURATION", default "1s",
        "The control connection is lost when a PING sent this often is not answered before the next";
    invalidation_channel: String = parse::channel,
        "NEARCACHE_INVALIDATION_CHANNEL", "CHANNEL", default "nearcache:invalidate",
        "Pub/sub channel of the invalidation bus (patterns, flushes, and the keys written when tracking is off)";
    // A path is not a secret: the key's contents never pass through the options.
    bus_key_file: PathBuf = parse::path,
        "NEARCACHE_BUS_KEY_FILE", "FILE", unset "none",
        "File holding the invalidation bus's shared key (one line; a second line is the previous key, accepted during a rotation); re-read when it changes. Without it the bus is open to anyone who may PUBLISH on its channel";
    audit_rate: f64 = parse::fraction,
        "NEARCACHE_AUDIT_RATE", "FRACTION", default "0.001",
        "Fraction of L1 hits re-read from the upstream in the background and compared with what was served, 0 to 1; 0 disables",
        reload live;
    metrics_listen: Option<SocketAddr> = parse::optional_socket_addr,
        "NEARCACHE_METRICS_LISTEN", "ADDR", default "127.0.0.1:9380",
        "HTTP address of /metrics, /healthz and /readyz, or `off`";
    log_format: LogFormat = parse::log_format,
        "NEARCACHE_LOG_FORMAT", "FORMAT", default "human",
        "Log format on stderr: human (plain text lines) or json (one JSON object a line)";
    // Unset: then RUST_LOG applies if set, else `DEFAULT_LOG_LEVEL` (see `crate::logging`).
    log_level: LevelFilter = parse::log_level,
        "NEARCACHE_LOG_LEVEL", "LEVEL", unset "info",
        "Log level: error, warn, info, debug, trace or off; when given nowhere, RUST_LOG applies if set",
        reload live;
    slow_threshold: Duration = parse::duration,
        "NEARCACHE_SLOW_THRESHOLD", "DURATION", default "10ms",
        "Upstream calls that keep a client waiting this long go to the slow log (NEARCACHE SLOWLOG); 0 logs every call",
        reload live;
    slowlog_max_len: usize = parse::count,
        "NEARCACHE_SLOWLOG_MAX_LEN", "N", default "128",
        "Entries kept in the slow log, newest first",
        reload live;
    n_plus_one_threshold: usize = parse::count,
        "NEARCACHE_N_PLUS_ONE_THRESHOLD", "N", default "10",
        "Single-key GETs of one key shape (user:#:profile) by one client within --n-plus-one-window reported as an N+1",
        reload live;
    n_plus_one_window: Duration = parse::positive_duration,
        "NEARCACHE_N_PLUS_ONE_WINDOW", "DURATION", default "100ms",
        "The window of --n-plus-one-threshold",
        reload live;
}
