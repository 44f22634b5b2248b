//! `nearcache-injector`: the sidecar injection webhook.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use nearcache_injector::{server, tls::ReloadingConfig, InjectorConfig};

/// Kubernetes mutating admission webhook that injects the nearcache sidecar.
#[derive(Debug, Parser)]
#[command(name = "nearcache-injector", version)]
struct Flags {
    /// Address to serve HTTPS on.
    #[arg(
        long,
        env = "NEARCACHE_INJECTOR_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    listen: SocketAddr,
    /// PEM certificate chain (reloaded when the file changes).
    #[arg(long, env = "NEARCACHE_INJECTOR_TLS_CERT", value_name = "PATH")]
    tls_cert: PathBuf,
    /// PEM private key (reloaded when the file changes).
    #[arg(long, env = "NEARCACHE_INJECTOR_TLS_KEY", value_name = "PATH")]
    tls_key: PathBuf,
    /// Optional YAML injector config (image, urlEnv, l1MaxBytes, ...).
    #[arg(long, env = "NEARCACHE_INJECTOR_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let flags = Flags::parse();
    match run(flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nearcache-injector: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(flags: Flags) -> Result<(), String> {
    let config = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            InjectorConfig::from_yaml(&text)
                .map_err(|e| format!("--config {}: {e}", path.display()))?
        }
        None => InjectorConfig::default(),
    };
    let tls = ReloadingConfig::new(flags.tls_cert, flags.tls_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(flags.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", flags.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Tests and operators read this line to find the port.
        println!("listening on https://{addr}");
        tokio::select! {
            r = server::serve(listener, Arc::new(tls), Arc::new(config)) => r.map_err(|e| e.to_string()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
