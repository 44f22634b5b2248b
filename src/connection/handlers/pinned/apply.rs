//! What a pinned connection's reply changed, applied to the session before the reply
//! reaches the client: evictions, and the database, protocol, user and name it moved to.

use bytes::Bytes;

use super::local::with_client_id;
use super::state::Applied;
use super::Pin;
use crate::connection::{ClientStream, Connection};
use crate::upstream::{Credentials, Route, Router};

impl<R: Router, S: ClientStream> Connection<R, S> {
    /// Applies what a reply changed; returns the reply rewritten when it must be (HELLO's
    /// `id` is the client's own, as `CLIENT ID` answers).
    pub(super) fn apply(
        &mut self,
        pin: &mut Pin<R::Dedicated>,
        change: Applied,
        frame: &Bytes,
    ) -> Option<Bytes> {
        let mut rewritten = None;
        let (mut db, mut resp, mut user) = (
            self.cx.session.db,
            self.cx.session.resp,
            self.cx.session.user,
        );
        match change {
            Applied::Evict(mut inv) => {
                self.cx.invalidate(&mut inv);
                return None;
            }
            Applied::Select(to) => db = to,
            Applied::Auth(creds) => match self.identity(&creds) {
                Some(id) => user = id,
                None => pin.state.sticky = true,
            },
            Applied::Hello {
                resp: to,
                creds,
                name,
                direct,
            } => {
                resp = to;
                if let Some(creds) = creds {
                    match self.identity(&creds) {
                        Some(id) => user = id,
                        None => pin.state.sticky = true,
                    }
                }
                if let Some(name) = name {
                    self.cx.session.name = name.clone();
                    pin.name = name;
                }
                if direct {
                    rewritten = Some(with_client_id(frame, self.cx.session.id));
                }
            }
            Applied::SetName(name) => {
                self.cx.session.name = name.clone();
                pin.name = name;
                return None;
            }
        }
        let changed_user = user != self.cx.session.user;
        if self.cx.set_route(db, resp, user).is_err() {
            // The session cannot follow to a pool: it stays on this connection, which is.
            pin.state.sticky = true;
            (self.cx.session.db, self.cx.session.resp) = (db, resp);
        } else if changed_user {
            self.cx.load_table_as_client();
        }
        pin.route = Route { db, resp, user };
        rewritten
    }

    /// The identity of credentials the upstream just accepted.
    fn identity(&self, creds: &Credentials) -> Option<u32> {
        self.cx.offer_to_control(creds);
        self.cx.services.upstream.identity(creds.clone()).ok()
    }
}
