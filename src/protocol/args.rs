//! A request's arguments: up to [`INLINE`] kept in place (most commands: `GET k`,
//! `SET k v`, `INCR k`), more in a vector, so parsing a short command allocates nothing.

use std::ops::{Deref, DerefMut};

use bytes::Bytes;

/// Arguments kept without a heap allocation.
const INLINE: usize = 3;

/// The arguments of one request, the command name first; reads as a `[Bytes]`.
#[derive(Clone, Default)]
pub struct Args {
    inline: [Bytes; INLINE],
    len: usize,
    heap: Vec<Bytes>,
}

impl Args {
    /// Room for `n` arguments (allocates only past [`INLINE`]).
    pub fn with_capacity(n: usize) -> Args {
        Args {
            heap: if n > INLINE {
                Vec::with_capacity(n)
            } else {
                Vec::new()
            },
            ..Args::default()
        }
    }

    /// Appends an argument.
    pub fn push(&mut self, arg: Bytes) {
        if self.heap.is_empty() && self.len < INLINE {
            self.inline[self.len] = arg;
            self.len += 1;
            return;
        }
        if self.heap.is_empty() {
            self.heap.extend(self.inline.iter_mut().map(std::mem::take));
            self.len = 0;
        }
        self.heap.push(arg);
    }
}

impl Deref for Args {
    type Target = [Bytes];
    fn deref(&self) -> &[Bytes] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

impl DerefMut for Args {
    fn deref_mut(&mut self) -> &mut [Bytes] {
        if self.heap.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }
}

impl FromIterator<Bytes> for Args {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Args {
        let iter = iter.into_iter();
        let mut args = Args::with_capacity(iter.size_hint().0);
        iter.for_each(|a| args.push(a));
        args
    }
}

impl<'a> IntoIterator for &'a Args {
    type Item = &'a Bytes;
    type IntoIter = std::slice::Iter<'a, Bytes>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        self[..] == other[..]
    }
}

impl PartialEq<Vec<Bytes>> for Args {
    fn eq(&self, other: &Vec<Bytes>) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Args {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lists_stay_inline_and_long_ones_move_to_the_heap() {
        for n in 0..8 {
            let want: Vec<Bytes> = (0..n).map(|i| Bytes::from(i.to_string())).collect();
            let mut args = Args::with_capacity(n);
            want.iter().cloned().for_each(|a| args.push(a));
            assert_eq!(args, want, "{n} pushed");
            assert_eq!(args.heap.is_empty(), n <= INLINE, "{n} pushed");
            let collected: Args = want.iter().cloned().collect();
            assert_eq!(collected, want);
            if n > 0 {
                args[0] = Bytes::from_static(b"x");
                assert_eq!(&args[0][..], b"x");
            }
        }
    }
}
