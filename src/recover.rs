//! Finding the owner of a handle the proxy does not know: after a proxy restart, or for a session
//! opened through another proxy instance. Each serving backend is asked, with a call that changes no
//! state where the server allows it (see `backend::probe::holds_session`); the owner is remembered.
//!
//! A handle nobody holds is remembered too, for a while, so that a client retrying a stale handle does
//! not make the proxy ask every backend on every call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::backend::pool::Credentials;
use crate::backend::probe;
use crate::backend::Backend;
use crate::hs2::handle::{Guid, HandleId};
use crate::server::Proxy;

/// How long "no backend holds this handle" is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Remembered negative answers at most; the cache is cleared when full (it only saves work).
const NEGATIVE_MAX: usize = 10_000;

#[derive(Default)]
pub struct NegativeCache {
    misses: DashMap<Guid, Instant>,
}

impl NegativeCache {
    fn recently_missed(&self, guid: &Guid, now: Instant) -> bool {
        self.misses.get(guid).is_some_and(|t| now.duration_since(*t) < NEGATIVE_TTL)
    }

    fn remember(&self, guid: Guid, now: Instant) {
        if self.misses.len() >= NEGATIVE_MAX {
            self.misses.clear();
        }
        self.misses.insert(guid, now);
    }
}

/// Which backend holds `session`, asking each serving backend with the caller's credentials. On a hit
/// the session is learned (owned by `user`) and its backend returned.
pub async fn session_owner(
    proxy: &Proxy,
    session: &HandleId,
    creds: &Credentials,
    user: Option<&str>,
) -> Option<Arc<Backend>> {
    let now = Instant::now();
    if proxy.negative.recently_missed(&session.guid, now) {
        return None;
    }
    for backend in proxy.backends.all().into_iter().filter(|b| b.serving()) {
        let Ok(mut up) = backend.pool.checkout(creds).await else { continue };
        match probe::holds_session(&mut up, session, backend.kind).await {
            Ok(true) => {
                let conn = up.id;
                backend.pool.checkin(up);
                proxy.routes.learn_session(*session, backend.clone(), user.map(str::to_string), conn);
                tracing::info!(session = %session.guid, backend = %backend.addr, "session owner found by asking the backends");
                return Some(backend);
            }
            Ok(false) => backend.pool.checkin(up),
            Err(e) => {
                tracing::debug!(backend = %backend.addr, error = %e, "session lookup failed");
                backend.pool.discard(up);
            }
        }
    }
    proxy.negative.remember(session.guid, now);
    None
}

/// Which backend holds `operation` (GetOperationStatus); on a hit the operation is learned.
pub async fn operation_owner(proxy: &Proxy, operation: &HandleId, creds: &Credentials) -> Option<Arc<Backend>> {
    let now = Instant::now();
    if proxy.negative.recently_missed(&operation.guid, now) {
        return None;
    }
    for backend in proxy.backends.all().into_iter().filter(|b| b.serving()) {
        let Ok(mut up) = backend.pool.checkout(creds).await else { continue };
        match probe::holds_operation(&mut up, operation).await {
            Ok(true) => {
                backend.pool.checkin(up);
                proxy.routes.learn_orphan_operation(operation.guid, backend.clone());
                tracing::info!(operation = %operation.guid, backend = %backend.addr, "operation owner found by asking the backends");
                return Some(backend);
            }
            Ok(false) => backend.pool.checkin(up),
            Err(_) => backend.pool.discard(up),
        }
    }
    proxy.negative.remember(operation.guid, now);
    None
}
