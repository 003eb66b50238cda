//! One client call, top to bottom: route -> recover -> checkout -> exchange -> learn, the reply written
//! into a [`ReplySink`] (a binary client connection or an HTTP response body; neither borrows the other).
//!
//! Glue only: routing decisions come from `routing` (through the `Proxy` handle), owners of unknown
//! handles from `recover`, connections from the backend's pool, the relay from `conn`. What this module
//! owns is the order of those steps and what each failure means:
//! - anything a client can understand becomes an HS2 error reply, with Impala's own texts where Hue
//!   heals itself on them;
//! - a backend failure is evidence against the backend; a client that stalls or vanishes is the
//!   client's failure only (its connection closes, the upstream connection goes back to the pool);
//! - a reply that broke after bytes reached the client cannot be replaced: the client connection closes.
//!
//! A request is never sent twice.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use crate::backend::health::Evidence;
use crate::backend::pool::{Checkout, PoolError};
use crate::backend::{probe, Backend};
use crate::conn::{ConnError, RelayDeadlines, RelayError, Relayed, ReplySink, SinkError};
use crate::fasthash::KeyedState;
use crate::hs2::call::{reply_scanner, reply_summary, HandleKind, ReplySummary, Request};
use crate::hs2::handle::Guid;
use crate::hs2::idl::Effect;
use crate::hs2::open_session::OpenSessionView;
use crate::hs2::reply;
pub use crate::identity::Caller;
use crate::logfmt::Addr;
use crate::metrics::{method_label, ErrorKind};
use crate::placement::{self, Plan};
use crate::proxy::Proxy;
use crate::routing::{Learned, LogName, NewSession, Origin, Reject, Route, SessionUsers};
use crate::rules::Who;
use crate::thrift::ProtocolError;
use crate::{migrate, recover};

/// The sessions one client connection has used: attached to them while it is open, detached when it
/// closes (their clean-up clock starts). A std mutex, held for a set operation only.
#[derive(Debug, Default)]
pub struct Attachments {
    /// Sessions the proxy knows (backend-issued guids): the fast hasher is safe here.
    used: Mutex<HashSet<Guid, KeyedState>>,
}

impl Attachments {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Guid, KeyedState>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `session` used; true the first time.
    fn first_use(&self, session: Guid) -> bool {
        self.lock().insert(session)
    }

    fn forget(&self, session: &Guid) {
        self.lock().remove(session);
    }

    /// The connection closed: detaches every session it used.
    pub fn detach_all(&self, proxy: &Proxy, peer: SocketAddr) {
        let now = Instant::now();
        for s in self.lock().drain() {
            proxy.detach(&s, peer, now);
        }
    }
}

/// Why the client connection must close after a call.
#[derive(Debug, thiserror::Error)]
pub enum CallEnd {
    #[error("the reply from {backend} broke after {forwarded} bytes reached the client: {error}")]
    BrokenReply { backend: String, forwarded: u64, error: String },
    #[error("{0}")]
    Client(#[from] SinkError),
}

/// Serves one call; the reply (relayed or synthesized) goes to `sink`.
pub async fn call<S: ReplySink>(
    proxy: &Proxy,
    caller: &Caller,
    attached: &Attachments,
    req: Request,
    sink: &mut S,
) -> Result<(), CallEnd> {
    if let Some(kind) = req.lacks_required_handle() {
        // Impala's own text for an unknown handle (Hue heals from it); no backend is bothered.
        proxy.metrics().rpc_error(method_label(&req), None, ErrorKind::Unroutable);
        let text = match kind {
            HandleKind::Session => reply::invalid_session_text(&Guid([0; 16])),
            HandleKind::Operation => reply::invalid_query_text(&Guid([0; 16])),
        };
        tracing::info!(client = %caller.peer, method = req.name(), ?kind, "request without a valid handle refused");
        return write_error(proxy, sink, &req, &text).await;
    }
    // A second pass only when the session's backend turned out dead before anything was sent: the session
    // may have moved meanwhile, and the call can go to its new backend.
    for pass in 0..2 {
        let route = route_of(proxy, &req, caller).await;
        let call = Call { proxy, caller, attached, req: &req, opening: None };
        match route {
            Route::NewSession | Route::Anywhere => return call.open_anywhere(sink).await,
            Route::Pinned { backend, session, upstream, .. } => {
                let Some(backend) = proxy.backend(backend).filter(|b| b.serving()) else {
                    // Failover is under way: answer as the server would for a session it lost.
                    proxy.metrics().rpc_error(method_label(&req), None, ErrorKind::Unroutable);
                    let g = session.or(req.operation.map(|o| o.guid)).unwrap_or(Guid([0; 16]));
                    return call.reply_error(sink, &reply::invalid_session_text(&g)).await;
                };
                // Counted until its reply is learned: a move of the session waits for it. Counting it notes
                // the session's last use.
                let _on_its_way = match session.map(|s| proxy.enter_call(&s)) {
                    Some(None) if pass == 0 => continue, // it started moving: route again, after the move
                    Some(None) => {
                        let g = session.unwrap_or(Guid([0; 16]));
                        return call.reply_error(sink, &reply::invalid_session_text(&g)).await;
                    }
                    Some(guard) => guard,
                    None => None,
                };
                if let Some(s) = session.filter(|s| attached.first_use(*s)) {
                    proxy.attach(&s, caller.peer);
                }
                // A moved session: the client keeps its handle, the backend knows another.
                let moved = upstream.and_then(|h| req.with_session_handle(&h));
                let call = Call { req: moved.as_ref().unwrap_or(&req), ..call };
                match call.forward(&backend, session, sink).await? {
                    Forwarded::NotSent(_) if pass == 0 => continue,
                    Forwarded::NotSent(e) => return call.reply_error(sink, &format!("hs2-proxy: {e}")).await,
                    Forwarded::Done => return Ok(()),
                }
            }
            Route::Moving(g) => return call.reply_error(sink, &reply::invalid_session_text(&g)).await,
            Route::Reject(reject) => {
                proxy.metrics().rpc_error(method_label(&req), None, ErrorKind::Unroutable);
                if let Reject::WrongUser { session, owner, caller: who } = &reject {
                    tracing::warn!(client = %caller.peer, session = %session, owner = ?owner, caller = ?who,
                        method = req.name(), "session used by another user: refused");
                }
                if let Reject::WrongSecret(op) = &reject {
                    tracing::warn!(client = %caller.peer, operation = %op, method = req.name(),
                        "operation handle with the wrong secret: refused");
                }
                return call.reply_error(sink, &reject.client_text()).await;
            }
        }
    }
    Ok(())
}

/// Where `req` goes: its route, after asking the backends about an unknown handle, waiting for a session
/// that is moving, and moving a session whose backend died (`sessions.move_on_failure`).
async fn route_of(proxy: &Proxy, req: &Request, caller: &Caller) -> Route {
    for _ in 0..3 {
        match proxy.route(req, caller.identity.as_deref()) {
            Route::Reject(reject) if reject.may_recover() => {
                return recover::find(proxy, req, caller).await.unwrap_or(Route::Reject(reject));
            }
            Route::Moving(g) => proxy.wait_for_move(&g, proxy.config().timeouts.recovery).await,
            Route::Pinned { backend, session: Some(g), orphaned: true, .. }
                if !proxy.backend(backend).is_some_and(|b| b.serving()) =>
            {
                if migrate::move_session(proxy, g, migrate::Reason::Failure).await.is_err() {
                    // It cannot be served anywhere: answer as impalad would for a session it lost.
                    proxy.forget_session(&g);
                }
            }
            route => return route,
        }
    }
    proxy.route(req, caller.identity.as_deref())
}

/// What one forward attempt did.
enum Forwarded {
    Done,
    /// Nothing reached the backend (no connection could be made): a new session may try another.
    NotSent(PoolError),
}

/// A failed exchange, always the backend's side.
enum ExchangeError {
    /// The request could not be written: nothing of a reply exists.
    Unsent(ConnError),
    Relay(RelayError),
}

/// Counts something on its backend while it lives, also when its future is dropped: a call in flight,
/// an OpenSession opening. Dropped with `Release`, so that a reader that sees the count fall (`Acquire`)
/// also sees what was done before the drop (an opened session learned).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU64) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// One call's context.
struct Call<'a> {
    proxy: &'a Proxy,
    caller: &'a Caller,
    attached: &'a Attachments,
    req: &'a Request,
    /// OpenSession only: who the new session is for and where it may go.
    opening: Option<&'a Opening>,
}

/// What an OpenSession decides once, from one reading of the request the client sent, before any
/// backend is tried: who the session is for (also what the log line and the session's record say) and
/// where it may go (the rule, and the places it holds under the limits).
struct Opening {
    users: SessionUsers,
    plan: Plan,
}

impl Call<'_> {
    /// OpenSession (or a call with no handle): the least-loaded backend that accepts a connection.
    async fn open_anywhere<S: ReplySink>(&self, sink: &mut S) -> Result<(), CallEnd> {
        let (delegated, opening) = match self.req.opens_session() {
            true => {
                let view = OpenSessionView::parse(&self.req.bytes, &self.proxy.config().limits.request);
                let delegated = match self.delegated_user(view.as_ref()) {
                    Ok(d) => d,
                    Err(text) => {
                        self.proxy.metrics().rpc_error(method_label(self.req), None, ErrorKind::Unroutable);
                        tracing::warn!(client = %self.caller.peer, user = ?self.caller.identity, reason = %text,
                            "delegation refused");
                        return self.reply_error(sink, &text).await;
                    }
                };
                // A request that cannot be read names no user: the backend answers it as it would.
                let view = view.unwrap_or_default();
                let users = self.users_of(&view, delegated.as_deref());
                match self.plan_session(&users, &view) {
                    Ok(plan) => (delegated, Some(Opening { users, plan })),
                    Err(text) => {
                        self.proxy.metrics().rpc_error(method_label(self.req), None, ErrorKind::NoBackend);
                        tracing::info!(client = %self.caller.peer, user = ?self.caller.identity, reason = %text,
                            "new session refused");
                        return self.reply_error(sink, &text).await;
                    }
                }
            }
            false => (None, None),
        };
        let candidates = opening.as_ref().map_or_else(|| self.proxy.preference(), |o| o.plan.backends.clone());
        if candidates.is_empty() {
            self.proxy.metrics().rpc_error(method_label(self.req), None, ErrorKind::NoBackend);
            return self.reply_error(sink, "hs2-proxy: no backend is available for a new session").await;
        }
        let mut last_error = String::new();
        for backend in candidates {
            // The delegation key depends on the backend's kind.
            let rewritten = match &delegated {
                Some(user) => match self.delegating(&backend, user) {
                    Ok(req) => Some(req),
                    Err(text) => return self.reply_error(sink, &text).await,
                },
                None => None,
            };
            let this = Call { req: rewritten.as_ref().unwrap_or(self.req), opening: opening.as_ref(), ..*self };
            match this.forward(&backend, None, sink).await? {
                Forwarded::Done => return Ok(()),
                Forwarded::NotSent(e) if e.is_connect_failure() => last_error = e.to_string(),
                Forwarded::NotSent(e) => return self.reply_error(sink, &format!("hs2-proxy: {e}")).await,
            }
        }
        self.reply_error(sink, &format!("hs2-proxy: no backend could be reached ({last_error})")).await
    }

    /// Sends the request to `backend` and relays the reply.
    async fn forward<S: ReplySink>(
        &self,
        backend: &Arc<Backend>,
        session: Option<Guid>,
        sink: &mut S,
    ) -> Result<Forwarded, CallEnd> {
        let (proxy, req) = (self.proxy, self.req);
        let started = Instant::now();
        let method = method_label(req);
        let mut up = match backend.pool.checkout(&self.caller.creds).await {
            Ok(up) => up,
            Err(e) => return self.no_connection(backend, e, session, sink).await,
        };
        up.set_forwarded_for(&self.caller.forwarded_for);
        // Until the new session is learned (below), or the call fails.
        let _opening = req.opens_session().then(|| InFlight::new(&backend.opening));
        tracing::debug!(client = %self.caller.peer, method = req.name(), backend = %backend.addr,
            session = ?session, conn = up.id(), "forwarding");
        let outcome = {
            let _inflight = InFlight::new(&backend.inflight);
            self.exchange(&mut up, sink).await
        };
        let metrics = proxy.metrics();
        let replied = outcome.as_ref().map_or(0, |(sum, _)| sum.bytes);
        let series = backend.relay_series.get_or_init(|| metrics.relay_series(&backend.addr));
        metrics.rpc(series, req.method, started.elapsed(), req.bytes.len() as u64, replied);
        match outcome {
            Ok((summary, mut relayed)) => {
                let conn = up.id();
                // The whole reply was read: the connection is in step, whatever the client did.
                up.release();
                backend.exchange_ok();
                if summary.is_error() {
                    metrics.rpc_error(method, Some(&backend.addr), ErrorKind::Status);
                }
                // Learned before the client sees the end of the reply: it may use a new handle at once.
                self.learn(&summary, backend, conn, session);
                relayed.finish(sink, proxy.config().timeouts.client_write).await;
                match relayed.client {
                    None => Ok(Forwarded::Done),
                    Some(e) => Err(self.client_failed(backend, e)),
                }
            }
            Err(failure) => {
                drop(up);
                metrics.rpc_error(method, Some(&backend.addr), ErrorKind::Broken);
                self.backend_failed(backend, failure, sink).await.map(|_| Forwarded::Done)
            }
        }
    }

    /// Writes the request upstream and relays the reply; never resends.
    async fn exchange<S: ReplySink>(
        &self,
        up: &mut Checkout,
        sink: &mut S,
    ) -> Result<(ReplySummary, Relayed), ExchangeError> {
        let t = &self.proxy.config().timeouts;
        let write = crate::conn::within(t.backend_reply, up.conn().write_message(&self.req.bytes)).await;
        match write {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ExchangeError::Unsent(e)),
            Err(_) => return Err(ExchangeError::Unsent(ConnError::Stalled(t.backend_reply))),
        }
        let mut scanner = reply_scanner(self.req, self.proxy.config().limits.reply);
        let deadlines = RelayDeadlines { backend_inactivity: t.backend_reply, client_stall: t.client_write };
        let relayed = up.conn().relay_reply(sink, &mut scanner, deadlines).await.map_err(ExchangeError::Relay)?;
        Ok((reply_summary(&scanner), relayed))
    }

    /// No upstream connection could be had; nothing was sent.
    async fn no_connection<S: ReplySink>(
        &self,
        backend: &Arc<Backend>,
        e: PoolError,
        session: Option<Guid>,
        sink: &mut S,
    ) -> Result<Forwarded, CallEnd> {
        self.proxy.metrics().rpc_error(method_label(self.req), Some(&backend.addr), ErrorKind::NoConnection);
        if e.is_connect_failure() {
            self.proxy.apply_evidence(backend, Evidence::Unreachable(e.to_string()));
            if self.req.opens_session() || session.is_none() && self.req.operation.is_none() {
                return Ok(Forwarded::NotSent(e));
            }
            // The session's backend is gone and nothing was sent: the session moves and the call follows.
            if session.is_some_and(|g| self.proxy.is_orphaned(&g)) {
                return Ok(Forwarded::NotSent(e));
            }
        }
        tracing::warn!(backend = %backend.addr, method = self.req.name(), error = %e, "no upstream connection");
        // The handle's backend is gone: say what impalad would, so that Hue opens a new session.
        let text = match (e.is_connect_failure(), session, self.req.operation) {
            (true, Some(s), _) => reply::invalid_session_text(&s),
            (true, None, Some(op)) => reply::invalid_query_text(&op.guid),
            _ => format!("hs2-proxy: {e}"),
        };
        self.reply_error(sink, &text).await.map(|_| Forwarded::Done)
    }

    /// The backend failed the exchange: evidence against it, and an error for the client unless part of
    /// the reply already reached it.
    async fn backend_failed<S: ReplySink>(
        &self,
        backend: &Arc<Backend>,
        failure: ExchangeError,
        sink: &mut S,
    ) -> Result<(), CallEnd> {
        let (error, forwarded) = match failure {
            ExchangeError::Unsent(e) => (e.to_string(), 0),
            ExchangeError::Relay(r) => (r.error.to_string(), r.forwarded),
        };
        // One broken exchange is not proof: it counts (health.eject_after in a row take it down), and the probe looks.
        crate::control::eject::broken_exchange(self.proxy, backend, &error);
        backend.probe_now.notify_one();
        tracing::warn!(backend = %backend.addr, client = %self.caller.peer, method = self.req.name(), error = %error,
            "call failed on the backend");
        if forwarded > 0 {
            return Err(CallEnd::BrokenReply { backend: backend.addr.clone(), forwarded, error });
        }
        let text = format!("hs2-proxy: backend {} failed during {}: {error}", backend.addr, self.req.name());
        self.reply_error(sink, &text).await
    }

    /// The client stalled or went away mid-reply: its fault only. The backend's reply was read to its end.
    fn client_failed(&self, backend: &Backend, e: SinkError) -> CallEnd {
        let kind = match e {
            SinkError::Stalled(_) => ErrorKind::ClientStalled,
            SinkError::Gone(_) => ErrorKind::ClientGone,
        };
        self.proxy.metrics().rpc_error(method_label(self.req), Some(&backend.addr), kind);
        tracing::info!(client = %self.caller.peer, backend = %backend.addr, method = self.req.name(), error = %e,
            "client failed mid-reply: closing it; the upstream connection stays in use");
        CallEnd::Client(e)
    }

    /// Updates the tables from a reply.
    fn learn(&self, sum: &ReplySummary, backend: &Arc<Backend>, conn: u64, session: Option<Guid>) {
        let (proxy, req, caller) = (self.proxy, self.req, self.caller);
        if !sum.succeeded() {
            if let Some(text) = sum.error.as_deref().filter(|t| t.contains(probe::SHUTTING_DOWN)) {
                proxy.apply_evidence(backend, Evidence::ShuttingDown(text.to_string()));
            }
            if let Some(text) = &sum.error {
                if proxy.forget_on_error(req, text) {
                    tracing::info!(backend = %backend.addr, method = req.name(), error = %text,
                        "backend no longer has the handle: forgotten");
                }
            }
            return;
        }
        match req.effect() {
            Effect::OpensSession => {
                let (Some(handle), Some(opening)) = (sum.new_session, self.opening) else { return };
                let users = opening.users.clone();
                tracing::info!(session = %handle.guid, backend = %backend.addr, user = %LogName(users.user.as_deref()),
                    effective_user = %LogName(users.effective_user.as_deref()), client = %Addr(caller.peer), "session opened");
                // What re-opening it elsewhere needs: the OpenSession sent, the credentials, the delegation.
                let origin = Origin {
                    // A copy of its own: `req.bytes` is a slice of the connection's 64 KiB read buffer, and
                    // kept for the session's life it kept that whole buffer (3.1 KiB of RSS per session
                    // in the bench's idle scenario, against 0.4 before sessions could move).
                    open_request: Bytes::copy_from_slice(&req.bytes),
                    creds: caller.creds.clone(),
                    delegate_as: caller.delegate_as.as_ref().and(users.effective_user.clone()),
                };
                proxy.learn_session(NewSession {
                    handle,
                    backend: backend.id,
                    users,
                    origin: Some(Arc::new(origin)),
                    carrier: backend.pool.key_for(&caller.creds).user,
                    conn: Some(conn),
                    learned: Learned::Opened,
                    client: Some(caller.peer),
                    rule: opening.plan.placed_by(backend),
                });
                opening.plan.settle();
                self.attached.first_use(handle.guid);
                proxy.metrics().session_opened(&backend.addr);
            }
            Effect::ClosesSession => {
                if let Some(g) = session {
                    if let Some(entry) = proxy.forget_session(&g) {
                        tracing::info!(session = %g, backend = %backend.addr, user = %LogName(entry.users.user.as_deref()),
                            effective_user = %LogName(entry.users.effective_user.as_deref()), client = %Addr(caller.peer), "session closed");
                    }
                    self.attached.forget(&g);
                }
            }
            Effect::ClosesOperation => {
                if let Some(op) = req.operation {
                    proxy.forget_operation(&op.guid);
                }
            }
            Effect::OpensOperation => {
                if let (Some(op), Some(s)) = (sum.new_operation, session) {
                    proxy.learn_operation(op, s, req.statement.as_deref());
                }
                if let (Some(s), Some(statement)) = (session, &req.statement) {
                    proxy.record_statement(&s, sum.new_operation.map(|o| o.guid).as_ref(), statement);
                }
            }
            Effect::None => {
                if let (Some(op), Some(state)) = (req.operation, sum.operation_state) {
                    proxy.operation_outcome(&op.guid, state);
                }
            }
        }
    }

    /// The user a new session must run as on a backend that sees the proxy's own identity: the caller,
    /// or the user the caller itself delegates to (Hue's `impala.doas.user`) when `[kerberos.proxy_users]`
    /// allows it. `None` when the caller's own identity reaches the backend (which then checks any
    /// delegation the client asks for itself). `Err` holds Impala's text for a refused delegation.
    fn delegated_user(&self, view: Result<&OpenSessionView, &ProtocolError>) -> Result<Option<String>, String> {
        // The trusted hop: the caller's own name reaches the backend; only what it asks for is delegated.
        let own = self.caller.identity.as_ref().filter(|_| self.caller.asserted);
        let Some(proxy_user) = self.caller.delegate_as.as_ref().or(own) else { return Ok(None) };
        let view = view.map_err(|e| format!("hs2-proxy: unreadable OpenSession: {e}"))?;
        let asked =
            crate::kerberos::delegation::requested(view.configuration.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let Some((_, user)) = asked else { return Ok(self.caller.delegate_as.clone()) };
        let empty = crate::kerberos::delegation::ProxyUsers::default();
        let allowed = self.proxy.config().kerberos.as_ref().map_or(&empty, |k| &k.proxy_users);
        allowed.authorize(proxy_user, user)?;
        Ok(Some(user.to_string()))
    }

    /// This OpenSession with its delegation set for `backend`: `impala.doas.user` for impalad,
    /// `hive.server2.proxy.user` for Hive and Spark, by the backend's kind; while the kind is unknown (no
    /// probe has answered yet), `kerberos.delegation` if set, else both keys: impalad ignores Hive's key
    /// (an unknown query option) and Hive/Spark ignore Impala's, whereas the wrong key alone would run
    /// the session as the proxy's own identity.
    fn delegating(&self, backend: &Backend, user: &str) -> Result<Request, String> {
        let keys = backend.delegation_keys(self.proxy.config().kerberos.as_ref().and_then(|k| k.delegation));
        let limits = self.proxy.config().limits.request;
        let bytes = crate::hs2::open_session::with_delegation(&self.req.bytes, &limits, keys, user)
            .map_err(|e| format!("hs2-proxy: unreadable OpenSession: {e}"))?;
        Request::parse(bytes.into(), limits).map_err(|e| format!("hs2-proxy: unreadable OpenSession: {e}"))
    }

    /// Where this OpenSession may go, by the routing rules and the session limits; `Err` is the text.
    fn plan_session(&self, users: &SessionUsers, view: &OpenSessionView) -> Result<Plan, String> {
        let who = Who {
            user: users.user.as_deref(),
            effective_user: users.effective_user.as_deref(),
            address: self.caller.peer.ip(),
            listener: self.caller.listener,
            config: &view.configuration,
        };
        placement::plan(self.proxy, &who)
    }

    /// Who a new session is for: the authenticated identity, else OpenSession's `username`; and the user
    /// it runs as: the one the proxy delegates (`delegated`: the key it writes into the request the
    /// backend gets), else the one the client's request names, else `user`.
    fn users_of(&self, view: &OpenSessionView, delegated: Option<&str>) -> SessionUsers {
        let owner = self.caller.identity.clone();
        let user = owner.clone().or(view.username.clone());
        let effective_user = delegated.or(view.delegated_user()).map(str::to_string).or(user.clone());
        SessionUsers { owner, user, effective_user }
    }

    async fn reply_error<S: ReplySink>(&self, sink: &mut S, text: &str) -> Result<(), CallEnd> {
        write_error(self.proxy, sink, self.req, text).await
    }
}

/// Writes an HS2 error reply to `req` (valid for its method's IDL) into `sink`.
pub async fn write_error<S: ReplySink>(proxy: &Proxy, sink: &mut S, req: &Request, text: &str) -> Result<(), CallEnd> {
    let bytes = reply::error_reply(req.name(), req.header.seqid, text);
    let stall = proxy.config().timeouts.client_write;
    sink.write_part(&bytes, stall).await?;
    sink.end_reply(stall).await?;
    Ok(())
}
