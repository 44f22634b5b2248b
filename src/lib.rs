//! nearcache: a caching sidecar proxy for Redis.
//!
//! ```text
//!  client ──RESP2/3──► app::server (accept, --max-clients, SIGTERM drain)
//!                        └─► connection task (per client: read → parse batch → dispatch → one flush;
//!                              past 32 MiB of owed replies: write them before dispatching more)
//!                              ├─ GET hit ─► cache: L1 table (shard lock, value copied out) ─► reply (no request built)
//!                              ├─ command::classify ─► Get/Mget miss ─► fill (coalesce) ─► upstream
//!                              ├─ Forward(invalidation) ─► evict before sending and when the reply arrives
//!                              ├─ Local (SELECT, AUTH, HELLO, INFO, CLIENT SETNAME/GETNAME/ID, SCRIPT|FUNCTION KILL,
//!                              │         RESET, QUIT, NEARCACHE)
//!                              ├─ Pin (MULTI/WATCH, blocking calls, SUBSCRIBE, MONITOR, own TRACKING) ─► relay on the
//!                              │         client's own upstream connection until clean, then back to L1
//!                              └─ Refuse (CLIENT KILL, replication protocol)
//!  upstream task per pooled connection: writer + reader + watchdog; fills run when replies arrive
//!  encoder thread: compresses large values off the reader; workers install them in L1
//!  link lost / back ─► L1 flushed (hooks wired in app::build)
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
//! The modules, in layers bottom first (ARCHITECTURE.md; a module imports only from layers
//! below its own, which `tests/layers.rs` checks):
//!
//! - [`protocol`], [`glob`], [`lifecycle`]: request parsing, reply framing and decoding;
//!   Redis glob patterns; the task tracker and shutdown tokens every task runs under.
//! - [`config`], [`error`]: flags, environment and TOML into one [`config::Config`]; errors
//!   and their `-ERR` replies.
//! - [`logging`], [`metrics`]: the `tracing` subscriber; the counters and histograms every
//!   layer keeps.
//! - [`cache`]: L1 (its own segment store, bounded by the bytes it allocates), generations
//!   for the fetch/invalidate race, coalescing of concurrent misses, filling L1 from fetches.
//! - [`command`], [`acl`]: the command table and classification; which identity may be
//!   answered from L1 by which command.
//! - [`upstream`]: pooled pipelined connections to Redis, health, reconnects, the router
//!   seam, the fill gate.
//! - [`control`]: server-assisted tracking and the invalidation bus (the control connection,
//!   its heartbeat, the epochs that keep L1 bypassed while it is lost).
//! - [`profiler`], then [`warm`], [`audit`]: the slow log, N+1 reads, hot keys; warming L1;
//!   the staleness audit.
//! - [`services`]: what every connection and task may touch.
//! - [`admin`]: INFO sections, the Prometheus exposition, `/metrics`, `/healthz`, `/readyz`.
//! - [`connection`]: one client connection: client I/O, session, reply order, handlers.
//! - [`app`]: building the services from a config, the accept loop, the shutdown order,
//!   SIGHUP reload, the exec probe.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod admin;
pub mod app;
pub mod audit;
pub mod cache;
pub mod command;
pub mod config;
pub mod connection;
pub mod control;
pub mod error;
pub mod glob;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod nodes;
pub mod profiler;
pub mod protocol;
pub mod services;
pub mod upstream;
pub mod warm;
