use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn upstream(idle: Duration, max_routes: usize, forgotten: Arc<Mutex<Vec<u32>>>) -> Upstream {
    upstream_hearing(idle, max_routes, forgotten, Box::new(|_| {}))
}

/// [`upstream`] whose link events go to `hook`.
fn upstream_hearing(
    idle: Duration,
    max_routes: usize,
    forgotten: Arc<Mutex<Vec<u32>>>,
    hook: LinkHook,
) -> Upstream {
    let target = Target {
        endpoint: crate::upstream::endpoint::Endpoint::fixed("127.0.0.1:1"), // pools here never connect: no call is sent
        credentials: crate::upstream::CredentialSource::fixed(None),
        connections: 2,
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        idle_timeout: idle,
        max_routes,
        outbound: outbound::Outbound::new(),
        keep_fills_while_down: false,
    };
    let forget = Box::new(move |id| forgotten.lock().push(id));
    let stats = Arc::new(Stats::new());
    Upstream::new(target, stats, hook, forget, tracking_off())
}

/// The fill gate for pools that never connect: no tracking.
pub(super) fn tracking_off() -> Arc<dyn gate::FillGate> {
    Arc::new(gate::Open::default())
}

fn creds(user: &'static str, pass: &'static str) -> Credentials {
    Credentials {
        user: Some(Bytes::from_static(user.as_bytes())),
        pass: Bytes::from_static(pass.as_bytes()),
    }
}

fn route(db: u32, user: u32) -> Route {
    Route {
        db,
        resp: Resp::V2,
        user,
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5s: {what}");
}

#[tokio::test]
async fn unused_identities_are_forgotten_and_their_ids_never_reused() {
    let forgotten = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(Duration::from_millis(50), 8, forgotten.clone());
    let id = up.identity(creds("alice", "a")).unwrap();
    assert_ne!(id, 0);
    assert_eq!(
        up.identity(creds("alice", "a")).unwrap(),
        id,
        "same credentials"
    );
    assert_eq!(
        up.identity(creds("alice", "b")).unwrap(),
        id,
        "another password of the same user: the same rights, the same id"
    );
    let other = up.identity(creds("bob", "b")).unwrap();
    assert_ne!(other, id, "another user, another id");
    let pool = up.try_pool(route(0, id)).unwrap();
    wait_for("the identity without a pool to be forgotten", || {
        *forgotten.lock() == [other]
    })
    .await;
    // A held pool keeps its route and identity however long it is held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.routes(), 1);
    assert!(up.live_identities().contains(&id));
    drop(pool);
    wait_for("the unused pool and its identity to go", || {
        up.routes() == 0 && !up.live_identities().contains(&id)
    })
    .await;
    assert_eq!(*forgotten.lock(), [other, id]);
    assert_eq!(up.live_identities(), [0]);
    let again = up.identity(creds("alice", "a")).unwrap();
    assert!(again > other, "ids only grow: {again} after {other}");
}

#[tokio::test]
async fn a_new_route_replaces_an_unused_pool_or_is_refused() {
    let up = upstream(Duration::from_secs(60), 2, Arc::default());
    let first = up.try_pool(route(0, 0)).unwrap();
    let second = up.try_pool(route(1, 0)).unwrap();
    assert!(Arc::ptr_eq(&first, &up.try_pool(route(0, 0)).unwrap()));
    match up.try_pool(route(2, 0)) {
        Err(UpstreamError::TooManyRoutes(2)) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a third route while two pools are held"),
    }
    let refused = up.pool(route(2, 0));
    let sent = refused.send(&Lane::default(), Bytes::new(), 1, None).await;
    assert!(matches!(sent, Err(UpstreamError::TooManyRoutes(2))));
    drop(second);
    let third = up.try_pool(route(2, 0)).unwrap();
    assert_eq!(up.routes(), 2);
    drop((first, third));
}

#[test]
fn handshake_errors_never_quote_the_password() {
    let c = creds("bob", "s3cret-upstream-pass");
    // A server without HELLO quotes the arguments, possibly only a prefix of the password.
    for reply in [
        &b"-ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'bob' 's3cret-upstream-pass' \r\n"[..],
        b"-ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'bob' 's3cret-up\r\n",
        b"-ERR something quoting s3cret-upstream-pass\r\n",
    ] {
        let shown = handshake::handshake_error(reply, Some(&c)).to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.starts_with("upstream unavailable (ERR "), "{shown}");
    }
    let shown =
        handshake::handshake_error(b"-WRONGPASS invalid username-password pair\r\n", Some(&c));
    assert_eq!(
        shown.to_string(),
        "upstream authentication failed (WRONGPASS invalid username-password pair)"
    );
    // Other refusals of the credentials, from Redis 5 and from a server without a password.
    for reply in [
        &b"-ERR invalid password\r\n"[..],
        b"-ERR Client sent AUTH, but no password is set\r\n",
        b"-ERR AUTH <password> called without any password configured for the default user.\r\n",
    ] {
        let e = handshake::handshake_error(reply, Some(&c));
        assert!(matches!(e, UpstreamError::AuthFailed(_)), "{e}");
    }
    // Without credentials, NOAUTH is the client's to answer, as Redis words it.
    let e = handshake::handshake_error(b"-NOAUTH Authentication required.\r\n", None);
    assert!(matches!(e, UpstreamError::Refused(_)), "{e}");
    assert_eq!(redact("ERR x", None), "ERR x");
    assert_eq!(
        c.redact("a s3cret-upstream-pass b"),
        "a *** b",
        "only the password goes"
    );
}

#[test]
fn the_first_connection_and_the_first_answer_after_an_outage_are_heard_as_reachable() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let into = heard.clone();
    let hook = Box::new(move |event| into.lock().push(event));
    let up = upstream_hearing(Duration::from_secs(60), 8, Default::default(), hook);
    assert!(!up.link_up(), "down until a connection is made");
    // The first connection: no connection was lost, yet the link came up.
    up.link.connected();
    assert!(up.link_up());
    assert_eq!(*heard.lock(), [LinkEvent::Reachable]);
    up.link.lost("test");
    assert!(!up.link_up());
    // An answer refusing the credentials: the upstream is reachable again.
    up.link.answered();
    assert!(up.link_up());
    up.link.connected();
    let all = [
        LinkEvent::Reachable,
        LinkEvent::Lost,
        LinkEvent::Reachable,
        LinkEvent::Up,
    ];
    assert_eq!(*heard.lock(), all);
}

/// A gate with tracking on, broadcast or per connection.
struct Tracking {
    broadcast: bool,
    redirect: tokio::sync::watch::Sender<gate::Redirect>,
}

impl gate::FillGate for Tracking {
    fn enabled(&self) -> bool {
        true
    }
    fn broadcast(&self) -> bool {
        self.broadcast
    }
    fn may_fill(&self, _: u64) -> bool {
        true
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<gate::Redirect> {
        self.redirect.subscribe()
    }
    fn redirect_broken(&self, _: i64) {}
    fn refused(&self, _: &[u8]) {}
}

/// With broadcast tracking a pooled connection turns no tracking on: its call is a PING whose
/// answer marks the control connection's epoch; per-connection tracking redirects.
#[test]
fn broadcast_tracking_marks_the_epoch_with_a_ping() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let redirect = gate::Redirect {
        epoch: 7,
        id: Some(42),
    };
    for (broadcast, sent, answer) in [
        (true, &b"*1\r\n$4\r\nPING\r\n"[..], &b"+PONG\r\n"[..]),
        (
            false,
            b"*6\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n$8\r\nREDIRECT\r\n$2\r\n42\r\n$6\r\nOPTOUT\r\n",
            b"+OK\r\n",
        ),
    ] {
        let gate: Arc<dyn gate::FillGate> = Arc::new(Tracking {
            broadcast,
            redirect: tokio::sync::watch::Sender::new(redirect),
        });
        let epoch = Arc::new(AtomicU64::new(gate::NO_EPOCH));
        let call = conn::tracking_call(redirect, &epoch, &gate).expect("a call");
        assert_eq!(&call.bytes[..], sent, "broadcast {broadcast}");
        (call.on_reply.expect("a reply hook"))(&[Bytes::from_static(answer)], None);
        assert_eq!(epoch.load(SeqCst), 7, "broadcast {broadcast}");
    }
    let down = gate::Redirect { epoch: 8, id: None };
    let gate: Arc<dyn gate::FillGate> = Arc::new(Tracking {
        broadcast: true,
        redirect: tokio::sync::watch::Sender::new(down),
    });
    let epoch = Arc::new(AtomicU64::new(gate::NO_EPOCH));
    assert!(
        conn::tracking_call(down, &epoch, &gate).is_none(),
        "no control connection"
    );
}
