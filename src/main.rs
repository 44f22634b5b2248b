//! `nearcache`: flags -> config -> runtime -> server; exit codes 0 (clean stop), 1 (cannot
//! start), 64 (invalid configuration). `--print-config` prints the configuration and exits.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use nearcache::config::{Command, Config, Flags};
use nearcache::services::Services;
use nearcache::{http, server};

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if flags.print_config {
        return match Config::print(&flags) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nearcache: invalid configuration:\n{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nearcache: invalid configuration:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::Probe { timeout, listening }) = &flags.command {
        let check = match listening {
            true => nearcache::probe::Check::Listening,
            false => nearcache::probe::Check::Serving,
        };
        return probe(config.listen, timeout, check);
    }
    // From here on everything goes through `tracing` (stderr, --log-format, --log-level).
    if let Err(e) = nearcache::logging::init(&config) {
        eprintln!("nearcache: invalid configuration:\n{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Itself>() => {
            eprintln!("nearcache: invalid configuration:\n{e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, flags: Flags) -> anyhow::Result<()> {
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
    // `UpstreamAddr`'s Display has no user info: the password never shows.
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        listen = %local,
        upstream = %config.upstream,
        "started"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shared = Services::new(config);
    let mut reloader = nearcache::reload::Reloader::new(flags, shared.clone());
    tokio::spawn(async move {
        wait_for_signal(signals, &mut reloader).await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    if let Some(m) = metrics {
        tokio::spawn(http::serve(m, shared.clone(), stopped.clone()));
    }
    server::run(shared, listener, stopped).await;
    Ok(())
}

/// `--upstream` resolves to the sidecar's own listener: it would connect to itself.
#[derive(Debug, thiserror::Error)]
#[error("--upstream: {upstream} ({resolved}) is this sidecar's own listener ({listener}): it would connect to itself; point --upstream at Redis")]
struct Itself {
    upstream: String,
    resolved: std::net::SocketAddr,
    listener: std::net::SocketAddr,
}

/// Fails when the upstream address resolves to the listener's own socket. A name that does
/// not resolve within the connect timeout is left to the run-time check (a client arriving
/// from one of the sidecar's own upstream sockets).
async fn refuse_itself(config: &Config, listener: std::net::SocketAddr) -> Result<(), Itself> {
    let address = config.upstream.host_port();
    let resolved = tokio::time::timeout(config.connect_timeout, tokio::net::lookup_host(&address));
    let Ok(Ok(addrs)) = resolved.await else {
        return Ok(());
    };
    for resolved in addrs {
        if nearcache::upstream::outbound::reaches_listener(resolved, listener) {
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

/// SIGTERM, SIGINT and SIGHUP, listened to from start-up on.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }
}

/// Returns on SIGTERM or SIGINT; reloads the configuration on each SIGHUP.
async fn wait_for_signal(signals: Signals, reloader: &mut nearcache::reload::Reloader) {
    let Signals {
        term: Some(mut term),
        int: Some(mut int),
        hup,
    } = signals
    else {
        return std::future::pending().await;
    };
    let mut hup = hup;
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hangup => reloader.reload(),
        }
    }
}

/// `nearcache probe`: 0 when the sidecar on `listen` answers `check` within `timeout`.
fn probe(listen: std::net::SocketAddr, timeout: &str, check: nearcache::probe::Check) -> ExitCode {
    let timeout = match nearcache::config::parse_duration(timeout) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => {
            eprintln!("nearcache probe: --timeout must be greater than 0");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("nearcache probe: --timeout: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A listener on every interface is probed on loopback.
    let addr = match listen.ip().is_unspecified() {
        true => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port()),
        false => listen,
    };
    match nearcache::probe::probe(addr, timeout, check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("nearcache probe: {why}");
            ExitCode::FAILURE
        }
    }
}
