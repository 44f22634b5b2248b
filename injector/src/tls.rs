//! The serving certificate, reloaded when the PEM files change.
//!
//! Each handshake stats both files (cheap); when their modification time or size changed,
//! the pair is loaded again. A pair that does not load keeps the previous one and is
//! logged once; it is retried when the files change again.

use parking_lot::Mutex;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::ServerConfig;

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Loads a certificate chain and private key into a rustls server config (HTTP/1.1 ALPN).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        fs::File::open(cert).map_err(|e| format!("{}: {e}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(
        fs::File::open(key).map_err(|e| format!("{}: {e}", key.display()))?,
    ))
    .map_err(|e| format!("{}: {e}", key.display()))?
    .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate and key do not form a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

struct State {
    stamps: (Stamp, Stamp),
    config: Arc<ServerConfig>,
}

/// The current server config plus the paths it came from.
pub struct ReloadingConfig {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

impl ReloadingConfig {
    /// Loads the pair now; failing here is a startup error.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self, String> {
        let stamps = (stamp(&cert), stamp(&key));
        let config = load(&cert, &key)?;
        Ok(ReloadingConfig {
            cert,
            key,
            state: Mutex::new(State { stamps, config }),
        })
    }

    /// The config for the next handshake, reloading first if the files changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let mut state = self.state.lock();
        if stamps != state.stamps {
            state.stamps = stamps;
            match load(&self.cert, &self.key) {
                Ok(config) => {
                    state.config = config;
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "the new TLS certificate does not load; still serving the previous one"
                ),
            }
        }
        state.config.clone()
    }
}
