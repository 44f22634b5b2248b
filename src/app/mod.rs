//! The app: builds the services from a configuration (`build`), then runs them until a
//! shutdown signal: the client listener (`server`), the admin endpoint, SIGHUP reloads
//! (`reload`), every task under one lifecycle ([`crate::lifecycle`]). `probe` is the exec
//! probe the same binary answers.

mod build;
pub mod probe;
pub mod reload;
mod server;
mod signals;

use std::io::Write;
use std::time::Duration;

use crate::admin::http;
use crate::config::{Config, ConfigError, Flags};
use crate::lifecycle;
pub use build::{credentials, sentinel_credentials, services};
pub use server::run as serve;
use signals::Signals;

/// How long the tasks left after the clients drained (upstream and control connections,
/// timers) get to drop.
const END_WAIT: Duration = Duration::from_secs(1);
/// The log target of the process's start and stop lines.
const PROCESS: &str = "nearcache";

/// Runs the sidecar for `config` (`flags` are read again on SIGHUP) until SIGTERM or SIGINT:
/// listens, builds the services, serves clients and the admin endpoint, then stops in order
/// (see [`crate::lifecycle`]).
pub async fn run(config: Config, flags: Flags) -> anyhow::Result<()> {
    let tls = build::tls(&config)?;
    let credentials = build::credentials(&config).map_err(|problem| ConfigError {
        problems: vec![problem],
    })?;
    let sentinel_credentials =
        build::sentinel_credentials(&config).map_err(|problem| ConfigError {
            problems: vec![problem],
        })?;
    let listener = listen(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr()?;
    refuse_itself(&config, local).await?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            listen(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--metrics-listen): {e}"))?,
        ),
        None => None,
    };
    // The first line is the listening one (wrappers read it for the port); the second says
    // where the HTTP endpoint is, or that it is off.
    let metrics_line = match &metrics {
        Some(m) => format!("nearcache metrics on {}", m.local_addr()?),
        None => "nearcache metrics off".to_string(),
    };
    // Handled from before the listening line: a SIGHUP never kills a started sidecar.
    let signals = Signals::install();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "nearcache listening on {local}\n{metrics_line}")?;
    stdout.flush()?;
    drop(stdout);
    // `UpstreamAddr`'s Display has no user info: the password never shows. The process's
    // own lines keep the binary's target (`nearcache`), which log filters and queries name.
    tracing::info!(
        target: PROCESS,
        version = %env!("CARGO_PKG_VERSION"),
        listen = %local,
        upstream = %config.upstream,
        "started"
    );
    let shared = build::services(config, tls, credentials, sentinel_credentials);
    lifecycle::spawn(build::flush_on_switch(shared.clone()));
    if let Some(sentinel) = &shared.sentinel {
        lifecycle::spawn(sentinel.clone().run());
    }
    if let Some(nodes) = &shared.cluster {
        // The first view before clients are served (the slots are unowned until then, and
        // requests go to the first seed).
        let found = nodes.refresh(crate::upstream::cluster::Reason::Start).await;
        tracing::info!(nodes = nodes.nodes().len(), "cluster topology: {found:?}");
        lifecycle::spawn(nodes.clone().run());
    }
    let mut reloader = reload::Reloader::new(flags, shared.clone());
    lifecycle::spawn(async move {
        signals::wait(signals, &mut reloader).await;
        tracing::info!(target: PROCESS, "shutting down");
        lifecycle::stop();
    });
    if let Some(m) = metrics {
        lifecycle::spawn(http::serve(m, shared.clone()));
    }
    server::run(shared, listener).await;
    lifecycle::end(END_WAIT).await;
    Ok(())
}

/// `--upstream` resolves to the sidecar's own listener: it would connect to itself.
#[derive(Debug, thiserror::Error)]
#[error("--upstream: {upstream} ({resolved}) is this sidecar's own listener ({listener}): it would connect to itself; point --upstream at Redis")]
pub struct Itself {
    upstream: String,
    resolved: std::net::SocketAddr,
    listener: std::net::SocketAddr,
}

/// Fails when the upstream address resolves to the listener's own socket. A name that does
/// not resolve within the connect timeout is left to the run-time check (a client arriving
/// from one of the sidecar's own upstream sockets).
async fn refuse_itself(config: &Config, listener: std::net::SocketAddr) -> Result<(), Itself> {
    if config.upstream.sentinel.is_some() || config.upstream.cluster.is_some() {
        // The primary (the nodes) is not known yet: the run-time check covers it.
        return Ok(());
    }
    let address = config.upstream.host_port();
    let resolved = tokio::time::timeout(config.connect_timeout, tokio::net::lookup_host(&address));
    let Ok(Ok(addrs)) = resolved.await else {
        return Ok(());
    };
    for resolved in addrs {
        if crate::upstream::outbound::reaches_listener(resolved, listener) {
            return Err(Itself {
                upstream: config.upstream.to_string(),
                resolved,
                listener,
            });
        }
    }
    Ok(())
}

/// Accept backlog: connection bursts of thousands of clients must not overflow it.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
