//! [`TlsFigures`]: what INFO and `/metrics` say about the upstream TLS in use (how the
//! server is verified, whether a client certificate is shown and when it expires, the
//! files' reloads and the handshakes that failed), and the client certificate's expiry read
//! from its X.509 `notAfter`.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio_rustls::rustls::pki_types::CertificateDer;

/// How the upstream's certificate is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the roots of `--upstream-tls-ca`.
    CaFile,
    /// Against the system's roots (no `--upstream-tls-ca`).
    SystemRoots,
    /// Not at all (`--upstream-tls-insecure`).
    Insecure,
}

impl TlsVerify {
    /// Every mode, in the order `/metrics` lists them.
    pub const ALL: [TlsVerify; 3] = [
        TlsVerify::CaFile,
        TlsVerify::SystemRoots,
        TlsVerify::Insecure,
    ];

    /// The name INFO and `/metrics` show.
    pub fn name(self) -> &'static str {
        match self {
            TlsVerify::CaFile => "ca_file",
            TlsVerify::SystemRoots => "system_roots",
            TlsVerify::Insecure => "insecure",
        }
    }
}

/// The upstream TLS client's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFigures {
    /// How the server's certificate is verified.
    pub verify: TlsVerify,
    /// Whether a client certificate is shown (mutual TLS).
    pub client_cert: bool,
    /// Changes of the CA, certificate or key files loaded since start (new connections use
    /// them).
    pub reloads: u64,
    /// Changes of those files that did not load (the previous material stays in use).
    pub reload_failures: u64,
    /// TLS handshakes with the upstream that failed (refused, unverified, timed out).
    pub handshake_failures: u64,
    /// Seconds until the earliest `notAfter` of the client certificate chain in use
    /// (negative once expired); `None` without a client certificate.
    pub cert_expiry_secs: Option<i64>,
}

/// The earliest `notAfter` of `chain`, in seconds since the Unix epoch (`None` if no
/// certificate of it parses as X.509).
pub(super) fn not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

/// Seconds from now until `at` (seconds since the Unix epoch).
pub(super) fn seconds_until(at: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    at - now
}
