//! nearcache: a caching sidecar proxy for Redis.
//!
//! ```text
//!  client ──RESP2/3──► server (accept, --max-clients, SIGTERM drain)
//!                        └─► connection task (per client: read → parse batch → dispatch → one flush)
//!                              ├─ GET hit ─► cache: per-thread front ─► moka L1 ─► reply (no request built)
//!                              ├─ command::classify ─► Get/Mget miss ─► fill (coalesce) ─► upstream
//!                              ├─ Forward(invalidation) ─► evict before sending and when the reply arrives
//!                              ├─ Local (SELECT, AUTH, HELLO, INFO, CLIENT SETNAME, RESET, QUIT)
//!                              └─ Refuse (needs a pinned connection: MULTI, SUBSCRIBE, blocking pops)
//!  upstream task per pooled connection: writer + reader + watchdog; fills run when replies arrive
//!  encoder thread: compresses large values off the reader; workers install them in L1
//!  link lost / back ─► L1 flushed
//! ```
//!
//! - [`config`]: flags, environment and TOML file into one validated [`config::Config`].
//! - [`server`]: the accept loop, the shared state, the command-table load, shutdown.
//! - [`connection`]: one client connection, its per-client state and reply ordering.
//! - [`protocol`]: request parsing (multibulk and inline, with limits), reply framing.
//! - [`command`]: the command table (from the upstream's `COMMAND`) and classification.
//! - [`acl`]: which identity may be answered from L1 by which command (learned from replies).
//! - [`cache`]: L1 (moka, weighed by real memory cost), generations for the fetch/invalidate
//!   race, the per-thread front, coalescing of concurrent misses, filling L1 from fetches.
//! - [`upstream`]: pooled pipelined connections to Redis, health checks, reconnects.
//! - [`info`]: the `# Nearcache` INFO section.
//! - [`metrics`]: the counters every layer updates.
//! - [`error`]: error types and their `-ERR` replies.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod cache;
pub mod command;
pub mod config;
pub mod connection;
pub mod error;
pub mod info;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod upstream;
