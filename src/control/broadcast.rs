//! Broadcast tracking (`--tracking bcast`): the control connection itself runs `CLIENT
//! TRACKING on BCAST PREFIX p ...` (RESP3, so the invalidations come to it as push messages,
//! no redirect), and Redis reports every write of a key under a prefix, whoever wrote it and
//! whether or not anyone read it. Redis keeps no per-key state; pooled connections turn no
//! tracking on. A fill is then valid only while the control connection's epoch that was
//! current when its fetch was sent is still current (each pooled connection marks the
//! epoch with a `PING` queued before the fetches it covers, see the upstream's fill gate),
//! and the loss of the control connection flushes L1 as in the default mode.

use bytes::Bytes;

use super::Control;
use crate::config::TrackingMode;

impl Control {
    /// Whether tracking is broadcast on the control connection alone.
    pub fn broadcast(&self) -> bool {
        self.mode == TrackingMode::Bcast
    }

    /// The prefixes broadcast tracking covers (set once at start-up; an empty list or none
    /// set: every key).
    pub fn broadcast_prefixes(&self, prefixes: Vec<Bytes>) {
        let _ = self.prefixes.set(prefixes);
    }

    /// How many prefixes broadcast tracking covers (0: every key).
    pub fn prefix_count(&self) -> usize {
        self.prefixes.get().map_or(0, Vec::len)
    }

    /// The arguments of the control connection's `CLIENT TRACKING` call, or `None` when it
    /// runs none (default tracking redirects the pooled connections' to it, off has none).
    pub(super) fn tracking_command(&self) -> Option<Vec<&[u8]>> {
        if !self.broadcast() {
            return None;
        }
        let mut args: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"on", b"BCAST"];
        for prefix in self.prefixes.get().into_iter().flatten() {
            args.push(b"PREFIX");
            args.push(prefix);
        }
        Some(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{L1Options, L1};
    use std::sync::Arc;

    fn l1() -> Arc<L1> {
        Arc::new(L1::new(L1Options {
            max_bytes: 1 << 20,
            ttl: std::time::Duration::from_secs(60),
            compress_min_bytes: 4096,
            cache_nil: true,
            admit_second_miss: false,
        }))
    }

    #[test]
    fn bcast_tracks_its_prefixes_and_default_runs_no_call() {
        let control = Control::new(TrackingMode::Bcast, "ch", l1());
        assert_eq!(
            control.tracking_command().unwrap(),
            [&b"CLIENT"[..], b"TRACKING", b"on", b"BCAST"]
        );
        control.broadcast_prefixes(vec![Bytes::from_static(b"u:"), Bytes::from_static(b"s:")]);
        let args = control.tracking_command().unwrap();
        assert_eq!(&args[4..], [&b"PREFIX"[..], b"u:", b"PREFIX", b"s:"]);
        assert_eq!(control.prefix_count(), 2);
        assert!(Control::new(TrackingMode::Default, "ch", l1())
            .tracking_command()
            .is_none());
    }
}
