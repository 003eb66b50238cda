//! Clean-up: closes upstream the sessions that no client has used for `sessions.disconnected_grace`
//! after their last connection closed (a proxy that keeps upstream connections open hides client
//! disconnects from impalad, so it must do impalad's `--disconnected_session_timeout` itself), and
//! closes idle upstream connections. Runs every `sessions.reap_interval` until the proxy stops.
//!
//! A session is closed on an idle upstream connection of its user (the proxy keeps no client's
//! password, so it cannot open one). When every such connection is busy, the session waits for a later
//! round, up to [`CLOSE_ROUNDS`]; only then is it forgotten and left to the server. Forgetting it at
//! once would leak it on impalad: the busy connections stay open in the pool, so impalad never sees
//! the session disconnected and never expires it.

use std::collections::HashMap;
use std::time::Instant;

use super::stopped;
use crate::backend::pool::Checkout;
use crate::backend::probe;
use crate::config::BackendTransport;
use crate::hs2::handle::Guid;
use crate::hs2::requests;
use crate::proxy::Proxy;
use crate::routing::SessionEntry;

/// Rounds an abandoned session waits for an idle connection of its user before it is left to the
/// server (with the default interval, 10 minutes).
pub const CLOSE_ROUNDS: u32 = 20;

pub fn spawn(proxy: &Proxy) {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(proxy.config().sessions.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = proxy.stop_signal();
        // Rounds each abandoned session has waited for a connection to be closed on; owned by this task.
        let mut waiting = HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => clean_up(&proxy, &mut waiting).await,
                _ = stopped(&mut stop) => return,
            }
        }
    });
}

/// One round of clean-up; `waiting` counts the rounds sessions have waited for a connection.
pub async fn clean_up(proxy: &Proxy, waiting: &mut HashMap<Guid, u32>) {
    let now = Instant::now();
    let abandoned = proxy.abandoned(now);
    // A session used again (or gone) since starts over if it is abandoned again.
    waiting.retain(|g, _| abandoned.contains(g));
    for guid in abandoned {
        let up = idle_connection(proxy, &guid);
        if up.is_none() {
            let rounds = waiting.entry(guid).or_insert(0);
            *rounds += 1;
            if *rounds < CLOSE_ROUNDS {
                tracing::debug!(session = %guid, rounds = *rounds, "every upstream connection of its user is busy: closing it later");
                continue;
            }
        }
        waiting.remove(&guid);
        let Some(entry) = proxy.forget_session(&guid) else { continue };
        tracing::info!(session = %guid, user = ?entry.users.user, effective_user = ?entry.users.effective_user,
            "no client used the session within the grace period: closing it upstream");
        match up {
            Some(up) => close_on(proxy, up, &entry, guid).await,
            None => tracing::info!(session = %guid,
                "no idle upstream connection to close the session on; the server will expire it"),
        }
    }
    for b in proxy.backends() {
        let closed = b.pool.close_idle(now);
        if closed > 0 {
            tracing::debug!(backend = %b.addr, closed, "closed idle upstream connections");
        }
    }
}

/// An idle upstream connection of the session's user on its backend, if there is one now.
fn idle_connection(proxy: &Proxy, guid: &Guid) -> Option<Checkout> {
    let (backend, owner) = proxy.with_session(guid, |e| (e.backend, e.users.owner.clone()))?;
    let backend = proxy.backend(backend)?;
    let user = match proxy.config().backend_auth.transport {
        BackendTransport::Nosasl => None,
        BackendTransport::Sasl => Some(owner.unwrap_or_else(|| proxy.config().backend_auth.service.user.clone())),
    };
    backend.pool.checkout_idle_of(user.as_deref())
}

/// CloseSession on `up`.
async fn close_on(proxy: &Proxy, mut up: Checkout, entry: &SessionEntry, guid: Guid) {
    let call = requests::close_session(&entry.handle(guid), 0);
    let exchange = probe::call(up.conn(), &call);
    // Only a complete exchange leaves the connection in step; anything else drops (closes) it.
    if let Ok(Ok(_)) = tokio::time::timeout(proxy.config().pool.connect_timeout, exchange).await {
        up.release();
    }
}
