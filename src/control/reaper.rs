//! Clean-up: closes upstream the sessions that no client has used for `sessions.disconnected_grace`
//! after their last connection closed (a proxy that keeps upstream connections open hides client
//! disconnects from impalad, so it must do impalad's `--disconnected_session_timeout` itself), and
//! closes idle upstream connections. Runs every `sessions.reap_interval` until the proxy stops.

use std::time::Instant;

use super::stopped;
use crate::backend::probe;
use crate::hs2::handle::Guid;
use crate::hs2::requests;
use crate::proxy::Proxy;
use crate::routing::SessionEntry;

pub fn spawn(proxy: &Proxy) {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(proxy.config().sessions.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = proxy.stop_signal();
        loop {
            tokio::select! {
                _ = tick.tick() => clean_up(&proxy).await,
                _ = stopped(&mut stop) => return,
            }
        }
    });
}

/// One round of clean-up.
pub async fn clean_up(proxy: &Proxy) {
    let now = Instant::now();
    for guid in proxy.abandoned(now) {
        if let Some(entry) = proxy.forget_session(&guid) {
            tracing::info!(session = %guid, user = ?entry.users.user, effective_user = ?entry.users.effective_user,
                "no client used the session within the grace period: closing it upstream");
            close_upstream(proxy, &entry, guid).await;
        }
    }
    for b in proxy.backends() {
        let closed = b.pool.close_idle(now);
        if closed > 0 {
            tracing::debug!(backend = %b.addr, closed, "closed idle upstream connections");
        }
    }
}

/// CloseSession on an idle connection of the session's user; without one, impalad expires the session
/// by itself (`--disconnected_session_timeout`).
async fn close_upstream(proxy: &Proxy, entry: &SessionEntry, guid: Guid) {
    let Some(backend) = proxy.backend(entry.backend) else { return };
    let Some(mut up) = backend.pool.checkout_idle_of(entry.carrier.as_deref()) else {
        tracing::info!(session = %guid, "no idle upstream connection to close the session on; the server will expire it");
        return;
    };
    let call = requests::close_session(&entry.handle(guid), 0);
    let exchange = probe::call(up.conn(), &call);
    // Only a complete exchange leaves the connection in step; anything else drops (closes) it.
    if let Ok(Ok(_)) = tokio::time::timeout(proxy.config().pool.connect_timeout, exchange).await {
        up.release();
    }
}
