//! The session and operation tables: which backend holds each handle. No I/O.
//!
//! Entries are learned from replies (a new session from OpenSession, a new operation from
//! ExecuteStatement and the metadata calls) and forgotten on a successful Close*, on errors that say
//! the server no longer has them, and when no client has used a session for the grace period. Every
//! removal goes through [`Routes::forget_session`] or [`Routes::forget_operation`], which keep the
//! per-backend counts and pool pins right.
//!
//! `DashMap` because every client connection task reads these tables on every call; no `Ref` is ever
//! held across an `.await` (callers copy what they need out).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

use crate::backend::Backend;
use crate::hs2::call::Request;
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::reply;

/// Error texts that mean the server no longer has the session (Impala's, Hive's, Spark's).
pub const SESSION_GONE: &[&str] = &[
    "Invalid session id",
    "Session is closed",
    "Client session expired",
    "Invalid SessionHandle",
    "Session does not exist",
];
/// Error texts that mean the server no longer has the operation.
const OPERATION_GONE: &[&str] = &["Invalid or unknown query handle", "Invalid query handle", "Invalid OperationHandle"];
/// A session's statement is kept to this many characters, for the operator view.
pub const STATEMENT_CHARS: usize = 200;
/// Client addresses remembered per session: a session used from more connections shows the first ones
/// (and the count in `attached`).
const MAX_CLIENT_ADDRS: usize = 16;

pub struct SessionEntry {
    pub backend: Arc<Backend>,
    secret: Secret,
    /// The SASL user that opened it; `None` on unauthenticated connections.
    pub user: Option<String>,
    /// The upstream connection that carried OpenSession, pinned while the session lives.
    pub pinned_conn: u64,
    pub opened_at: SystemTime,
    pub last_used: Instant,
    /// Client connections that have used the session and are still open.
    pub attached: u32,
    /// When `attached` last dropped to zero.
    pub detached_since: Option<Instant>,
    pub operations: HashSet<Guid>,
    /// The last statement run (truncated), for the operator view.
    pub last_statement: Option<String>,
    /// The operation that statement opened: while it is open, the statement is running.
    pub statement_op: Option<Guid>,
    /// Addresses of the client connections attached now (at most [`MAX_CLIENT_ADDRS`]).
    pub clients: Vec<SocketAddr>,
}

impl SessionEntry {
    /// The secret, for the proxy's own calls on the session (clean-up). Never logged.
    pub fn handle(&self, guid: Guid) -> HandleId {
        HandleId { guid, secret: self.secret }
    }
}

#[derive(Clone)]
pub struct OperationEntry {
    /// `None` for an operation found by asking the backends, whose session the proxy does not know.
    pub session: Option<Guid>,
    pub backend: Arc<Backend>,
    /// The operation's own secret when the proxy saw it (Hive gives operations their own; Impala's
    /// equal their session's). Never logged.
    secret: Option<Secret>,
}

/// What the operator view shows of a session: never its secret.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: Guid,
    pub backend: String,
    pub user: Option<String>,
    pub clients: Vec<SocketAddr>,
    pub attached: u32,
    pub opened_at: SystemTime,
    /// How long ago a call last used the session.
    pub idle: Duration,
    pub operations: Vec<Guid>,
    pub last_statement: Option<String>,
    /// True while the operation of `last_statement` is open.
    pub statement_running: bool,
}

/// Where the proxy's own call on an operation goes (the operator's cancel).
pub struct OperationTarget {
    pub backend: Arc<Backend>,
    /// The handle to send; `None` when the proxy knows neither its secret nor its session's.
    pub handle: Option<HandleId>,
    /// The user of its session (whose upstream connections may carry the call).
    pub user: Option<String>,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// OpenSession: the balancer chooses.
    NewSession,
    /// A handle the proxy knows. `session` is `None` for an operation recovered without its session.
    Pinned { backend: Arc<Backend>, session: Option<Guid> },
    /// No handle to route by (an unknown method): any backend will do.
    Anywhere,
    /// The proxy cannot route it; the client gets an error reply.
    Reject(Reject),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    UnknownSession(Guid),
    UnknownOperation(Guid),
    /// Another user's session: answered like an unknown session, and logged.
    WrongUser {
        session: Guid,
        owner: Option<String>,
        caller: Option<String>,
    },
}

impl Reject {
    /// The text the client sees: Impala's own, so that Hue heals itself.
    pub fn client_text(&self) -> String {
        match self {
            Reject::UnknownSession(g) | Reject::WrongUser { session: g, .. } => reply::invalid_session_text(g),
            Reject::UnknownOperation(g) => reply::invalid_query_text(g),
        }
    }
}

#[derive(Default)]
pub struct Routes {
    sessions: DashMap<Guid, SessionEntry>,
    operations: DashMap<Guid, OperationEntry>,
    /// Session secret -> session guid: Impala gives an operation its session's secret, which finds the
    /// session of an operation the proxy never saw (opened through another proxy, or before a restart).
    by_secret: DashMap<[u8; 16], Guid>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Decides where `req` goes for a client authenticated as `caller`.
    pub fn route(&self, req: &Request, caller: Option<&str>) -> Route {
        if req.name() == "OpenSession" {
            return Route::NewSession;
        }
        if let Some(s) = req.session {
            return self.route_session(&s, caller);
        }
        if let Some(op) = req.operation {
            let known = self.operations.get(&op.guid).map(|o| (o.session, o.backend.clone()));
            if let Some((None, backend)) = known {
                return Route::Pinned { backend, session: None };
            }
            let owner = known.and_then(|(s, _)| s);
            let session = owner.or_else(|| self.by_secret.get(&op.secret.0).map(|g| *g));
            return match session.and_then(|g| self.sessions.get(&g).map(|e| e.handle(g))) {
                Some(handle) => self.route_session(&handle, caller),
                None => Route::Reject(Reject::UnknownOperation(op.guid)),
            };
        }
        Route::Anywhere
    }

    fn route_session(&self, s: &HandleId, caller: Option<&str>) -> Route {
        let Some(entry) = self.sessions.get(&s.guid) else {
            return Route::Reject(Reject::UnknownSession(s.guid));
        };
        if entry.secret != s.secret {
            return Route::Reject(Reject::UnknownSession(s.guid));
        }
        if entry.user.as_deref() != caller {
            let owner = entry.user.clone();
            return Route::Reject(Reject::WrongUser { session: s.guid, owner, caller: caller.map(str::to_string) });
        }
        Route::Pinned { backend: entry.backend.clone(), session: Some(s.guid) }
    }

    /// Records a session the backend just opened; the opening client connection is attached.
    pub fn learn_session(&self, id: HandleId, backend: Arc<Backend>, user: Option<String>, pinned_conn: u64) {
        backend.sessions.fetch_add(1, Ordering::Relaxed);
        backend.pool.pin(pinned_conn);
        let now = Instant::now();
        let entry = SessionEntry {
            backend,
            secret: id.secret,
            user,
            pinned_conn,
            opened_at: SystemTime::now(),
            last_used: now,
            attached: 1,
            detached_since: None,
            operations: HashSet::new(),
            last_statement: None,
            statement_op: None,
            clients: Vec::new(),
        };
        self.by_secret.insert(id.secret.0, id.guid);
        if let Some(old) = self.sessions.insert(id.guid, entry) {
            // A guid collision is astronomically unlikely; keep the counts right anyway.
            release(&old);
        }
    }

    /// Records an operation created in `session`.
    pub fn learn_operation(&self, op: Guid, session: Guid) {
        let Some(mut entry) = self.sessions.get_mut(&session) else { return };
        if !entry.operations.insert(op) {
            return;
        }
        let backend = entry.backend.clone();
        drop(entry);
        backend.operations.fetch_add(1, Ordering::Relaxed);
        self.operations.insert(op, OperationEntry { session: Some(session), backend, secret: None });
    }

    /// Records an operation created in `session` with its secret, and the statement that created it.
    pub fn learn_operation_handle(&self, op: HandleId, session: Guid, statement: Option<&str>) {
        self.learn_operation(op.guid, session);
        if let Some(mut o) = self.operations.get_mut(&op.guid) {
            o.secret = Some(op.secret);
        }
        if let (Some(text), Some(mut e)) = (statement, self.sessions.get_mut(&session)) {
            e.last_statement = Some(text.chars().take(STATEMENT_CHARS).collect());
            e.statement_op = Some(op.guid);
        }
    }

    /// Records an operation a backend said it holds, whose session the proxy does not know.
    pub fn learn_orphan_operation(&self, op: Guid, backend: Arc<Backend>) {
        backend.operations.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.operations.insert(op, OperationEntry { session: None, backend, secret: None }) {
            old.backend.operations.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets a session and its operations; returns it when it was known.
    pub fn forget_session(&self, guid: &Guid) -> Option<SessionEntry> {
        let (_, entry) = self.sessions.remove(guid)?;
        for op in &entry.operations {
            if self.operations.remove(op).is_some() {
                entry.backend.operations.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.by_secret.remove_if(&entry.secret.0, |_, g| g == guid);
        release(&entry);
        Some(entry)
    }

    pub fn forget_operation(&self, op: &Guid) {
        if let Some((_, o)) = self.operations.remove(op) {
            o.backend.operations.fetch_sub(1, Ordering::Relaxed);
            if let Some(mut s) = o.session.and_then(|g| self.sessions.get_mut(&g)) {
                s.operations.remove(op);
            }
        }
    }

    /// Forgets every session and operation on backend `id` (it went down); returns each dropped session
    /// with its user (for the log).
    pub fn forget_backend_sessions(&self, id: u64) -> Vec<(Guid, Option<String>)> {
        let doomed: Vec<Guid> = self.sessions.iter().filter(|e| e.backend.id == id).map(|e| *e.key()).collect();
        let orphans: Vec<Guid> =
            self.operations.iter().filter(|o| o.session.is_none() && o.backend.id == id).map(|o| *o.key()).collect();
        orphans.iter().for_each(|op| self.forget_operation(op));
        doomed.iter().filter_map(|g| self.forget_session(g).map(|e| (*g, e.user))).collect()
    }

    /// Marks that a client connection uses `session` (once per connection).
    pub fn attach(&self, session: &Guid) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            e.attached += 1;
            e.detached_since = None;
        }
    }

    /// A client connection that used `session` closed.
    pub fn detach(&self, session: &Guid, now: Instant) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            e.attached = e.attached.saturating_sub(1);
            if e.attached == 0 {
                e.detached_since = Some(now);
            }
        }
    }

    /// Remembers that a client connection from `peer` uses `session` (call once per connection).
    pub fn note_client(&self, session: &Guid, peer: SocketAddr) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            if e.clients.len() < MAX_CLIENT_ADDRS {
                e.clients.push(peer);
            }
        }
    }

    /// The connection from `peer` that used `session` closed.
    pub fn drop_client(&self, session: &Guid, peer: SocketAddr) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            if let Some(i) = e.clients.iter().position(|c| *c == peer) {
                e.clients.swap_remove(i);
            }
        }
    }

    /// Notes a call on `session`, with the statement when it is one.
    pub fn touch(&self, session: &Guid, statement: Option<&str>) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            e.last_used = Instant::now();
            if let Some(s) = statement {
                e.last_statement = Some(s.chars().take(200).collect());
            }
        }
    }

    /// Sessions no client connection has used for `grace` after the last one closed.
    pub fn abandoned(&self, now: Instant, grace: std::time::Duration) -> Vec<Guid> {
        self.sessions
            .iter()
            .filter(|e| e.attached == 0 && e.detached_since.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|e| *e.key())
            .collect()
    }

    /// Applies an error text from a backend: drops what the server says it no longer has.
    /// Returns true when something was dropped.
    pub fn forget_on_error(&self, req: &Request, error: &str) -> bool {
        if SESSION_GONE.iter().any(|p| error.contains(p)) {
            let session = req.session.map(|s| s.guid).or_else(|| {
                let op = req.operation?;
                self.operations.get(&op.guid).and_then(|o| o.session)
            });
            if let Some(g) = session {
                return self.forget_session(&g).is_some();
            }
        }
        if OPERATION_GONE.iter().any(|p| error.contains(p)) {
            if let Some(op) = req.operation {
                let known = self.operations.contains_key(&op.guid);
                self.forget_operation(&op.guid);
                return known;
            }
        }
        false
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// Runs `f` on a session entry (for the operator view and tests).
    pub fn with_session<T>(&self, guid: &Guid, f: impl FnOnce(&SessionEntry) -> T) -> Option<T> {
        self.sessions.get(guid).map(|e| f(&e))
    }

    /// Every session as the operator view shows it, oldest first.
    pub fn snapshot(&self, now: Instant) -> Vec<SessionView> {
        let mut out: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|e| {
                let mut operations: Vec<Guid> = e.operations.iter().copied().collect();
                operations.sort();
                SessionView {
                    id: *e.key(),
                    backend: e.backend.addr.clone(),
                    user: e.user.clone(),
                    clients: e.clients.clone(),
                    attached: e.attached,
                    opened_at: e.opened_at,
                    idle: now.saturating_duration_since(e.last_used),
                    statement_running: e.statement_op.is_some_and(|op| e.operations.contains(&op)),
                    last_statement: e.last_statement.clone(),
                    operations,
                }
            })
            .collect();
        out.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Where a call on operation `op` goes, and with which handle.
    pub fn operation_target(&self, op: &Guid) -> Option<OperationTarget> {
        let (session, backend, secret) = self.operations.get(op).map(|o| (o.session, o.backend.clone(), o.secret))?;
        let owner = session.and_then(|g| self.sessions.get(&g).map(|e| (e.secret, e.user.clone())));
        // Impala gives an operation its session's secret.
        let secret = secret.or(owner.as_ref().map(|(s, _)| *s));
        let handle = secret.map(|secret| HandleId { guid: *op, secret });
        Some(OperationTarget { backend, handle, user: owner.and_then(|(_, u)| u) })
    }

    /// Guids of all sessions.
    pub fn session_ids(&self) -> Vec<Guid> {
        self.sessions.iter().map(|e| *e.key()).collect()
    }
}

fn release(entry: &SessionEntry) {
    entry.backend.sessions.fetch_sub(1, Ordering::Relaxed);
    entry.backend.pool.unpin(entry.pinned_conn);
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
