//! The keys a command may write: one kept in place (most writes name one key), more in a
//! vector, so classifying a single-key write allocates nothing.

use std::ops::{Deref, DerefMut};

use super::WrittenKey;

/// The keys of an [`super::Invalidation::Keys`]; reads as a `[WrittenKey]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenKeys {
    first: Option<WrittenKey>,
    rest: Vec<WrittenKey>,
}

impl WrittenKeys {
    /// Appends a key.
    pub fn push(&mut self, key: WrittenKey) {
        match (&self.first, self.rest.is_empty()) {
            (None, true) => self.first = Some(key),
            (Some(_), true) => {
                self.rest.reserve(4);
                self.rest.extend(self.first.take());
                self.rest.push(key);
            }
            _ => self.rest.push(key),
        }
    }
}

impl Deref for WrittenKeys {
    type Target = [WrittenKey];
    fn deref(&self) -> &[WrittenKey] {
        match &self.first {
            Some(one) => std::slice::from_ref(one),
            None => &self.rest,
        }
    }
}

impl DerefMut for WrittenKeys {
    fn deref_mut(&mut self) -> &mut [WrittenKey] {
        match &mut self.first {
            Some(one) => std::slice::from_mut(one),
            None => &mut self.rest,
        }
    }
}

impl From<Vec<WrittenKey>> for WrittenKeys {
    fn from(keys: Vec<WrittenKey>) -> WrittenKeys {
        keys.into_iter().collect()
    }
}

impl FromIterator<WrittenKey> for WrittenKeys {
    fn from_iter<I: IntoIterator<Item = WrittenKey>>(iter: I) -> WrittenKeys {
        let mut keys = WrittenKeys::default();
        iter.into_iter().for_each(|k| keys.push(k));
        keys
    }
}

impl IntoIterator for WrittenKeys {
    type Item = WrittenKey;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<WrittenKey>, std::vec::IntoIter<WrittenKey>>;
    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn one_key_stays_in_place_and_more_keep_their_order() {
        for n in 0..6u32 {
            let want: Vec<WrittenKey> = (0..n)
                .map(|i| WrittenKey::new(i, Bytes::from(i.to_string())))
                .collect();
            let mut keys: WrittenKeys = want.clone().into();
            assert_eq!(&keys[..], &want[..], "{n} keys");
            assert_eq!(keys.rest.is_empty(), n <= 1, "{n} keys");
            keys.iter_mut().for_each(|k| k.seen = 7);
            assert!(keys.iter().all(|k| k.seen == 7));
            assert_eq!(keys.into_iter().count(), n as usize);
        }
    }
}
