//! The black-box suite, one test binary: a real redis-server and the real nearcache binary
//! (target/debug/nearcache) on free ports, one module per behaviour. Test names read
//! `<module>::<test>`: `cargo test -p proto-tests --test suite bus::` runs one module.
//!
//! Every module shares this process: tests run on its threads, so none sets an environment
//! variable or the current directory, and every server binds a free port.
//! The suites that need tools besides redis-server (Kubernetes, Prometheus, client
//! libraries, the installers of those) are the `integrations` binary.

mod acl;
mod admission;
mod audit;
mod blocking;
mod bus;
mod bus_auth;
mod cache;
mod client_commands;
mod client_reply;
mod cluster;
mod cluster_coherence;
mod cluster_control;
mod cluster_keyless;
mod cluster_keys;
mod cluster_sessions;
mod cluster_tls;
mod cluster_topology;
mod coherence;
mod command_table;
mod corpus;
mod credentials;
mod differential;
mod docs;
mod faults;
mod fill_race;
mod glob;
mod head_of_line;
mod history;
mod info;
mod lifecycle;
mod limits;
mod logs;
mod memory;
mod metrics;
mod n_plus_one;
mod namespaces;
mod nearcache_acl;
mod nearcache_command;
mod pattern_invalidation;
mod print_config;
mod probe;
mod profiler;
mod protocol_strict;
mod pubsub;
mod reload;
mod retry;
mod sentinel;
mod sentinel_freeze;
mod sentinel_switch;
mod sentinel_tls;
mod session;
mod shutdown;
mod startup;
mod tls;
mod tracking;
mod tracking_bcast;
mod transactions;
mod transparency;
mod upstream;
mod upstream_auth;
mod upstream_errors;
mod warming;
mod writes;
