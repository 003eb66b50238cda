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
use std::sync::Arc;
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
use crate::metrics::{BackendFigures, Metrics, StateFigures};
use crate::misses::Misses;
use crate::routing::{
    BackendId, Load, NewSession, OperationTarget, PoolIntent, Route, Routes, SessionEntry, SessionView,
};

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
}

impl Proxy {
    pub fn new(config: Config, registrar: Option<Registrar>) -> Proxy {
        let shared = Shared {
            registrar,
            backends: Backends::new(&config),
            routes: Routes::new(),
            misses: Misses::default(),
            metrics: Metrics::new(),
            budget: RequestBudget::new(config.limits.max_buffered_request_bytes),
            rotor: AtomicUsize::new(0),
            stop: watch::channel(false).0,
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
        let Some(t) = backend.health().record(evidence, thresholds) else { return };
        self.refresh_availability();
        if t.to == Observed::Up {
            tracing::info!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
            return;
        }
        tracing::warn!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
        if t.to == Observed::Down {
            let dropped = self.shared.routes.forget_backend(backend.id);
            // Connections busy right now come back later: their pins must not outlive the sessions.
            dropped.iter().filter_map(|(_, entry)| entry.unpin()).for_each(|intent| self.apply(intent));
            backend.pool.close_all_idle();
            for (guid, entry) in &dropped {
                tracing::info!(session = %guid, backend = %backend.addr, user = ?entry.users.user,
                    effective_user = ?entry.users.effective_user, "session forgotten: its backend is down");
            }
            tracing::warn!(backend = %backend.addr, sessions = dropped.len(),
                "backend down: its sessions are forgotten; clients will reopen them elsewhere");
        }
    }

    // ---- routing

    /// Where `req` goes for a client authenticated as `caller`.
    pub fn route(&self, req: &Request, caller: Option<&str>) -> Route {
        self.shared.routes.route(req, caller)
    }

    /// Records a session and pins the connection that opened it.
    pub fn learn_session(&self, session: NewSession) {
        let guid = session.handle.guid;
        if let Some(intent) = self.shared.routes.learn_session(session) {
            self.apply(intent);
        }
        self.shared.misses.forget(&guid);
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

    pub fn attach(&self, session: &Guid, peer: SocketAddr) {
        self.shared.routes.attach(session, peer);
    }

    pub fn detach(&self, session: &Guid, peer: SocketAddr, now: Instant) {
        self.shared.routes.detach(session, peer, now);
    }

    pub fn touch(&self, session: &Guid) {
        self.shared.routes.touch(session);
    }

    /// Sessions no client connection has used for the grace period after the last one closed.
    pub fn abandoned(&self, now: Instant) -> Vec<Guid> {
        self.shared.routes.abandoned(now, self.shared.config.sessions.disconnected_grace)
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
