//! Clean-up, every `sessions.reap_interval` until the proxy stops: sessions that no client of this
//! instance has used for `sessions.disconnected_grace` after their last connection closed are judged by
//! [`super::cleanup`] (closed upstream only on the backend's word that nobody used them, through any
//! instance), and idle upstream connections are closed.
//!
//! A proxy that keeps upstream connections open hides client disconnects from impalad, so it must do
//! impalad's `--disconnected_session_timeout` itself; with several instances, only the backend knows
//! whether a session is really unused. The backend is asked once per round per backend
//! (`/sessions?json` on the web port of `metrics_url`), bounded by `health.timeout`.
//!
//! A session is closed on an idle upstream connection of its user (the proxy keeps no client's password,
//! so it cannot open one). When every such connection is busy, the session waits for a later round, up
//! to [`CLOSE_ROUNDS`]; only then is it forgotten and left to the server. Forgetting it at once would
//! leak it on impalad: the busy connections stay open in the pool, so impalad never sees the session
//! disconnected and never expires it (found by the soak).

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::cleanup::{self, ServerWord, Verdict};
use super::stopped;
use crate::backend::impalad_metrics::{self, SessionActivity};
use crate::backend::pool::Checkout;
use crate::backend::{probe, Backend};
use crate::hs2::handle::Guid;
use crate::hs2::reply::Answer;
use crate::hs2::requests;
use crate::proxy::Proxy;
use crate::routing::{BackendId, SessionEntry};

/// Rounds an abandoned session waits for an idle connection of its user before it is left to the
/// server (with the default interval, 10 minutes).
pub const CLOSE_ROUNDS: u32 = 20;

/// Rounds each abandoned session has waited for a connection to be closed on; owned by the reaper task.
pub type Waiting = HashMap<Guid, u32>;

pub fn spawn(proxy: &Proxy) {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(proxy.config().sessions.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = proxy.stop_signal();
        let mut waiting = Waiting::new();
        loop {
            tokio::select! {
                _ = tick.tick() => clean_up(&proxy, &mut waiting).await,
                _ = stopped(&mut stop) => return,
            }
        }
    });
}

/// One round of clean-up; `waiting` counts the rounds sessions have waited for a connection.
pub async fn clean_up(proxy: &Proxy, waiting: &mut Waiting) {
    let mut by_backend: HashMap<BackendId, Vec<Guid>> = HashMap::new();
    let abandoned = proxy.abandoned(Instant::now());
    // A session used again (or gone) since starts over if it is abandoned again.
    waiting.retain(|g, _| abandoned.contains(g));
    for guid in abandoned {
        if let Some(b) = proxy.with_session(&guid, |e| e.backend) {
            by_backend.entry(b).or_default().push(guid);
        }
    }
    for (id, guids) in by_backend {
        match proxy.backend(id) {
            Some(backend) => judge(proxy, &backend, guids, waiting).await,
            // Its backend left the list: there is nothing upstream to close through this instance.
            None => guids.iter().for_each(|g| drop(proxy.forget_session(g))),
        }
    }
    let now = Instant::now();
    for b in proxy.backends() {
        let closed = b.pool.close_idle(now);
        if closed > 0 {
            tracing::debug!(backend = %b.addr, closed, "closed idle upstream connections");
        }
    }
}

/// Asks `backend` about its abandoned sessions (one page for all) and applies the rule to each.
async fn judge(proxy: &Proxy, backend: &Backend, guids: Vec<Guid>, waiting: &mut Waiting) {
    let page = match &backend.metrics_url {
        Some(url) => match impalad_metrics::sessions(url, proxy.config().health.timeout).await {
            Ok(page) => Some(page),
            Err(e) => {
                // They stay abandoned and are judged again next round.
                tracing::warn!(backend = %backend.addr, error = %e,
                    "cannot read the impalad's sessions: its sessions are left alone this round");
                return;
            }
        },
        None => None,
    };
    let now = Instant::now();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let grace = proxy.config().sessions.disconnected_grace;
    // A client may have come back while the page was read.
    let still: HashSet<Guid> = proxy.abandoned(now).into_iter().collect();
    for guid in guids.into_iter().filter(|g| still.contains(g)) {
        // A moved session is known to its backend by its handle there, not by the client's.
        let upstream = proxy.with_session(&guid, |e| e.upstream_handle(guid).guid).unwrap_or(guid);
        let word = page.as_ref().map_or(ServerWord::NoWord, |p| cleanup::word(p.get(&upstream), now_ms));
        let verdict = cleanup::verdict(backend.kind(), word, grace);
        let seen = page.as_ref().and_then(|p| p.get(&upstream));
        let done = apply(proxy, backend, guid, verdict, seen, now, waiting).await;
        proxy.metrics().cleanup(done.label());
    }
}

/// Applies `verdict`; returns what was done (a close that found the session gone, e.g. closed by another
/// instance in the same round, is `Gone`).
async fn apply(
    proxy: &Proxy,
    backend: &Backend,
    guid: Guid,
    verdict: Verdict,
    seen: Option<&SessionActivity>,
    now: Instant,
    waiting: &mut Waiting,
) -> Verdict {
    match verdict {
        Verdict::Close => {
            let carrier = proxy.with_session(&guid, |e| e.carrier.clone()).flatten();
            let Some(up) = backend.pool.checkout_idle_of(carrier.as_deref()) else {
                let rounds = waiting.entry(guid).or_insert(0);
                *rounds += 1;
                if *rounds < CLOSE_ROUNDS {
                    tracing::debug!(session = %guid, rounds = *rounds,
                        "every upstream connection of its user is busy: closing it later");
                    return Verdict::Waiting;
                }
                waiting.remove(&guid);
                if proxy.forget_session(&guid).is_some() {
                    tracing::info!(session = %guid, backend = %backend.addr, rounds = CLOSE_ROUNDS,
                        "no idle upstream connection to close the session on: forgotten, left to the server");
                }
                return Verdict::LeaveToServer;
            };
            waiting.remove(&guid);
            let Some(entry) = proxy.forget_session(&guid) else { return Verdict::Gone };
            tracing::info!(session = %guid, backend = %backend.addr, user = %crate::routing::LogName(entry.users.user.as_deref()),
                effective_user = %crate::routing::LogName(entry.users.effective_user.as_deref()),
                "nobody used the session within the grace period (the backend confirms): closing it upstream");
            if close_on(proxy, up, &entry, guid).await == Some(false) {
                return Verdict::Gone;
            }
        }
        Verdict::InUseElsewhere { recheck_in } => {
            tracing::info!(session = %guid, backend = %backend.addr, last_accessed_ms = ?seen.map(|s| s.last_accessed_ms),
                "no client of this instance used the session, but another connection did (another instance?): kept");
            proxy.defer_cleanup(&guid, recheck_in, now);
        }
        Verdict::Gone => {
            if proxy.forget_session(&guid).is_some() {
                tracing::info!(session = %guid, backend = %backend.addr, "the backend no longer has the session: forgotten");
            }
        }
        Verdict::LeaveToServer => {
            if proxy.forget_session(&guid).is_some() {
                tracing::info!(session = %guid, backend = %backend.addr,
                    "no client used the session within the grace period, and the backend cannot say whether \
                     another instance did (no metrics_url): forgotten here, left to impalad's own timeouts");
            }
        }
        // Not a verdict `cleanup::verdict` gives; only `Close` above ends in it.
        Verdict::Waiting => {}
        Verdict::Keep => {
            tracing::debug!(session = %guid, backend = %backend.addr, kind = ?backend.kind(),
                "unused here, but forgetting would close it with its pinned connection: kept");
            let grace = proxy.config().sessions.disconnected_grace;
            proxy.defer_cleanup(&guid, grace, now);
        }
    }
    verdict
}

/// CloseSession on `up`, an idle connection of the session's user. `Some(true)`: closed; `Some(false)`:
/// the backend had no such session any more; `None`: no answer.
async fn close_on(proxy: &Proxy, mut up: Checkout, entry: &SessionEntry, guid: Guid) -> Option<bool> {
    // The backend's handle: a moved session has another there than the client's (found by the soak: a
    // moved session was looked up and closed by the client's handle, taken for gone and left open).
    let call = requests::close_session(&entry.upstream_handle(guid), 0);
    let exchange = probe::call(up.conn(), &call);
    // Only a complete exchange leaves the connection in step; anything else drops (closes) it.
    let Ok(Ok(answer)) = tokio::time::timeout(proxy.config().pool.connect_timeout, exchange).await else {
        return None;
    };
    up.release();
    Some(matches!(answer, Answer::Ok(_)))
}
