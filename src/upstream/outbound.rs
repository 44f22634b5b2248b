//! The sidecar's own outbound upstream sockets, by their two ends, while they set up: a
//! client connection whose two ends are one of them seen from the other side (its peer is
//! the socket's local address, its local end the socket's remote one) is the sidecar
//! itself (an `--upstream` that leads back to its own listener), and from then on no
//! upstream connection is opened. Both ends are compared: one local port may serve
//! several connections to different remote ends, so a client may share its port with an
//! upstream socket of the sidecar.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use tokio::net::TcpStream;

use super::stream::UpstreamStream;
use super::tls::Tls;

/// (local, remote) addresses of outbound sockets whose handshake is under way, and whether
/// one of them was seen arriving at the sidecar's own listener.
#[derive(Debug, Default)]
pub struct Outbound {
    open: Mutex<HashSet<(SocketAddr, SocketAddr)>>,
    looped: AtomicBool,
    /// The TLS client of a `rediss://` upstream.
    tls: Option<Tls>,
}

impl Outbound {
    /// An empty registry, for a plain-TCP upstream.
    pub fn new() -> Arc<Outbound> {
        Arc::new(Outbound::default())
    }

    /// An empty registry whose connections run `tls` (a `rediss://` upstream) if given.
    pub fn with_tls(tls: Option<Tls>) -> Arc<Outbound> {
        Arc::new(Outbound {
            tls,
            ..Outbound::default()
        })
    }

    /// The TLS client of a `rediss://` upstream (`None` for `redis://`).
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Connects to `address` and registers the socket's local address until the returned
    /// guard is dropped (keep it for the handshake: the sidecar, if it is its own upstream,
    /// reads the handshake's first bytes while it is registered). Fails without connecting
    /// once the upstream was found to be the sidecar itself. A TLS upstream's handshake
    /// must end by `deadline` (the caller's connect timeout); its errors name their cause.
    pub async fn connect(
        self: &Arc<Self>,
        address: &str,
        deadline: tokio::time::Instant,
    ) -> std::io::Result<(UpstreamStream, Registered)> {
        if self.looped() {
            return Err(std::io::Error::other(ITSELF));
        }
        let stream = TcpStream::connect(address).await?;
        let local = (
            normalise(stream.local_addr()?),
            normalise(stream.peer_addr()?),
        );
        self.lock().insert(local);
        let guard = Registered {
            outbound: self.clone(),
            local,
        };
        stream.set_nodelay(true)?;
        let stream = match &self.tls {
            None => UpstreamStream::Plain(stream),
            Some(tls) => {
                UpstreamStream::Tls(Box::new(tls.handshake(stream, address, deadline).await?))
            }
        };
        Ok((stream, guard))
    }

    /// Whether a client connected from `peer` to the listener's `local` address is one of
    /// the sidecar's own upstream sockets; the first time it is, the loop is logged and
    /// every later upstream connect fails at once.
    pub fn is_own(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        if !self.lock().contains(&(normalise(peer), normalise(local))) {
            return false;
        }
        if !self.looped.swap(true, Relaxed) {
            tracing::error!(
                "{ITSELF}: a connection to --upstream arrived at this sidecar's own listener; \
                 no upstream connection is opened until --upstream is fixed and the sidecar \
                 restarted"
            );
        }
        true
    }

    /// Whether the upstream was found to be the sidecar itself.
    pub fn looped(&self) -> bool {
        self.looped.load(Relaxed)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashSet<(SocketAddr, SocketAddr)>> {
        self.open.lock()
    }
}

/// What clients and the log are told once the upstream is found to be the sidecar itself.
pub const ITSELF: &str = "upstream is this sidecar itself";

/// An outbound socket's registration; dropping it forgets the address.
#[derive(Debug)]
pub struct Registered {
    outbound: Arc<Outbound>,
    local: (SocketAddr, SocketAddr),
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.outbound.lock().remove(&self.local);
    }
}

/// `addr` with an IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]`) as plain IPv4.
pub fn normalise(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalise_ip(addr.ip()), addr.port())
}

fn normalise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether connecting to `upstream` reaches the socket listening on `listener`: the same
/// port, and the same address, or a listener on every address and an upstream address of
/// this host (loopback, unspecified, or one a socket can be bound to here).
pub fn reaches_listener(upstream: SocketAddr, listener: SocketAddr) -> bool {
    let (up, own) = (normalise(upstream), normalise(listener));
    if up.port() != own.port() {
        return false;
    }
    if up.ip() == own.ip() {
        return true;
    }
    if !own.ip().is_unspecified() {
        // A connect to the unspecified address goes to loopback.
        return up.ip().is_unspecified() && own.ip().is_loopback();
    }
    // A listener on every IPv4 address takes no IPv6 connection; on every IPv6 address it
    // takes both (the default dual stack).
    let family = own.is_ipv6() || up.is_ipv4();
    family && is_local(up.ip())
}

/// Whether `ip` is an address of this host.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(5)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_listeners_own_address_is_recognised() {
        let cases = [
            ("127.0.0.1:6380", "127.0.0.1:6380", true),
            ("[::ffff:127.0.0.1]:6380", "127.0.0.1:6380", true),
            ("127.0.0.1:6380", "0.0.0.0:6380", true),
            ("[::1]:6380", "[::]:6380", true),
            ("127.0.0.1:6380", "[::]:6380", true),
            ("0.0.0.0:6380", "127.0.0.1:6380", true),
            ("127.0.0.1:6379", "127.0.0.1:6380", false),
            ("127.0.0.2:6380", "127.0.0.1:6380", false),
            ("[::1]:6380", "0.0.0.0:6380", false),
            ("192.0.2.7:6380", "0.0.0.0:6380", false),
            ("192.0.2.7:6380", "127.0.0.1:6380", false),
        ];
        for (up, listener, want) in cases {
            assert_eq!(
                reaches_listener(addr(up), addr(listener)),
                want,
                "{up} -> {listener}"
            );
        }
    }

    #[tokio::test]
    async fn a_registered_socket_is_its_own_peer_until_dropped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let outbound = Outbound::new();
        let (_stream, guard) = outbound.connect(&address, soon()).await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        let local = accepted.local_addr().unwrap();
        // The same port towards another remote end is someone else.
        let elsewhere = SocketAddr::new(local.ip(), local.port().wrapping_add(1));
        assert!(!outbound.is_own(peer, elsewhere));
        assert!(!outbound.looped());
        assert!(outbound.is_own(peer, local));
        assert!(outbound.looped());
        assert!(
            outbound.connect(&address, soon()).await.is_err(),
            "no more connects"
        );
        drop(guard);
        assert!(!outbound.is_own(peer, local));
    }
}
