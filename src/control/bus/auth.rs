//! Bus message authentication: every message a keyed sidecar publishes is wrapped in an
//! envelope carrying an HMAC-SHA256 of the whole message (sender, sequence, publish time,
//! body) under a key the fleet shares (`--bus-key-file`):
//!
//! ```text
//! s1 <key id> <mac> v1 <sender> <seq> <ms> <kind> ...
//! ```
//!
//! `key id` is the first 4 bytes of the key's SHA-256 in hex (8 digits: it names the key
//! without revealing it, so a receiver holding two keys during a rotation checks one MAC);
//! `mac` is the 32-byte HMAC-SHA256 of everything after the envelope's last space, in
//! lowercase hex (64 digits). A keyed receiver drops every message whose envelope is
//! missing, names a key it does not hold, or carries a MAC that does not verify (compared in
//! constant time); an unkeyed receiver skips the envelope unchecked.
//!
//! Hot-key answers name keys, which no subscriber outside the fleet (a weak ACL user that
//! may `SUBSCRIBE`) should read: on a keyed bus their keys travel sealed, as one item of
//! 12 nonce bytes then ChaCha20-Poly1305 ciphertext and tag, under a key derived from the
//! bus key (SHA-256 of `nearcache-bus-seal` and the key) with the message's header as
//! associated data.

use bytes::{BufMut, Bytes, BytesMut};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hmac};

/// The envelope's first field.
const TAG: &[u8] = b"s1";
/// Hex digits of a key id.
const KEY_ID_LEN: usize = 8;
/// Hex digits of a MAC.
const MAC_LEN: usize = 64;
/// Bytes of the envelope before the message: tag, key id, MAC and their spaces.
pub const ENVELOPE_LEN: usize = TAG.len() + 1 + KEY_ID_LEN + 1 + MAC_LEN + 1;

/// One key and its id.
struct Key {
    id: [u8; KEY_ID_LEN],
    mac: hmac::Key,
    seal: aead::LessSafeKey,
}

/// Bytes of a sealed item's nonce.
const NONCE_LEN: usize = 12;

/// The keys a sidecar holds: the first signs, every one verifies.
pub struct BusKeys {
    keys: Vec<Key>,
}

/// Why a message was not accepted as authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No envelope, or one that cannot be read.
    Unsigned,
    /// Signed with a key this sidecar does not hold.
    UnknownKey,
    /// The MAC does not match the message.
    BadMac,
}

fn hex(bytes: &[u8], out: &mut BytesMut) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.put_u8(DIGITS[usize::from(b >> 4)]);
        out.put_u8(DIGITS[usize::from(b & 15)]);
    }
}

fn unhex(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

impl BusKeys {
    /// The keys, signing key first (at least one: see `config::bus_key`).
    pub fn new(raw: &[Vec<u8>]) -> BusKeys {
        let keys = raw
            .iter()
            .map(|k| {
                let mut id = BytesMut::with_capacity(KEY_ID_LEN);
                hex(
                    &digest::digest(&digest::SHA256, k).as_ref()[..KEY_ID_LEN / 2],
                    &mut id,
                );
                let mut fixed = [0; KEY_ID_LEN];
                fixed.copy_from_slice(&id);
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(b"nearcache-bus-seal");
                ctx.update(k);
                let sealing =
                    aead::UnboundKey::new(&aead::CHACHA20_POLY1305, ctx.finish().as_ref())
                        .expect("a 32-byte key");
                Key {
                    id: fixed,
                    mac: hmac::Key::new(hmac::HMAC_SHA256, k),
                    seal: aead::LessSafeKey::new(sealing),
                }
            })
            .collect();
        BusKeys { keys }
    }

    /// The signing key's id.
    pub fn signing_id(&self) -> &[u8] {
        self.keys.first().map_or(&[][..], |k| &k.id[..])
    }

    /// `message` in its envelope, signed with the first key.
    pub fn sign(&self, message: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(ENVELOPE_LEN + message.len());
        let Some(key) = self.keys.first() else {
            out.extend_from_slice(message);
            return out.freeze();
        };
        out.extend_from_slice(TAG);
        out.put_u8(b' ');
        out.extend_from_slice(&key.id);
        out.put_u8(b' ');
        hex(hmac::sign(&key.mac, message).as_ref(), &mut out);
        out.put_u8(b' ');
        out.extend_from_slice(message);
        out.freeze()
    }

    /// Checks `payload`'s envelope: the offset of the authentic message in it, and which
    /// key signed it (for [`BusKeys::unseal`]).
    pub fn open(&self, payload: &[u8]) -> Result<(usize, usize), Rejected> {
        let (id, mac) = envelope(payload).ok_or(Rejected::Unsigned)?;
        let index = self
            .keys
            .iter()
            .position(|k| k.id[..] == *id)
            .ok_or(Rejected::UnknownKey)?;
        let mut tag = [0u8; MAC_LEN / 2];
        unhex(mac, &mut tag).ok_or(Rejected::Unsigned)?;
        hmac::verify(&self.keys[index].mac, &payload[ENVELOPE_LEN..], &tag)
            .map_err(|_| Rejected::BadMac)?;
        Ok((ENVELOPE_LEN, index))
    }

    /// `plain` sealed with the signing key, bound to `header`: nonce, ciphertext, tag.
    pub fn seal(&self, header: &[u8], plain: &[u8]) -> Vec<u8> {
        let Some(key) = self.keys.first() else {
            return plain.to_vec();
        };
        let mut nonce = [0u8; NONCE_LEN];
        // The system's random source does not fail on Linux; a zero nonce would still seal.
        let _ = SystemRandom::new().fill(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend_from_slice(plain);
        let mut body = out.split_off(NONCE_LEN);
        let sealed = key.seal.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(header),
            &mut body,
        );
        if sealed.is_err() {
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// What [`BusKeys::seal`] sealed with key `index` (as [`BusKeys::open`] named it), if
    /// it is authentic.
    pub fn unseal(&self, index: usize, header: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.get(index)?;
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = key
            .seal
            .open_in_place(nonce, aead::Aad::from(header), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The key id and MAC fields of an envelope, when `payload` starts with one.
fn envelope(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let head = payload.get(..ENVELOPE_LEN)?;
    let (tag, rest) = head.split_at(TAG.len());
    let spaces = [0, KEY_ID_LEN + 1, KEY_ID_LEN + 1 + MAC_LEN + 1];
    if tag != TAG || spaces.iter().any(|&i| rest[i] != b' ') {
        return None;
    }
    Some((
        &rest[1..=KEY_ID_LEN],
        &rest[KEY_ID_LEN + 2..KEY_ID_LEN + 2 + MAC_LEN],
    ))
}

/// Where the message starts in `payload` for a receiver without a key: after an envelope,
/// unchecked, if there is one.
pub fn skip_envelope(payload: &[u8]) -> usize {
    envelope(payload).map_or(0, |_| ENVELOPE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(raw: &[&str]) -> BusKeys {
        BusKeys::new(
            &raw.iter()
                .map(|k| k.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_signed_message_opens_with_either_key_of_a_rotation() {
        let old = keys(&["previous-key-0123456"]);
        let rotating = keys(&["current-key-01234567", "previous-key-0123456"]);
        let new = keys(&["current-key-01234567"]);
        let message = b"v1 abc 1 1700000000000 F";
        let signed = old.sign(message);
        assert_eq!(signed.len(), ENVELOPE_LEN + message.len());
        assert_eq!(&signed[ENVELOPE_LEN..], message);
        assert_eq!(rotating.open(&signed), Ok((ENVELOPE_LEN, 1)));
        assert_eq!(new.open(&signed), Err(Rejected::UnknownKey));
        assert_eq!(
            rotating.open(&rotating.sign(message)),
            Ok((ENVELOPE_LEN, 0))
        );
        assert_eq!(old.open(&rotating.sign(message)), Err(Rejected::UnknownKey));
    }

    #[test]
    fn sealed_items_open_only_with_their_key_and_header() {
        let rotating = keys(&["current-key-01234567", "previous-key-0123456"]);
        let old = keys(&["previous-key-0123456"]);
        let sealed = old.seal(b"H asker 0", b"5:key:1 5:key:2");
        assert!(
            !sealed.windows(5).any(|w| w == b"key:1"),
            "not in the clear"
        );
        let plain = rotating.unseal(1, b"H asker 0", &sealed);
        assert_eq!(plain.as_deref(), Some(&b"5:key:1 5:key:2"[..]));
        assert_eq!(
            rotating.unseal(0, b"H asker 0", &sealed),
            None,
            "another key"
        );
        assert_eq!(
            rotating.unseal(1, b"H other 0", &sealed),
            None,
            "another header"
        );
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert_eq!(rotating.unseal(1, b"H asker 0", &altered), None);
        assert_eq!(rotating.unseal(1, b"H asker 0", &sealed[..5]), None);
    }

    #[test]
    fn forged_or_altered_messages_are_rejected() {
        let k = keys(&["current-key-01234567"]);
        let signed = k.sign(b"v1 abc 1 1700000000000 F");
        assert_eq!(k.open(b"v1 abc 1 1700000000000 F"), Err(Rejected::Unsigned));
        assert_eq!(k.open(b""), Err(Rejected::Unsigned));
        // Any byte of the message changed, or of the MAC.
        for i in ENVELOPE_LEN - MAC_LEN - 1..signed.len() {
            if signed[i] == b' ' {
                continue;
            }
            let mut bad = signed.to_vec();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            assert!(k.open(&bad).is_err(), "byte {i} altered");
        }
        // Same length, another key with the same id is impossible; an unknown id is told.
        let mut other = signed.to_vec();
        other[3..3 + KEY_ID_LEN].copy_from_slice(b"00000000");
        assert_eq!(k.open(&other), Err(Rejected::UnknownKey));
        assert_eq!(skip_envelope(&signed), ENVELOPE_LEN);
        assert_eq!(skip_envelope(b"v1 - - - F"), 0);
    }
}
