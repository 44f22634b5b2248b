//! nearcache: a caching sidecar proxy for Redis.
//!
//! ```text
//!  client ──RESP2/3──► server (accept, limits, shutdown)
//!                        └─► connection (per client: read → parse batch → dispatch → one flush)
//!                              ├─ command::classify ─► Get/Mget ─► cache (L1) ── hit ──► reply
//!                              │                                   └─ miss ─► fill (coalesce) ─► upstream
//!                              ├─ Forward(invalidation) ─► cache eviction, before and after ─► upstream
//!                              └─ Local (SELECT, AUTH, HELLO, INFO, ...) ─► session state
//!  upstream: per-route pools (db, protocol, user) of pipelined connections; L1 fills run on
//!  the upstream reader task when replies arrive; link loss flushes L1.
//! ```

#![forbid(unsafe_code)]

pub mod cache;
pub mod command;
pub mod config;
pub mod connection;
pub mod error;
pub mod fill;
pub mod info;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod upstream;
