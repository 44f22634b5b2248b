//! The user ids that may have L1 entries: an invalidation evicts a key for each of them,
//! so its cost follows the identities in use, not every identity ever seen.

use parking_lot::RwLock;

/// A sorted set of user ids.
#[derive(Default)]
pub(super) struct Users(RwLock<Vec<u32>>);

impl Users {
    /// Adds `user` (cheap when it is already there, the common case).
    pub(super) fn add(&self, user: u32) {
        let known = self.0.read();
        if known.binary_search(&user).is_ok() {
            return;
        }
        drop(known);
        let mut users = self.0.write();
        if let Err(at) = users.binary_search(&user) {
            users.insert(at, user);
        }
    }

    /// Removes `user`.
    pub(super) fn remove(&self, user: u32) {
        let mut users = self.0.write();
        if let Ok(at) = users.binary_search(&user) {
            users.remove(at);
        }
    }

    /// Calls `f` for each user.
    pub(super) fn each(&self, mut f: impl FnMut(u32)) {
        for &user in self.0.read().iter() {
            f(user);
        }
    }

    /// The users, in order.
    #[cfg(test)]
    pub(super) fn list(&self) -> Vec<u32> {
        self.0.read().clone()
    }
}
