//! The session and operation tables: which backend holds each handle. No I/O, no pools: backends are
//! ids, and what a change means for an upstream connection (keep it open while its session lives) comes
//! back as a [`PoolIntent`] for the caller to apply.
//!
//! Entries are learned from replies (a new session from OpenSession, a new operation from
//! ExecuteStatement and the metadata calls) or by asking the backends (`recover`), and forgotten on a
//! successful close, on errors that say the server no longer has them, when their backend goes down,
//! and when no client has used a session for the grace period. Every removal goes through
//! [`Routes::forget_session`] or [`Routes::forget_operation`], which keep the per-backend counts right.
//!
//! Every handle is checked in full: a session's secret must match, and so must an operation's (learned
//! with the operation; Impala's equal their session's, Hive's are their own).
//!
//! `DashMap` because every client connection task reads these tables on every call; no `Ref` is ever
//! held across an `.await` (callers copy what they need out, and nothing here is async).

mod moves;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

use crate::fasthash::KeyedState;
use crate::hs2::call::Request;
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::reply;
pub use moves::{Mobility, MovePlan, NotNow, Origin};

/// A backend, as the tables know it (`backend::Backend::id`: unique for the process's life).
pub type BackendId = u64;

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

/// Who a session belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionUsers {
    /// The identity the client authenticated as (SASL, HTTP, Kerberos): only it may use the session.
    /// `None` on unauthenticated connections, where anyone may (as impalad allows).
    pub owner: Option<String>,
    /// The user, as impalad sees it: `owner`, else OpenSession's `username`.
    pub user: Option<String>,
    /// The delegated user (`impala.doas.user`, `hive.server2.proxy.user`), else `user`.
    pub effective_user: Option<String>,
}

/// A user name in a session's log line: the name as it is when it is plain (printable ASCII, no spaces
/// or quotes), else quoted and escaped as `Debug` writes it, so that a name from the network cannot break
/// or forge a log line; `-` for none. `Debug` escaped every name character by character, the dearest part
/// of the lines logged for every session opened and closed (callgrind, the bench's query loop).
pub struct LogName<'a>(pub Option<&'a str>);

impl std::fmt::Display for LogName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => {
                f.write_str(name)
            }
            Some(name) => write!(f, "{name:?}"),
        }
    }
}

/// How the proxy came to know a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Its OpenSession went through this proxy.
    Opened,
    /// A client used it and a backend said it holds it (opened through another instance, or before a
    /// restart).
    Recovered,
}

pub struct SessionEntry {
    pub backend: BackendId,
    secret: Secret,
    pub users: SessionUsers,
    /// The pool user whose upstream connections may carry the session's calls (`None`: any connection).
    pub carrier: Option<String>,
    /// The upstream connection that carried OpenSession (or the lookup), pinned while the session lives.
    pub pinned_conn: Option<u64>,
    pub learned: Learned,
    /// When the proxy learned it: opened, or found by asking.
    pub learned_at: SystemTime,
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
    /// Moving the session to another backend (`moves.rs`).
    pub mobility: Mobility,
    /// The routing rule that placed it.
    pub rule: Option<String>,
}

impl SessionEntry {
    /// The client's handle (its secret never logged). The proxy's own calls on the backend (clean-up,
    /// operator actions) take [`SessionEntry::upstream_handle`] instead.
    pub fn handle(&self, guid: Guid) -> HandleId {
        HandleId { guid, secret: self.secret }
    }

    /// What forgetting this session means for its pinned upstream connection.
    pub fn unpin(&self) -> Option<PoolIntent> {
        self.pinned_conn.map(|conn| PoolIntent::Unpin { backend: self.backend, conn })
    }

    /// The session's handle on its backend, for the proxy's own calls there: the client's, unless the
    /// session was moved.
    pub fn upstream_handle(&self, guid: Guid) -> HandleId {
        self.mobility.upstream.unwrap_or(self.handle(guid))
    }
}

#[derive(Clone)]
struct OperationEntry {
    /// `None` for an operation found by asking the backends, whose session the proxy does not know.
    session: Option<Guid>,
    backend: BackendId,
    /// The operation's secret: calls on it must carry exactly this. Never logged.
    secret: Secret,
}

/// What the caller must do to a backend's pool after a table change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolIntent {
    /// Keep this upstream connection open while the session it opened lives.
    Pin { backend: BackendId, conn: u64 },
    /// The session is gone: the connection may close like any other.
    Unpin { backend: BackendId, conn: u64 },
}

/// Live sessions and operations routed to one backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub sessions: u64,
    pub operations: u64,
}

/// What the operator view shows of a session: never its secret.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: Guid,
    pub backend: BackendId,
    pub users: SessionUsers,
    pub learned: Learned,
    pub learned_at: SystemTime,
    pub clients: Vec<SocketAddr>,
    pub attached: u32,
    /// How long ago a call last used the session.
    pub idle: Duration,
    pub operations: Vec<Guid>,
    pub last_statement: Option<String>,
    /// True while the operation of `last_statement` is open.
    pub statement_running: bool,
    /// `None` when the session can be moved to another backend; else why not.
    pub unmovable: Option<String>,
    /// Times it was moved, and whether it is moving now.
    pub moves: u32,
    pub moving: bool,
    /// Its id on its backend once moved (the client keeps `id`).
    pub upstream: Option<Guid>,
    /// The routing rule that placed it.
    pub rule: Option<String>,
}

/// Where the proxy's own call on an operation goes (the operator's cancel).
pub struct OperationTarget {
    pub backend: BackendId,
    pub handle: HandleId,
    /// The pool user of its session (whose upstream connections may carry the call).
    pub carrier: Option<String>,
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// OpenSession: the balancer chooses.
    NewSession,
    /// A handle the proxy knows. `session` is `None` for an operation recovered without its session.
    /// `upstream` is the session's handle on the backend when it differs from the client's (a moved
    /// session): the request's session handle must be rewritten to it. `orphaned`: the session's backend
    /// died and the session waits to move on this call (read with the route, under the same entry lock).
    Pinned { backend: BackendId, session: Option<Guid>, upstream: Option<HandleId>, orphaned: bool },
    /// The session is being moved to another backend: wait for the move, then route again.
    Moving(Guid),
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
    /// A known operation with the wrong secret: answered like an unknown operation.
    WrongSecret(Guid),
}

impl Reject {
    /// The text the client sees: Impala's own, so that Hue heals itself.
    pub fn client_text(&self) -> String {
        match self {
            Reject::UnknownSession(g) | Reject::WrongUser { session: g, .. } => reply::invalid_session_text(g),
            Reject::UnknownOperation(g) | Reject::WrongSecret(g) => reply::invalid_query_text(g),
        }
    }

    /// True when asking the backends might find the handle (it is unknown here, not refused).
    pub fn may_recover(&self) -> bool {
        matches!(self, Reject::UnknownSession(_) | Reject::UnknownOperation(_))
    }
}

/// A session the proxy just learned.
pub struct NewSession {
    pub handle: HandleId,
    pub backend: BackendId,
    pub users: SessionUsers,
    /// The pool user of the connection that opened (or found) it.
    pub carrier: Option<String>,
    /// The upstream connection to pin (`None` when the backend keeps sessions without it).
    pub conn: Option<u64>,
    pub learned: Learned,
    /// The client connection that opened it, attached at once; `None` for a session found by asking,
    /// which the connection that asked attaches like any other use.
    pub client: Option<SocketAddr>,
    /// What re-opening it elsewhere needs (`None`: it cannot be moved, e.g. found by asking).
    pub origin: Option<Arc<Origin>>,
    /// The routing rule that placed it (`None`: no rule matched, or found by asking).
    pub rule: Option<String>,
}

#[derive(Default)]
pub struct Routes {
    sessions: DashMap<Guid, SessionEntry, KeyedState>,
    operations: DashMap<Guid, OperationEntry, KeyedState>,
    /// Session secret -> session guid: Impala gives an operation its session's secret, which finds the
    /// session of an operation the proxy never saw (opened through another proxy, or before a restart).
    by_secret: DashMap<[u8; 16], Guid, KeyedState>,
    loads: DashMap<BackendId, Load, KeyedState>,
    /// Sessions per user (`SessionUsers::user`), for `limits.max_sessions_per_user`.
    per_user: DashMap<String, u64>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Decides where `req` goes for a client authenticated as `caller`.
    pub fn route(&self, req: &Request, caller: Option<&str>) -> Route {
        if req.opens_session() {
            return Route::NewSession;
        }
        if let Some(s) = req.session {
            return self.route_session(&s, caller);
        }
        if let Some(op) = req.operation {
            return self.route_operation(&op, caller);
        }
        Route::Anywhere
    }

    fn route_operation(&self, op: &HandleId, caller: Option<&str>) -> Route {
        let known = self.operations.get(&op.guid).map(|o| o.clone());
        let session = match known {
            Some(o) if o.secret != op.secret => return Route::Reject(Reject::WrongSecret(op.guid)),
            Some(OperationEntry { session: None, backend, .. }) => {
                return Route::Pinned { backend, session: None, upstream: None, orphaned: false };
            }
            Some(OperationEntry { session: Some(g), .. }) => Some(g),
            // Never seen, but Impala's rule finds its session by the shared secret.
            None => self.by_secret.get(&op.secret.0).map(|g| *g),
        };
        match session.and_then(|g| self.sessions.get(&g).map(|e| e.handle(g))) {
            Some(handle) => self.route_session(&handle, caller),
            None => Route::Reject(Reject::UnknownOperation(op.guid)),
        }
    }

    fn route_session(&self, s: &HandleId, caller: Option<&str>) -> Route {
        let Some(entry) = self.sessions.get(&s.guid) else {
            return Route::Reject(Reject::UnknownSession(s.guid));
        };
        if entry.secret != s.secret {
            return Route::Reject(Reject::UnknownSession(s.guid));
        }
        if entry.users.owner.as_deref() != caller {
            let owner = entry.users.owner.clone();
            return Route::Reject(Reject::WrongUser { session: s.guid, owner, caller: caller.map(str::to_string) });
        }
        if entry.mobility.moving {
            return Route::Moving(s.guid);
        }
        Route::Pinned {
            backend: entry.backend,
            session: Some(s.guid),
            upstream: entry.mobility.upstream,
            orphaned: entry.mobility.orphaned,
        }
    }

    /// Records a session; the client connection that opened (or used) it is attached.
    pub fn learn_session(&self, s: NewSession) -> Option<PoolIntent> {
        let now = Instant::now();
        let entry = SessionEntry {
            backend: s.backend,
            secret: s.handle.secret,
            users: s.users,
            carrier: s.carrier,
            pinned_conn: s.conn,
            learned: s.learned,
            learned_at: SystemTime::now(),
            last_used: now,
            attached: u32::from(s.client.is_some()),
            detached_since: s.client.is_none().then_some(now),
            operations: HashSet::new(),
            last_statement: None,
            statement_op: None,
            clients: s.client.into_iter().collect(),
            mobility: Mobility::new(s.origin),
            rule: s.rule,
        };
        let pin = s.conn.map(|conn| PoolIntent::Pin { backend: s.backend, conn });
        let s_user = entry.users.user.clone();
        match self.sessions.entry(s.handle.guid) {
            // Known already: two lookups found it at once (clients sharing a session after a restart).
            // The first entry stands (it may have learned operations since) and keeps the only pin;
            // replacing it would leave the first pin with nobody to release it.
            dashmap::Entry::Occupied(_) => return None,
            dashmap::Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
        self.by_secret.insert(s.handle.secret.0, s.handle.guid);
        self.loads.entry(s.backend).or_default().sessions += 1;
        if let Some(u) = &s_user {
            *self.per_user.entry(u.clone()).or_default() += 1;
        }
        pin
    }

    /// Records an operation created in `session`, with the statement that created it.
    pub fn learn_operation(&self, op: HandleId, session: Guid, statement: Option<&str>) {
        let Some(mut entry) = self.sessions.get_mut(&session) else { return };
        if !entry.operations.insert(op.guid) {
            return;
        }
        if let Some(text) = statement {
            entry.last_statement = Some(first_chars(text, STATEMENT_CHARS).to_string());
            entry.statement_op = Some(op.guid);
        }
        let backend = entry.backend;
        drop(entry);
        self.loads.entry(backend).or_default().operations += 1;
        self.operations.insert(op.guid, OperationEntry { session: Some(session), backend, secret: op.secret });
    }

    /// Records an operation a backend said it holds, whose session the proxy does not know.
    pub fn learn_orphan_operation(&self, op: HandleId, backend: BackendId) {
        self.loads.entry(backend).or_default().operations += 1;
        let entry = OperationEntry { session: None, backend, secret: op.secret };
        if let Some(old) = self.operations.insert(op.guid, entry) {
            self.count_operation_gone(old.backend);
        }
    }

    /// Forgets a session and its operations; returns it when it was known (apply its `unpin`).
    pub fn forget_session(&self, guid: &Guid) -> Option<SessionEntry> {
        let (_, entry) = self.sessions.remove(guid)?;
        for op in &entry.operations {
            if self.operations.remove(op).is_some() {
                self.count_operation_gone(entry.backend);
            }
        }
        self.by_secret.remove_if(&entry.secret.0, |_, g| g == guid);
        if let Some(up) = entry.mobility.upstream {
            self.by_secret.remove_if(&up.secret.0, |_, g| g == guid);
        }
        self.count_session_gone(&entry);
        Some(entry)
    }

    pub fn forget_operation(&self, op: &Guid) {
        // Closed without having been seen to fail: its statement (if one waits) counts for replay.
        self.settle_statement(op, true);
        if let Some((_, o)) = self.operations.remove(op) {
            self.count_operation_gone(o.backend);
            if let Some(mut s) = o.session.and_then(|g| self.sessions.get_mut(&g)) {
                s.operations.remove(op);
            }
        }
    }

    fn count_session_gone(&self, entry: &SessionEntry) {
        if let Some(mut l) = self.loads.get_mut(&entry.backend) {
            l.sessions = l.sessions.saturating_sub(1);
        }
        if let Some(u) = &entry.users.user {
            self.per_user.remove_if_mut(u, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }

    /// Sessions `user` holds through this instance.
    pub fn sessions_of(&self, user: &str) -> u64 {
        self.per_user.get(user).map_or(0, |n| *n)
    }

    fn count_operation_gone(&self, backend: BackendId) {
        if let Some(mut l) = self.loads.get_mut(&backend) {
            l.operations = l.operations.saturating_sub(1);
        }
    }

    /// Forgets every session and operation on `backend` (it went down); returns the dropped sessions.
    pub fn forget_backend(&self, backend: BackendId) -> Vec<(Guid, SessionEntry)> {
        let doomed: Vec<Guid> = self.sessions.iter().filter(|e| e.backend == backend).map(|e| *e.key()).collect();
        let orphans: Vec<Guid> =
            self.operations.iter().filter(|o| o.session.is_none() && o.backend == backend).map(|o| *o.key()).collect();
        orphans.iter().for_each(|op| self.forget_operation(op));
        doomed.into_iter().filter_map(|g| self.forget_session(&g).map(|e| (g, e))).collect()
    }

    /// A client connection from `peer` uses `session` for the first time: attached until it closes.
    pub fn attach(&self, session: &Guid, peer: SocketAddr) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            e.attached += 1;
            e.detached_since = None;
            if e.clients.len() < MAX_CLIENT_ADDRS {
                e.clients.push(peer);
            }
        }
    }

    /// A client connection from `peer` that used `session` closed.
    pub fn detach(&self, session: &Guid, peer: SocketAddr, now: Instant) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            e.attached = e.attached.saturating_sub(1);
            if e.attached == 0 {
                e.detached_since = Some(now);
            }
            if let Some(i) = e.clients.iter().position(|c| *c == peer) {
                e.clients.swap_remove(i);
            }
        }
    }

    /// Sessions no client connection has used for `grace` after the last one closed.
    pub fn abandoned(&self, now: Instant, grace: Duration) -> Vec<Guid> {
        self.sessions
            .iter()
            .filter(|e| e.attached == 0 && e.detached_since.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|e| *e.key())
            .collect()
    }

    /// Clean-up found `session` in use elsewhere: its clock restarts as if its last connection had closed
    /// at `since` (when the backend last saw it used). Nothing changes while a client is attached.
    pub fn defer_cleanup(&self, session: &Guid, since: Instant) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            if e.attached == 0 {
                e.detached_since = Some(since);
            }
        }
    }

    /// Applies an error text from a backend: drops what the server says it no longer has.
    /// Returns the forgotten session, if that was it, and whether anything was dropped.
    pub fn forget_on_error(&self, req: &Request, error: &str) -> (Option<SessionEntry>, bool) {
        if SESSION_GONE.iter().any(|p| error.contains(p)) {
            let session = req.session.map(|s| s.guid).or_else(|| {
                let op = req.operation?;
                self.operations.get(&op.guid).and_then(|o| o.session)
            });
            if let Some(entry) = session.and_then(|g| self.forget_session(&g)) {
                return (Some(entry), true);
            }
        }
        if OPERATION_GONE.iter().any(|p| error.contains(p)) {
            if let Some(op) = req.operation {
                let known = self.operations.contains_key(&op.guid);
                self.forget_operation(&op.guid);
                return (None, known);
            }
        }
        (None, false)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// Live sessions and operations on `backend`.
    pub fn load(&self, backend: BackendId) -> Load {
        self.loads.get(&backend).map(|l| *l).unwrap_or_default()
    }

    /// Runs `f` on a session entry.
    pub fn with_session<T>(&self, guid: &Guid, f: impl FnOnce(&SessionEntry) -> T) -> Option<T> {
        self.sessions.get(guid).map(|e| f(&e))
    }

    /// Every session as the operator view shows it, oldest first.
    pub fn snapshot(&self, now: Instant) -> Vec<SessionView> {
        let mut out: Vec<SessionView> = self.sessions.iter().map(|e| view(*e.key(), &e, now)).collect();
        out.sort_by(|a, b| a.learned_at.cmp(&b.learned_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Where a call on operation `op` goes, and with which handle.
    pub fn operation_target(&self, op: &Guid) -> Option<OperationTarget> {
        let o = self.operations.get(op).map(|o| o.clone())?;
        let carrier = o.session.and_then(|g| self.sessions.get(&g).map(|e| e.carrier.clone())).flatten();
        Some(OperationTarget { backend: o.backend, handle: HandleId { guid: *op, secret: o.secret }, carrier })
    }

    /// Guids of all sessions.
    pub fn session_ids(&self) -> Vec<Guid> {
        self.sessions.iter().map(|e| *e.key()).collect()
    }
}

/// The first `n` characters of `text` (all of it when shorter): a slice, copied once by the caller, not
/// a string built a character at a time.
fn first_chars(text: &str, n: usize) -> &str {
    text.char_indices().nth(n).map_or(text, |(end, _)| &text[..end])
}

fn view(id: Guid, e: &SessionEntry, now: Instant) -> SessionView {
    let mut operations: Vec<Guid> = e.operations.iter().copied().collect();
    operations.sort();
    SessionView {
        id,
        backend: e.backend,
        users: e.users.clone(),
        learned: e.learned,
        learned_at: e.learned_at,
        clients: e.clients.clone(),
        attached: e.attached,
        idle: now.saturating_duration_since(e.last_used),
        statement_running: e.statement_op.is_some_and(|op| e.operations.contains(&op)),
        last_statement: e.last_statement.clone(),
        operations,
        unmovable: e.mobility.blocked().map(str::to_string),
        moves: e.mobility.moves,
        moving: e.mobility.moving,
        upstream: e.mobility.upstream.map(|h| h.guid),
        rule: e.rule.clone(),
    }
}

#[cfg(test)]
mod tests;
