//! The bus's keys: read from `--bus-key-file` (signing key first, a second accepted during a
//! rotation), re-read when the file changes, and the sealing of hot-key answers with them.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;

use super::auth::BusKeys;
use super::{wire, Bus, MAX_HOT_KEYS};

impl Bus {
    /// Signs and verifies with the keys in `path` (already checked by the config, read
    /// again here); it is re-read by [`Bus::reload_keys`].
    pub fn use_key_file(&self, path: PathBuf) -> Result<(), String> {
        let raw = crate::config::bus_key::read_bus_keys(&path)?;
        self.set_keys(raw);
        let _ = self.key_file.set(path);
        Ok(())
    }

    /// Uses `raw` keys (signing key first).
    pub fn set_keys(&self, raw: Vec<Vec<u8>>) {
        let keys = Arc::new(BusKeys::new(&raw));
        *self.keys.write() = Some((raw, keys));
    }

    /// Reads the key file again: `Ok(true)` when it holds new keys (now in use), `Ok(false)`
    /// when unchanged or without a key file, `Err` when it cannot be read or holds no valid
    /// key (the keys in use stay).
    pub fn reload_keys(&self) -> Result<bool, String> {
        let Some(path) = self.key_file.get() else {
            return Ok(false);
        };
        let raw = crate::config::bus_key::read_bus_keys(path)?;
        let same = self
            .keys
            .read()
            .as_ref()
            .is_some_and(|(old, _)| *old == raw);
        if same {
            return Ok(false);
        }
        self.set_keys(raw);
        self.counters.key_reloads.fetch_add(1, Relaxed);
        Ok(true)
    }

    /// The keys in use, if the bus is keyed.
    pub(super) fn keys(&self) -> Option<Arc<BusKeys>> {
        let keys = self.keys.read();
        keys.as_ref().map(|(_, k)| k.clone())
    }

    /// Whether messages are signed and only authenticated ones acted on.
    pub fn keyed(&self) -> bool {
        self.keys.read().is_some()
    }

    /// The id of the key messages are signed with (INFO), if keyed.
    pub fn key_id(&self) -> Option<String> {
        self.keys()
            .map(|k| String::from_utf8_lossy(k.signing_id()).into_owned())
    }
}

/// What a hot-key answer's sealed keys are bound to: kind, asker and database.
fn hot_keys_header(asker: &[u8], db: u32) -> Vec<u8> {
    let mut header = b"H ".to_vec();
    header.extend_from_slice(asker);
    header.extend_from_slice(format!(" {db}").as_bytes());
    header
}

/// A hot-key answer's keys as one sealed item (see `auth`).
pub(super) fn seal_hot_keys(keys: &BusKeys, asker: &[u8], db: u32, hot: &[Bytes]) -> Bytes {
    let mut plain = bytes::BytesMut::new();
    hot.iter().for_each(|k| wire::put_item(&mut plain, k));
    let plain = plain.get(1..).unwrap_or_default();
    Bytes::from(keys.seal(&hot_keys_header(asker, db), plain))
}

/// The keys of a sealed hot-key answer; `None` unless it is one item that opens.
pub(super) fn unseal_hot_keys(
    keys: &BusKeys,
    index: usize,
    asker: &[u8],
    db: u32,
    sealed: &[Bytes],
) -> Option<Vec<Bytes>> {
    let [sealed] = sealed else {
        return None;
    };
    let plain = keys.unseal(index, &hot_keys_header(asker, db), sealed)?;
    let hot = wire::items(Bytes::from(plain))?;
    (hot.len() <= MAX_HOT_KEYS).then_some(hot)
}
