//! Which command table is in use, and loading the upstream's: over the sidecar's own
//! route at start, or, when the upstream refuses the sidecar (a password the `--upstream`
//! URL does not carry), over the route of the first client that authenticates. Until one
//! of them succeeds, the built-in Redis 7 table is used.

use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use super::CommandTable;
use crate::error::UpstreamError;
use crate::protocol::command;
use crate::protocol::decode::is_error;

/// Where the table is read from: one command's reply over some route (an upstream pool is
/// one; the command layer needs nothing else of the upstream).
pub trait Source {
    /// Sends the one command `raw` and gives its reply frame.
    fn call(&self, raw: Bytes) -> impl Future<Output = Result<Bytes, UpstreamError>> + Send;
}

impl<S: Source + Send + Sync> Source for std::sync::Arc<S> {
    fn call(&self, raw: Bytes) -> impl Future<Output = Result<Bytes, UpstreamError>> + Send {
        S::call(self, raw)
    }
}

/// How often the sidecar's own load is retried while the upstream is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// The command table in use: the upstream's once loaded, the built-in one until then.
pub struct Tables {
    upstream: OnceLock<CommandTable>,
    /// Identities (see [`crate::upstream::Upstream::identity`]) a load was started for.
    tried: Mutex<Vec<u32>>,
    /// The degraded state (built-in table only) was logged.
    degraded: AtomicBool,
}

impl Default for Tables {
    fn default() -> Tables {
        Tables::new()
    }
}

/// Why a load attempt failed.
#[derive(Debug)]
pub enum LoadError {
    /// The upstream could not be asked (down, timeout): worth retrying.
    Unavailable(UpstreamError),
    /// The upstream answered with an error (NOAUTH, NOPERM, ...) or a reply that is not a
    /// command table: retrying on the same route will not help.
    Refused(String),
}

impl Tables {
    /// No upstream table yet; the built-in one is parsed now rather than on first use.
    pub fn new() -> Tables {
        let _ = CommandTable::builtin();
        Tables {
            upstream: OnceLock::new(),
            tried: Mutex::new(Vec::new()),
            degraded: AtomicBool::new(false),
        }
    }

    /// The table to classify with.
    #[inline]
    pub fn get(&self) -> &CommandTable {
        self.upstream
            .get()
            .unwrap_or_else(|| CommandTable::builtin())
    }

    /// Whether the upstream's own table is loaded.
    pub fn loaded(&self) -> bool {
        self.upstream.get().is_some()
    }

    /// Claims the load over the route of a client authenticated as `user`: true once per
    /// identity, and only while the upstream's table is not loaded.
    pub fn claim(&self, user: u32) -> bool {
        if self.loaded() {
            return false;
        }
        let mut tried = self.tried.lock();
        if tried.contains(&user) {
            return false;
        }
        tried.push(user);
        true
    }

    /// Gives a claim back (the attempt could not reach the upstream).
    fn release(&self, user: u32) {
        let mut tried = self.tried.lock();
        tried.retain(|&u| u != user);
    }

    /// One attempt: `COMMAND` asked of `source`, parsed and installed.
    pub async fn load(&self, source: &impl Source) -> Result<(), LoadError> {
        let reply = source
            .call(command(&[b"COMMAND"]))
            .await
            .map_err(refused_or_unavailable)?;
        let reply = &reply;
        if is_error(reply) {
            let text = String::from_utf8_lossy(reply);
            return Err(LoadError::Refused(
                text.trim_start_matches('-').trim_end().into(),
            ));
        }
        match CommandTable::parse(reply) {
            Some(t) if !t.is_empty() => {
                let _ = self.upstream.set(t);
                Ok(())
            }
            _ => Err(LoadError::Refused(
                "the reply is not a command table".into(),
            )),
        }
    }

    /// The sidecar's own load at start: retries while the upstream is unreachable; when it
    /// refuses, logs the degraded state once and leaves the load to the first client that
    /// authenticates. True when the upstream's table was loaded.
    pub async fn load_own(&self, source: &impl Source) -> bool {
        loop {
            match self.load(source).await {
                Ok(()) => return true,
                Err(LoadError::Unavailable(_)) => tokio::time::sleep(RETRY).await,
                Err(LoadError::Refused(reason)) => {
                    self.degraded(&reason);
                    return false;
                }
            }
        }
    }

    /// The load over an authenticated client's route (claimed with [`Tables::claim`]).
    /// True when the upstream's table was loaded.
    pub async fn load_for_client(&self, source: &impl Source, user: u32) -> bool {
        match self.load(source).await {
            Ok(()) => {
                if self.degraded.load(Relaxed) {
                    tracing::info!("command table loaded from the upstream");
                }
                true
            }
            Err(LoadError::Unavailable(_)) => {
                self.release(user);
                false
            }
            Err(LoadError::Refused(reason)) => {
                tracing::warn!("cannot read COMMAND as an authenticated client ({reason})");
                false
            }
        }
    }

    fn degraded(&self, reason: &str) {
        if !self.degraded.swap(true, Relaxed) {
            tracing::warn!(
                "cannot read COMMAND from the upstream ({reason}); using the \
                 built-in Redis 7 table until a client authenticates"
            );
        }
    }
}

/// NOAUTH or refused credentials while connecting is a refusal; anything else is the
/// link's state.
fn refused_or_unavailable(e: UpstreamError) -> LoadError {
    match e {
        UpstreamError::Refused(text) => LoadError::Refused(text.to_string()),
        e @ UpstreamError::AuthFailed(_) => LoadError::Refused(e.to_string()),
        e => LoadError::Unavailable(e),
    }
}
