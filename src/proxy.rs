//! The proxy's shared state as a cheap-clone handle with methods and no public fields (mini-redis's
//! `Db`): the validated configuration, the backends, the routing tables, the metrics, the request
//! budget and the stop switch. Tasks ask it for what they need; nothing reaches into another module's
//! tables.
//!
//! Table changes that concern a backend's pool (pin the connection that opened a session, unpin it
//! when the session goes) come back from `routing` as intents and are applied here, so that no caller
//! can forget them. Health evidence is applied here too, because going down also forgets sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use crate::backend::health::{state_name, AdminState, Evidence, Observed, Thresholds};
use crate::backend::pool::Credentials;
use crate::backend::{Backend, Backends};
use crate::config::{BackendConfig, Config};
use crate::conn::RequestBudget;
use crate::discovery::{DiscoveryState, Registrar};
use crate::hs2::call::Request;
use crate::hs2::handle::{Guid, HandleId};
use crate::limits::ConnectionCounts;
use crate::metrics::{BackendFigures, Metrics, StateFigures};
use crate::misses::Misses;
use crate::routing::{
    BackendId, Learned, Load, MovePlan, NewSession, NotNow, OperationTarget, PoolIntent, Route, Routes, SessionEntry,
    SessionView,
};
use crate::rules::Policy;

/// The shared state; clones share it.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    backends: Backends,
    routes: Routes,
    /// Handles no backend held when last asked (`recover`).
    misses: Misses,
    metrics: Metrics,
    /// Unfinished request bytes all client connections may hold together.
    budget: RequestBudget,
    /// Turns ties between equally loaded backends.
    rotor: AtomicUsize,
    /// Flips to `true` once, when the proxy starts shutting down.
    stop: watch::Sender<bool>,
    /// ZooKeeper registration (`[discovery]`), when configured.
    registrar: Option<Registrar>,
    /// Signalled whenever a session move ends, for calls waiting on a moving session.
    moved: tokio::sync::Notify,
    /// Groups and rules for new sessions; replaced on reload.
    policy: RwLock<Arc<Policy>>,
    /// OpenSessions on their way, per `user:<name>` and `group:<name>` (limits count them as held).
    opening: ConnectionCounts,
    /// Open client connections per authenticated user, and per client address.
    connections_per_user: ConnectionCounts,
    connections_per_address: ConnectionCounts,
}

impl Proxy {
    /// `initiator`: the proxy's Kerberos credentials (`[kerberos] client_principal`), acquired at start.
    pub fn new(config: Config, registrar: Option<Registrar>, initiator: Option<crate::kerberos::Credential>) -> Proxy {
        let shared = Shared {
            registrar,
            moved: tokio::sync::Notify::new(),
            backends: Backends::new(&config, initiator),
            routes: Routes::new(),
            misses: Misses::default(),
            metrics: Metrics::new(),
            budget: RequestBudget::new(config.limits.max_buffered_request_bytes),
            rotor: AtomicUsize::new(0),
            stop: watch::channel(false).0,
            policy: RwLock::new(Arc::new(config.policy.clone())),
            opening: ConnectionCounts::default(),
            connections_per_user: ConnectionCounts::default(),
            connections_per_address: ConnectionCounts::default(),
            config,
        };
        Proxy { shared: Arc::new(shared) }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn budget(&self) -> &RequestBudget {
        &self.shared.budget
    }

    pub fn misses(&self) -> &Misses {
        &self.shared.misses
    }

    /// What clients that did not authenticate use upstream.
    pub fn service_credentials(&self) -> Credentials {
        let c = &self.shared.config.backend_auth.service;
        Credentials { user: c.user.clone(), password: c.password.clone() }
    }

    /// The proxy's own identity upstream with Kerberos (`kerberos.client_principal`); the service user's
    /// when there is none.
    pub fn proxy_credentials(&self) -> Credentials {
        match self.shared.config.kerberos.as_ref().and_then(|k| k.upstream.as_ref()) {
            Some(u) => crate::identity::proxy_credentials(&u.client_principal),
            None => self.service_credentials(),
        }
    }

    // ---- policy and limits

    /// The groups and rules new sessions follow now.
    pub fn policy(&self) -> Arc<Policy> {
        self.shared.policy.read().map_or_else(|p| p.into_inner().clone(), |p| p.clone())
    }

    /// Replaces the rules (reload); sessions already open stay where they are.
    pub fn set_policy(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.shared.policy.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// Sessions this instance holds for `user` (`SessionUsers::user`).
    pub fn sessions_of(&self, user: &str) -> u64 {
        self.shared.routes.sessions_of(user)
    }

    /// OpenSessions on their way, by limit key (see `placement`).
    pub fn opening(&self) -> &ConnectionCounts {
        &self.shared.opening
    }

    /// Takes a connection's place for the authenticated `user` under `limits.max_connections_per_user`;
    /// `Err` is the reason for the logged close.
    pub fn enter_connection_of(&self, user: &str) -> Result<crate::limits::Held, String> {
        let max = self.shared.config.limits.max_connections_per_user;
        self.shared.connections_per_user.enter(user, max).map_err(|n| {
            format!(
                "user '{user}' already has {n} connections (limits.max_connections_per_user = {})",
                max.unwrap_or(0)
            )
        })
    }

    /// Takes a connection's place for the client address `ip` under `limits.max_connections_per_address`.
    pub fn enter_connection_from(&self, ip: std::net::IpAddr) -> Result<crate::limits::Held, String> {
        let max = self.shared.config.limits.max_connections_per_address;
        self.shared.connections_per_address.enter(&ip.to_string(), max).map_err(|n| {
            format!("{ip} already has {n} connections (limits.max_connections_per_address = {})", max.unwrap_or(0))
        })
    }

    // ---- shutdown

    /// Flips to `true` when the proxy starts shutting down.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.shared.stop.subscribe()
    }

    pub fn is_stopping(&self) -> bool {
        *self.shared.stop.borrow()
    }

    /// Stops accepting and tells every task to finish; idempotent.
    pub fn begin_shutdown(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Takes this instance out of ZooKeeper for good (before draining, so new clients go elsewhere);
    /// bounded. Does nothing without `[discovery]`.
    pub async fn deregister(&self) {
        if let Some(r) = &self.shared.registrar {
            let how = r.deregister().await;
            tracing::info!(result = ?how, "deregistered from ZooKeeper");
        }
    }

    /// The ZooKeeper registration, as the admin view shows it.
    pub fn discovery(&self) -> Option<DiscoveryState> {
        self.shared.registrar.as_ref().map(Registrar::state)
    }

    /// Registered in ZooKeeper only while some backend takes new sessions (clients finding a proxy that
    /// cannot open a session would fail); called whenever a backend's state may have changed.
    pub fn refresh_availability(&self) {
        if let Some(r) = &self.shared.registrar {
            r.set_available(self.backends().iter().any(|b| self.is_eligible(b)));
        }
    }

    // ---- backends

    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.shared.backends.all()
    }

    pub fn backend(&self, id: BackendId) -> Option<Arc<Backend>> {
        self.shared.backends.get(id)
    }

    pub fn find_backend(&self, addr: &str) -> Option<Arc<Backend>> {
        self.shared.backends.find(addr)
    }

    /// Backends in the order a new session should try them: least loaded first, ties rotating.
    pub fn preference(&self) -> Vec<Arc<Backend>> {
        let rotor = self.shared.rotor.fetch_add(1, Ordering::Relaxed);
        self.shared.backends.preference(rotor, |id| self.shared.routes.load(id))
    }

    /// The same order without turning the rotor, for what opens no session (a password check, `explain`):
    /// a turn taken by a client's check would skip its own OpenSession's backend, and with two backends
    /// send every such client to the same one.
    pub fn preference_now(&self) -> Vec<Arc<Backend>> {
        let rotor = self.shared.rotor.load(Ordering::Relaxed);
        self.shared.backends.preference(rotor, |id| self.shared.routes.load(id))
    }

    pub fn add_backend(&self, cfg: &BackendConfig) -> Arc<Backend> {
        self.shared.backends.add(cfg, &self.shared.config)
    }

    /// Drops a backend from the list; only once it holds no session.
    pub fn remove_backend(&self, id: BackendId) -> bool {
        if self.load(id).sessions > 0 {
            return false;
        }
        self.shared.backends.remove(id);
        true
    }

    /// Live sessions and operations the proxy routes to `id`.
    pub fn load(&self, id: BackendId) -> Load {
        self.shared.routes.load(id)
    }

    /// True when `id` takes new sessions.
    pub fn is_eligible(&self, backend: &Backend) -> bool {
        backend.candidate(self.load(backend.id)).eligible
    }

    /// Operator state of the backend at `addr`; false when there is none.
    pub fn set_admin(&self, addr: &str, state: AdminState) -> bool {
        let Some(b) = self.find_backend(addr) else { return false };
        b.set_admin(state);
        tracing::info!(backend = %addr, state = %state, "operator set backend state");
        self.refresh_availability();
        true
    }

    /// Applies evidence about a backend. Going down fails its sessions over at once: they are forgotten,
    /// so their next call gets `Invalid session id` and Hue opens a new session elsewhere.
    pub fn apply_evidence(&self, backend: &Backend, evidence: Evidence) {
        let h = &self.shared.config.health;
        let thresholds = Thresholds { rise: h.rise, fall: h.fall };
        let Some(t) = backend.record(evidence, thresholds) else { return };
        self.refresh_availability();
        if t.to == Observed::Up {
            tracing::info!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
            return;
        }
        tracing::warn!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
        if t.to == Observed::Down {
            let (kept, dropped) = if self.shared.config.sessions.move_on_failure {
                self.shared.routes.orphan_backend(backend.id)
            } else {
                (0, self.shared.routes.forget_backend(backend.id))
            };
            // Connections busy right now come back later: their pins must not outlive the sessions.
            dropped.iter().filter_map(|(_, entry)| entry.unpin()).for_each(|intent| self.apply(intent));
            backend.pool.close_all_idle();
            for (guid, entry) in &dropped {
                tracing::info!(session = %guid, backend = %backend.addr, user = %crate::routing::LogName(entry.users.user.as_deref()),
                    effective_user = %crate::routing::LogName(entry.users.effective_user.as_deref()), "session forgotten: its backend is down");
            }
            tracing::warn!(backend = %backend.addr, forgotten = dropped.len(), to_move = kept,
                "backend down: its movable sessions move on their next call, the others are forgotten");
        }
    }

    // ---- routing

    /// Where `req` goes for a client authenticated as `caller`.
    pub fn route(&self, req: &Request, caller: Option<&str>) -> Route {
        self.shared.routes.route(req, caller)
    }

    /// Records a session and pins the connection that opened it. A session opened here wakes the tasks
    /// that read the impalads' own load (`control::load`): the next choice should see it, and what the
    /// other instances opened meanwhile.
    pub fn learn_session(&self, session: NewSession) {
        let (guid, opened) = (session.handle.guid, session.learned == Learned::Opened);
        if let Some(intent) = self.shared.routes.learn_session(session) {
            self.apply(intent);
        }
        self.shared.misses.forget(&guid);
        if opened {
            self.backends().iter().filter(|b| b.metrics_url.is_some()).for_each(|b| b.load_now.notify_one());
        }
    }

    pub fn learn_operation(&self, op: HandleId, session: Guid, statement: Option<&str>) {
        self.shared.routes.learn_operation(op, session, statement);
    }

    pub fn learn_orphan_operation(&self, op: HandleId, backend: BackendId) {
        self.shared.routes.learn_orphan_operation(op, backend);
        self.shared.misses.forget(&op.guid);
    }

    /// Forgets a session; returns it when it was known.
    pub fn forget_session(&self, guid: &Guid) -> Option<SessionEntry> {
        let entry = self.shared.routes.forget_session(guid)?;
        if let Some(intent) = entry.unpin() {
            self.apply(intent);
        }
        Some(entry)
    }

    pub fn forget_operation(&self, op: &Guid) {
        self.shared.routes.forget_operation(op);
    }

    /// Applies a backend's error text: forgets what it says it no longer has. True when something was.
    pub fn forget_on_error(&self, req: &Request, error: &str) -> bool {
        let (session, dropped) = self.shared.routes.forget_on_error(req, error);
        if let Some(intent) = session.as_ref().and_then(SessionEntry::unpin) {
            self.apply(intent);
        }
        dropped
    }

    fn apply(&self, intent: PoolIntent) {
        match intent {
            PoolIntent::Pin { backend, conn } => {
                if let Some(b) = self.backend(backend) {
                    b.pool.pin(conn);
                }
            }
            PoolIntent::Unpin { backend, conn } => {
                if let Some(b) = self.backend(backend) {
                    b.pool.unpin(conn);
                }
            }
        }
    }

    // ---- moving sessions (`migrate`)

    pub fn record_statement(&self, session: &Guid, op: Option<&Guid>, statement: &str) {
        self.shared.routes.record_statement(session, op, statement);
    }

    /// What GetOperationStatus said of an operation (`TOperationState`), for its statement's replay.
    pub fn operation_outcome(&self, op: &Guid, operation_state: i64) {
        self.shared.routes.operation_outcome(op, operation_state);
    }

    pub fn begin_move(&self, guid: &Guid, ignore_operations: bool) -> Result<MovePlan, NotNow> {
        self.shared.routes.begin_move(guid, ignore_operations)
    }

    pub fn finish_move(&self, plan: &MovePlan, to: BackendId, new: HandleId, conn: u64) {
        for intent in self.shared.routes.finish_move(plan, to, new, conn) {
            self.apply(intent);
        }
        self.shared.moved.notify_waiters();
    }

    pub fn abort_move(&self, guid: &Guid) {
        self.shared.routes.abort_move(guid);
        self.shared.moved.notify_waiters();
    }

    /// Waits (at most `limit`) until `guid` is not moving any more.
    pub async fn wait_for_move(&self, guid: &Guid, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let moved = self.shared.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let moving = self.with_session(guid, |e| e.mobility.moving).unwrap_or(false);
            if !moving || tokio::time::timeout_at(deadline, moved).await.is_err() {
                return;
            }
        }
    }

    /// Counts a call of `session` as on its way to its backend until the guard drops; `None` when the
    /// session started moving since the call was routed (route it again).
    pub fn enter_call(&self, session: &Guid) -> Option<SessionCall> {
        self.shared.routes.enter_call(session).then(|| SessionCall { proxy: self.clone(), session: *session })
    }

    /// True when the session's backend died and the session waits to move on its next call.
    pub fn is_orphaned(&self, guid: &Guid) -> bool {
        self.shared.routes.is_orphaned(guid)
    }

    /// Sessions the proxy routes to `backend`.
    pub fn sessions_on(&self, backend: BackendId) -> Vec<Guid> {
        self.shared.routes.sessions_on(backend)
    }

    pub fn attach(&self, session: &Guid, peer: SocketAddr) {
        self.shared.routes.attach(session, peer);
    }

    pub fn detach(&self, session: &Guid, peer: SocketAddr, now: Instant) {
        self.shared.routes.detach(session, peer, now);
    }

    /// Sessions no client connection has used for the grace period after the last one closed.
    pub fn abandoned(&self, now: Instant) -> Vec<Guid> {
        self.shared.routes.abandoned(now, self.shared.config.sessions.disconnected_grace)
    }

    /// Clean-up found `session` used elsewhere: look again once it could have been idle for the grace.
    pub fn defer_cleanup(&self, session: &Guid, recheck_in: std::time::Duration, now: Instant) {
        let grace = self.shared.config.sessions.disconnected_grace;
        let since = now.checked_sub(grace.saturating_sub(recheck_in)).unwrap_or(now);
        self.shared.routes.defer_cleanup(session, since);
    }

    pub fn session_count(&self) -> usize {
        self.shared.routes.session_count()
    }

    pub fn operation_count(&self) -> usize {
        self.shared.routes.operation_count()
    }

    pub fn session_ids(&self) -> Vec<Guid> {
        self.shared.routes.session_ids()
    }

    pub fn with_session<T>(&self, guid: &Guid, f: impl FnOnce(&SessionEntry) -> T) -> Option<T> {
        self.shared.routes.with_session(guid, f)
    }

    /// The address of the backend that holds `guid`, if the proxy knows the session.
    pub fn session_backend(&self, guid: &Guid) -> Option<String> {
        let id = self.with_session(guid, |e| e.backend)?;
        self.backend(id).map(|b| b.addr.clone())
    }

    pub fn sessions(&self) -> Vec<SessionView> {
        self.shared.routes.snapshot(Instant::now())
    }

    pub fn operation_target(&self, op: &Guid) -> Option<OperationTarget> {
        self.shared.routes.operation_target(op)
    }

    // ---- views

    /// The state as the metrics show it, read now.
    pub fn figures(&self) -> StateFigures {
        let backends = self.backends().iter().map(|b| self.backend_figures(b)).collect();
        StateFigures {
            sessions: self.session_count(),
            operations: self.operation_count(),
            max_client_connections: self.shared.config.limits.max_client_connections,
            buffered_request_bytes: self.shared.budget.in_use(),
            max_buffered_request_bytes: self.shared.budget.limit(),
            backends,
        }
    }

    pub fn backend_figures(&self, b: &Backend) -> BackendFigures {
        let load = self.load(b.id);
        let state = {
            let h = b.health();
            state_name(h.observed, h.admin)
        };
        BackendFigures {
            addr: b.addr.clone(),
            sessions: load.sessions,
            operations: load.operations,
            inflight: b.inflight.load(Ordering::Relaxed),
            weight: b.weight.load(Ordering::Relaxed),
            state,
            impalad_sessions: b.external_sessions(),
            load: crate::metrics::LoadGauges::of(&b.load_figures(load), b.ramp()),
            pool: b.pool.stats(),
        }
    }

    /// When the proxy was started (for the status page).
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.metrics.uptime()
    }

    /// Wall-clock start, for the API.
    pub fn started_at(&self) -> SystemTime {
        SystemTime::now() - self.uptime()
    }
}

/// A call of a session on its way to the session's backend (see [`Proxy::enter_call`]): a move of the
/// session waits until it drops.
pub struct SessionCall {
    proxy: Proxy,
    session: Guid,
}

impl Drop for SessionCall {
    fn drop(&mut self) {
        self.proxy.shared.routes.leave_call(&self.session);
    }
}
