//! [`Endpoint`]: the address every upstream connection is opened to. Fixed for a `redis://`
//! upstream; for a Sentinel upstream it is the primary the sentinels name, unknown until
//! discovery answers and changed by each switch.
//!
//! Each change bumps the endpoint's generation. A connection remembers the generation it
//! was opened in and ends when the generation moves on (see [`Endpoint::switched`]), so
//! nothing the sidecar holds keeps talking to a demoted primary; the control plane flushes
//! L1 on the same change.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::{watch, Notify};

use crate::error::UpstreamError;

/// Where upstream connections go now.
pub struct Endpoint {
    /// `host:port` of the primary; `None` while no primary is known.
    current: RwLock<Option<Arc<str>>>,
    /// The generation, bumped by every change of `current`.
    generation: watch::Sender<u64>,
    /// The generation too, for the reply path's check (no lock).
    now: AtomicU64,
    /// Discovered (Sentinel): the address may change, and a node that says it is no
    /// primary is doubted.
    discovered: bool,
    /// Evidence that the address may no longer be the primary's (see [`Endpoint::doubt`]).
    doubts: Notify,
}

impl Endpoint {
    /// An endpoint that never changes (a `redis://` upstream).
    pub fn fixed(address: impl Into<Arc<str>>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            current: RwLock::new(Some(address.into())),
            generation: watch::Sender::new(0),
            now: AtomicU64::new(0),
            discovered: false,
            doubts: Notify::new(),
        })
    }

    /// An endpoint with no address yet: discovery sets it (see [`Endpoint::switch_to`]).
    pub fn unknown() -> Arc<Endpoint> {
        Arc::new(Endpoint {
            current: RwLock::new(None),
            generation: watch::Sender::new(0),
            now: AtomicU64::new(0),
            discovered: true,
            doubts: Notify::new(),
        })
    }

    /// The address to connect to now, or why there is none.
    pub fn address(&self) -> Result<Arc<str>, UpstreamError> {
        self.current
            .read()
            .clone()
            .ok_or_else(|| UpstreamError::unavailable("no primary known"))
    }

    /// The address now and its generation, read together.
    pub fn current(&self) -> (Option<Arc<str>>, u64) {
        let current = self.current.read();
        (current.clone(), *self.generation.borrow())
    }

    /// The address for display: `host:port`, or `(none)` while no primary is known.
    pub fn display(&self) -> String {
        self.current
            .read()
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), str::to_owned)
    }

    /// The generation now.
    pub fn generation(&self) -> u64 {
        self.now.load(SeqCst)
    }

    /// Points new connections at `address` (`None`: no primary known). Returns whether it
    /// changed; a change bumps the generation, which ends every connection opened before.
    pub fn switch_to(&self, address: Option<&str>) -> bool {
        let mut current = self.current.write();
        if current.as_deref() == address {
            return false;
        }
        *current = address.map(Arc::from);
        // Bumped while the address is still locked: a reader of both sees them agree.
        self.generation.send_modify(|g| {
            *g += 1;
            self.now.store(*g, SeqCst);
        });
        true
    }

    /// Resolves once the generation is no longer `opened_in` (at once if it already moved
    /// on): a connection opened in `opened_in` selects on this to end at a switch.
    pub async fn switched(&self, opened_in: u64) {
        let mut changes = self.generation.subscribe();
        let _ = changes.wait_for(|g| *g != opened_in).await;
    }

    /// Whether the address is discovered (Sentinel) rather than fixed.
    pub fn discovered(&self) -> bool {
        self.discovered
    }

    /// Evidence that the address may no longer be the primary (a `-READONLY` reply, a
    /// `ROLE` of replica): discovery asks the sentinels again at once. Nothing for a fixed
    /// endpoint.
    pub fn doubt(&self, why: &str) {
        if self.discovered {
            tracing::debug!("primary doubted: {why}");
            self.doubts.notify_one();
        }
    }

    /// Resolves at the next [`Endpoint::doubt`] (or at once for one not yet heard).
    pub async fn doubted(&self) {
        self.doubts.notified().await
    }

    /// Every change of the generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_endpoint_has_its_address_in_generation_zero() {
        let e = Endpoint::fixed("127.0.0.1:6379");
        assert_eq!(&*e.address().unwrap(), "127.0.0.1:6379");
        assert_eq!(e.generation(), 0);
    }

    #[test]
    fn an_unknown_endpoint_refuses_until_set_and_each_change_bumps_the_generation() {
        let e = Endpoint::unknown();
        assert!(e
            .address()
            .unwrap_err()
            .to_string()
            .contains("no primary known"));
        assert_eq!(e.display(), "(none)");
        assert!(e.switch_to(Some("10.0.0.1:6379")));
        assert!(
            !e.switch_to(Some("10.0.0.1:6379")),
            "same address: no change"
        );
        assert_eq!(e.generation(), 1);
        assert!(e.switch_to(Some("10.0.0.2:6379")));
        assert_eq!(e.current(), (Some(Arc::from("10.0.0.2:6379")), 2));
        assert!(e.switch_to(None));
        assert!(e.address().is_err());
        assert_eq!(e.generation(), 3);
    }

    #[tokio::test]
    async fn switched_resolves_only_after_a_change() {
        let e = Endpoint::fixed("a:1");
        let opened_in = e.generation();
        let waiting = {
            let e = e.clone();
            tokio::spawn(async move { e.switched(opened_in).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        e.switch_to(Some("b:2"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ended at the switch")
            .unwrap();
        // Already moved on: resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), e.switched(opened_in))
            .await
            .unwrap();
    }
}
