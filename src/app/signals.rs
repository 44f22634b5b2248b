//! The signals the app answers: SIGTERM and SIGINT stop it, SIGHUP reloads the configuration.

use super::reload::Reloader;

/// SIGTERM, SIGINT and SIGHUP, listened to from start-up on.
pub(super) struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }
}

/// Returns on SIGTERM or SIGINT; reloads the configuration on each SIGHUP.
pub(super) async fn wait(signals: Signals, reloader: &mut Reloader) {
    let Signals {
        term: Some(mut term),
        int: Some(mut int),
        hup,
    } = signals
    else {
        return std::future::pending().await;
    };
    let mut hup = hup;
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hangup => reloader.reload(),
        }
    }
}
