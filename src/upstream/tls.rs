//! TLS to the upstream (`rediss://`): the client configuration made from the
//! `--upstream-tls-*` options (rustls with the ring provider), the handshake of a new
//! connection within its connect deadline, and the cause of a failed handshake in words.
//!
//! The CA, certificate and key files are re-read when they change on disk (checked at each
//! new connection): new connections use the new material, open ones keep theirs, and files
//! that no longer load leave the previous material in use (logged once per change).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types, CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

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
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ClientConfig>,
    stamps: Vec<Option<SystemTime>>,
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
        let config = Arc::new(client_config(&options)?);
        Ok(Tls {
            options,
            name,
            loaded: Mutex::new(Loaded { config, stamps }),
        })
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
        match tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp)).await {
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
                Ok(config) => {
                    tracing::info!("upstream TLS files changed: new connections use them");
                    loaded.config = Arc::new(config);
                }
                Err(e) => tracing::error!(
                    "upstream TLS files changed but do not load ({e}): the previous ones stay in use"
                ),
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

/// When each file was last changed (`None`: absent or unreadable).
fn stamps(o: &TlsOptions) -> Vec<Option<SystemTime>> {
    [&o.ca, &o.cert, &o.key]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Builds the rustls client configuration from the files.
fn client_config(o: &TlsOptions) -> Result<ClientConfig, String> {
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
            let key = private_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--upstream-tls-cert/--upstream-tls-key: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
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

/// `--upstream-tls-insecure`: any server certificate is accepted (signatures are still
/// checked, so the session is encrypted to whoever holds the key it shows).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _server_name: &pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> TlsOptions {
        TlsOptions {
            ca: Some("/nonexistent/ca.crt".into()),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn a_missing_or_empty_file_and_a_lone_certificate_are_named() {
        let e = Tls::new(options(), Some("redis")).unwrap_err();
        assert!(e.contains("cannot read /nonexistent/ca.crt"), "{e}");
        let empty = std::env::temp_dir().join(format!("nearcache-empty-ca-{}", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let e = Tls::new(
            TlsOptions {
                ca: Some(empty.clone()),
                ..TlsOptions::default()
            },
            Some("redis"),
        )
        .unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_file(&empty);
        let lone = TlsOptions {
            insecure: true,
            cert: Some("/nonexistent/client.crt".into()),
            ..TlsOptions::default()
        };
        let e = Tls::new(lone, Some("redis")).unwrap_err();
        assert!(e.contains("go together"), "{e}");
    }

    #[test]
    fn the_server_name_is_the_hosts_or_the_override() {
        let insecure = |name: Option<&str>| TlsOptions {
            insecure: true,
            server_name: name.map(str::to_owned),
            ..TlsOptions::default()
        };
        let tls = Tls::new(insecure(None), Some("127.0.0.1")).unwrap();
        assert!(matches!(
            tls.name,
            Some(pki_types::ServerName::IpAddress(_))
        ));
        let tls = Tls::new(insecure(Some("redis.internal")), Some("127.0.0.1")).unwrap();
        assert!(matches!(tls.name, Some(pki_types::ServerName::DnsName(_))));
        assert!(Tls::new(insecure(Some("bad_name!")), Some("h")).is_err());
        // Discovered hosts: each connection's own.
        let tls = Tls::new(insecure(None), None).unwrap();
        assert!(tls.name.is_none());
        assert_eq!(host_of("[::1]:6379"), "::1");
        assert_eq!(host_of("redis-0.redis:6380"), "redis-0.redis");
    }
}
