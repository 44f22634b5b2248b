//! nearcache: a caching sidecar proxy for Redis.
//!
//! ```text
//!  client ──RESP2/3──► server (accept, --max-clients, SIGTERM drain)
//!                        └─► connection task (per client: read → parse batch → dispatch → one flush;
//!                              past 32 MiB of owed replies: write them before dispatching more)
//!                              ├─ GET hit ─► cache: per-thread front ─► moka L1 ─► reply (no request built)
//!                              ├─ command::classify ─► Get/Mget miss ─► fill (coalesce) ─► upstream
//!                              ├─ Forward(invalidation) ─► evict before sending and when the reply arrives
//!                              ├─ Local (SELECT, AUTH, HELLO, INFO, CLIENT SETNAME/GETNAME/ID, SCRIPT|FUNCTION KILL,
//!                              │         RESET, QUIT, NEARCACHE)
//!                              ├─ Pin (MULTI/WATCH, blocking calls, SUBSCRIBE, MONITOR, own TRACKING) ─► relay on the
//!                              │         client's own upstream connection until clean, then back to L1
//!                              └─ Refuse (CLIENT KILL, replication protocol)
//!  upstream task per pooled connection: writer + reader + watchdog; fills run when replies arrive
//!  encoder thread: compresses large values off the reader; workers install them in L1
//!  link lost / back ─► L1 flushed (hooks wired in services)
//!  control task: HELLO 3 + CLIENT ID + SUBSCRIBE <bus>, invalidation and bus pushes, PUBLISH
//!    of this sidecar's bus messages, PING heartbeat; every pooled connection runs CLIENT
//!    TRACKING on REDIRECT <id> (not with --tracking off: then the bus alone, which still
//!    gates L1); invalidations evict, loss or a bus sequence gap flushes + bypasses
//!  audit task per sampled hit (--audit-rate): GET upstream, compare, count stale hits
//!  warm task: start-up warming (peers' hot keys over the bus, [warm] patterns by SCAN), then
//!    NEARCACHE WARM and re-warming after a link-loss flush: MGET + PTTL, bounded and paced
//!  profiler: slow upstream waits logged, N+1 GETs reported, 1 read in 8 counted in a hot-key sketch
//!  services: one Arc<Services> every task holds (config, L1, ACL marks, fills, upstream pools,
//!    stats, command table); the table and max bulk length are learned from the upstream at start
//! ```
//!
//! - [`config`]: flags, environment and TOML file into one validated [`config::Config`].
//! - [`server`]: the accept loop, the connection limit, accept backoff, the shutdown drain.
//! - [`services`]: what every connection and task may touch, and what is learned from the upstream at
//!   start (its command table, its `proto-max-bulk-len`).
//! - [`connection`]: one client connection, its per-client state and reply ordering.
//! - [`protocol`]: request parsing (multibulk and inline, with limits), reply framing.
//! - [`command`]: the command table (from the upstream's `COMMAND`) and classification.
//! - [`acl`]: which identity may be answered from L1 by which command (learned from replies).
//! - [`cache`]: L1 (moka, weighed by real memory cost), generations for the fetch/invalidate
//!   race, the per-thread front, coalescing of concurrent misses, filling L1 from fetches.
//! - [`upstream`]: pooled pipelined connections to Redis, health checks, reconnects.
//! - [`control`]: server-assisted tracking and the invalidation bus: the control connection
//!   that receives Redis's invalidations and the bus's messages and publishes this sidecar's,
//!   its heartbeat, and the epochs that keep L1 bypassed while it is lost.
//! - [`audit`]: the staleness audit: a fraction of L1 hits re-read from the upstream and
//!   compared with what was served.
//! - [`metrics`]: the counters and histograms every layer keeps.
//! - [`admin`]: the admin plane: the `# Nearcache` INFO sections, the Prometheus exposition,
//!   `/metrics`, `/healthz`, `/readyz` (`--metrics-listen`).
//! - [`probe`]: `nearcache probe`, the exec probe for Kubernetes.
//! - [`profiler`]: what the sidecar learns about the application: the slow log, N+1 reads
//!   (many GETs of one key shape where one MGET would do), the most read keys.
//! - [`warm`]: warming L1 from patterns, from peers' hottest keys, and after a link-loss
//!   flush, through one bounded, rate-limited fetch.
//! - [`error`]: error types and their `-ERR` replies.
//! - [`logging`]: the `tracing` subscriber on stderr (`--log-format`, `--log-level`, `RUST_LOG`).
//! - [`glob`]: Redis glob patterns (`KEYS`/`SCAN MATCH` semantics), for `NEARCACHE` pattern
//!   invalidation.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod admin;
pub mod audit;
pub mod cache;
pub mod command;
pub mod config;
pub mod connection;
pub mod control;
pub mod error;
pub mod glob;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod profiler;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod services;
pub mod upstream;
pub mod warm;
