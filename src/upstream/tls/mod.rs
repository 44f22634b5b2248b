//! TLS to the upstream (`rediss://`): the client configuration made from the
//! `--upstream-tls-*` options (rustls with the ring provider), the handshake of a new
//! connection within its connect deadline, and the cause of a failed handshake in words.
//!
//! The CA, certificate and key files are re-read when they change on disk (checked at each
//! new connection and each INFO or `/metrics` snapshot): new connections use the new
//! material, open ones keep theirs, and files that no longer load leave the previous
//! material in use (logged once per change). Reloads, failed reloads and failed handshakes
//! are counted ([`TlsFigures`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types, CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

mod figures;
mod verify;

pub use figures::{TlsFigures, TlsVerify};
use verify::NoVerify;

/// What the `--upstream-tls-*` options ask for.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--upstream-tls-ca`: the roots to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// `--upstream-tls-cert`: the client certificate chain (mutual TLS).
    pub cert: Option<PathBuf>,
    /// `--upstream-tls-key`: the client certificate's private key.
    pub key: Option<PathBuf>,
    /// `--upstream-tls-server-name`: the name the server's certificate must be valid for
    /// (default: the URL's host).
    pub server_name: Option<String>,
    /// `--upstream-tls-insecure`: no verification of the server's certificate.
    pub insecure: bool,
}

/// A TLS client for the upstream: its configuration, reloaded when its files change.
#[derive(Debug)]
pub struct Tls {
    options: TlsOptions,
    /// The name every server's certificate must be valid for; `None`: the host of the
    /// address each connection goes to (a discovered primary, a sentinel).
    name: Option<pki_types::ServerName<'static>>,
    loaded: Mutex<Loaded>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    handshake_failures: AtomicU64,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ClientConfig>,
    stamps: Vec<Stamp>,
    /// The earliest `notAfter` of the client certificate chain in use (Unix seconds).
    cert_not_after: Option<i64>,
}

impl Tls {
    /// Loads the configuration for an upstream whose URL names `host` (`None`: each
    /// connection's own host, as for Sentinel); fails naming the file or option at fault.
    pub fn new(options: TlsOptions, host: Option<&str>) -> Result<Tls, String> {
        let name = match options.server_name.as_deref().or(host) {
            Some(name) => Some(server_name(name)?),
            None => None,
        };
        let stamps = stamps(&options);
        let (config, cert_not_after) = client_config(&options)?;
        Ok(Tls {
            options,
            name,
            loaded: Mutex::new(Loaded {
                config: Arc::new(config),
                stamps,
                cert_not_after,
            }),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
        })
    }

    /// The figures now (the files are checked for a change first, as for a new
    /// connection).
    pub fn figures(&self) -> TlsFigures {
        let o = &self.options;
        let cert_not_after = {
            self.config();
            self.loaded.lock().cert_not_after
        };
        TlsFigures {
            verify: if o.insecure {
                TlsVerify::Insecure
            } else if o.ca.is_some() {
                TlsVerify::CaFile
            } else {
                TlsVerify::SystemRoots
            },
            client_cert: o.cert.is_some(),
            reloads: self.reloads.load(Relaxed),
            reload_failures: self.reload_failures.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            cert_expiry_secs: cert_not_after.map(figures::seconds_until),
        }
    }

    /// Runs the client handshake on `tcp`, bounded by `deadline`; errors name their cause.
    /// `address` is where `tcp` goes (`host:port`), whose host is the name to verify when
    /// no fixed one was given.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        address: &str,
        deadline: tokio::time::Instant,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = TlsConnector::from(self.config());
        let name = match &self.name {
            Some(name) => name.clone(),
            None => server_name(host_of(address)).map_err(std::io::Error::other)?,
        };
        let result = tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp)).await;
        if !matches!(result, Ok(Ok(_))) {
            self.handshake_failures.fetch_add(1, Relaxed);
        }
        match result {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(std::io::Error::other(format!("TLS: {}", Tls::cause(&name, &e)))),
            Err(_) => Err(std::io::Error::other(
                "TLS: handshake timed out (no TLS reply: a plain-text server on a TLS port, or a hung server)",
            )),
        }
    }

    /// The configuration for a new connection, first re-read if a file changed.
    fn config(&self) -> Arc<ClientConfig> {
        let now = stamps(&self.options);
        let mut loaded = self.loaded.lock();
        if loaded.stamps != now {
            loaded.stamps = now;
            match client_config(&self.options) {
                Ok((config, cert_not_after)) => {
                    tracing::info!("upstream TLS files changed: new connections use them");
                    loaded.config = Arc::new(config);
                    loaded.cert_not_after = cert_not_after;
                    self.reloads.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tracing::error!(
                        "upstream TLS files changed but do not load ({e}): the previous ones stay in use"
                    );
                    self.reload_failures.fetch_add(1, Relaxed);
                }
            }
        }
        loaded.config.clone()
    }
}

/// `name` as a TLS server name (a DNS name or an IP address).
fn server_name(name: &str) -> Result<pki_types::ServerName<'static>, String> {
    pki_types::ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{name:?} is not a valid TLS server name"))
}

/// The host of `host:port` (an IPv6 host without its brackets).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Tls {
    /// The cause of a failed handshake with the server `name`, in words.
    fn cause(name: &pki_types::ServerName<'static>, e: &std::io::Error) -> String {
        let name = || match name {
            pki_types::ServerName::DnsName(n) => n.as_ref().to_owned(),
            pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        };
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    "connection closed during the handshake (a plain-text server on a TLS port?)"
                        .to_owned()
                }
                _ => format!("handshake failed: {e}"),
            };
        };
        match tls {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => {
                    "unknown issuer: the server's certificate is not signed by a trusted CA (--upstream-tls-ca)".to_owned()
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                    "name mismatch: the server's certificate is not valid for {} (--upstream-tls-server-name)",
                    name()
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "expired: the server's certificate has expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet".to_owned()
                }
                other => format!("invalid server certificate ({other:?})"),
            },
            rustls::Error::InvalidMessage(_) => {
                "the server does not speak TLS (a plain-text server on a TLS port?)".to_owned()
            }
            rustls::Error::AlertReceived(alert) => format!(
                "the server refused the handshake ({alert:?} alert; does it require a client certificate, --upstream-tls-cert?)"
            ),
            other => format!("handshake failed: {other}"),
        }
    }
}

/// One version of a file: when it was last changed, its size and (on Unix) its inode, so
/// that a file replaced within the clock's granularity by a rename over it (as a rotated
/// Secret is) is still seen as changed; `None`: absent or unreadable.
type Stamp = Option<(SystemTime, u64, u64)>;

/// The version of each file now.
fn stamps(o: &TlsOptions) -> Vec<Stamp> {
    let stamp = |m: std::fs::Metadata| {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some((m.modified().ok()?, m.len(), inode))
    };
    [&o.ca, &o.cert, &o.key]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(stamp))
        .collect()
}

/// Builds the rustls client configuration from the files, with the earliest expiry of the
/// client certificate chain if one is given.
fn client_config(o: &TlsOptions) -> Result<(ClientConfig, Option<i64>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if o.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        builder.with_root_certificates(roots(o.ca.as_ref())?)
    };
    match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let not_after = figures::not_after(&chain);
            let key = private_key(key)?;
            let config = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--upstream-tls-cert/--upstream-tls-key: {e}"))?;
            Ok((config, not_after))
        }
        (None, None) => Ok((builder.with_no_client_auth(), None)),
        _ => Err("--upstream-tls-cert and --upstream-tls-key go together".to_owned()),
    }
}

/// The roots: the CA file's, or the system's (`rustls-native-certs`).
fn roots(ca: Option<&PathBuf>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let Some(ca) = ca else {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(
                "no system root certificates found: give the CA with --upstream-tls-ca".to_owned(),
            );
        }
        return Ok(store);
    };
    for cert in certs(ca)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(store)
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The PEM certificates of a file (at least one).
fn certs(path: &PathBuf) -> Result<Vec<pki_types::CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The PEM private key of a file.
fn private_key(path: &PathBuf) -> Result<pki_types::PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key", path.display()))
}

#[cfg(test)]
mod tests;
