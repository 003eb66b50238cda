//! Finding the owner of a handle the proxy does not know: after a proxy restart, or for a session opened
//! through another proxy instance. Every serving backend is asked at once, with a call that changes no
//! state where the server allows it (`backend::probe::holds_session`), and the whole lookup is bounded
//! by `timeouts.recovery`, so one hung backend cannot hang calls.
//!
//! A misroute must be impossible, not unlikely: a handle that two backends claim is treated as unknown
//! (one of them is answering for handles it does not hold), and a backend whose kind is not known yet is
//! asked with the call that checks the handle on every kind of server.
//!
//! A handle that every backend answered "no" for is remembered for a while (`misses`), so that a client
//! retrying a stale handle does not make the proxy ask every backend on every call.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::backend::pool::{Checkout, Credentials};
use crate::backend::{probe, Backend};
use crate::hs2::call::Request;
use crate::hs2::handle::HandleId;
use crate::identity::Caller;
use crate::proxy::Proxy;
use crate::routing::{BackendId, Learned, NewSession, Route, SessionUsers};

/// What the lookup is for.
#[derive(Clone, Copy)]
enum Wanted {
    Session(HandleId),
    /// With the client's `operationType`: Hive and Spark find an operation only under its own type.
    Operation(HandleId, Option<i32>),
}

impl Wanted {
    fn handle(&self) -> &HandleId {
        match self {
            Wanted::Session(h) | Wanted::Operation(h, _) => h,
        }
    }
}

/// One backend's answer: it holds the handle (the connection that asked, to pin), it does not, or it
/// could not say.
enum Answer {
    Holds(Checkout),
    Not,
    Failed(String),
}

/// Where `req` goes when its handle is unknown here: the backend that holds it, now learned.
pub async fn find(proxy: &Proxy, req: &Request, caller: &Caller) -> Option<Route> {
    if let Some(s) = req.session {
        let backend = owner(proxy, Wanted::Session(s), caller).await?;
        return Some(Route::Pinned { backend, session: Some(s.guid), upstream: None, orphaned: false });
    }
    let op = req.operation?;
    let backend = owner(proxy, Wanted::Operation(op, req.operation_type), caller).await?;
    Some(Route::Pinned { backend, session: None, upstream: None, orphaned: false })
}

async fn owner(proxy: &Proxy, wanted: Wanted, caller: &Caller) -> Option<BackendId> {
    let guid = wanted.handle().guid;
    let now = Instant::now();
    if proxy.misses().recently_missed(&guid, now) {
        return None;
    }
    let serving: Vec<Arc<Backend>> = proxy.backends().into_iter().filter(|b| b.serving()).collect();
    let asked = serving.len();
    let mut asking = JoinSet::new();
    for backend in serving {
        let creds = caller.creds.clone();
        asking.spawn(async move {
            let answer = ask(&backend, wanted, &creds).await;
            (backend, answer)
        });
    }
    let deadline = proxy.config().timeouts.recovery;
    let mut claims: Vec<(Arc<Backend>, Checkout)> = Vec::new();
    let mut answered = 0;
    let collect = async {
        while let Some(joined) = asking.join_next().await {
            let Ok((backend, answer)) = joined else { continue };
            answered += 1;
            match answer {
                Answer::Holds(conn) => claims.push((backend, conn)),
                Answer::Not => {}
                Answer::Failed(e) => tracing::debug!(backend = %backend.addr, error = %e, "handle lookup failed"),
            }
        }
    };
    let complete = tokio::time::timeout(deadline, collect).await.is_ok();
    // Lookups still running are abandoned here; their connections close (their state is unknown).
    drop(asking);
    decide(proxy, wanted, caller, claims, complete && answered == asked, now)
}

/// Learns the owner when exactly one backend claims the handle.
fn decide(
    proxy: &Proxy,
    wanted: Wanted,
    caller: &Caller,
    mut claims: Vec<(Arc<Backend>, Checkout)>,
    everyone_answered: bool,
    now: Instant,
) -> Option<BackendId> {
    let guid = wanted.handle().guid;
    if claims.len() > 1 {
        let who: Vec<&str> = claims.iter().map(|(b, _)| b.addr.as_str()).collect();
        tracing::warn!(handle = %guid, backends = ?who,
            "several backends claim the same handle: treated as unknown (a server that does not check handles?)");
        proxy.metrics().lookup("ambiguous");
        claims.into_iter().for_each(|(_, conn)| conn.release());
        return None;
    }
    let Some((backend, conn)) = claims.pop() else {
        // Only a lookup every backend answered proves the handle is nowhere.
        if everyone_answered {
            proxy.misses().remember(guid, now);
            proxy.metrics().lookup("missed");
        } else {
            proxy.metrics().lookup("timed_out");
        }
        return None;
    };
    match wanted {
        Wanted::Session(handle) => {
            let users =
                SessionUsers { owner: caller.identity.clone(), user: caller.identity.clone(), effective_user: None };
            proxy.learn_session(NewSession {
                handle,
                backend: backend.id,
                users,
                // The proxy never saw its OpenSession: it cannot be re-opened elsewhere.
                origin: None,
                carrier: backend.pool.key_for(&caller.creds).user,
                conn: Some(conn.id()),
                learned: Learned::Recovered,
                client: None,
                rule: None,
            });
            tracing::info!(session = %guid, backend = %backend.addr, "session owner found by asking the backends");
        }
        Wanted::Operation(handle, _) => {
            proxy.learn_orphan_operation(handle, backend.id);
            tracing::info!(operation = %guid, backend = %backend.addr, "operation owner found by asking the backends");
        }
    }
    proxy.metrics().lookup("found");
    conn.release();
    Some(backend.id)
}

/// Asks one backend, on a pooled connection of the caller's credentials.
async fn ask(backend: &Backend, wanted: Wanted, creds: &Credentials) -> Answer {
    let mut conn = match backend.pool.checkout(creds).await {
        Ok(c) => c,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let held = match wanted {
        Wanted::Session(s) => probe::holds_session(conn.conn(), &s, backend.kind()).await,
        Wanted::Operation(op, ty) => probe::holds_operation(conn.conn(), &op, ty).await,
    };
    match held {
        Ok(true) => Answer::Holds(conn),
        Ok(false) => {
            conn.release();
            Answer::Not
        }
        // The connection's state is unknown: dropping the checkout closes it.
        Err(e) => Answer::Failed(e),
    }
}
