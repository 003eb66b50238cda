//! The listener and the proxy's shared state: accepts client connections within the connection limit,
//! runs one health task per backend and the periodic clean-up, applies configuration reloads, and stops
//! everything on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::admin::metrics::Metrics;
use crate::backend::health::{AdminState, Evidence, Observed, Thresholds};
use crate::backend::pool::{Credentials, PoolError};
use crate::backend::probe::{self, ProbeTarget};
use crate::backend::{metrics, Backend, Backends, ProbeReport};
use crate::config::{BackendTransport, Config};
use crate::hs2::requests;
use crate::recover::NegativeCache;
use crate::routing::{Routes, SessionEntry};

/// State shared by every task: a cheap-clone `Arc` handle.
pub struct Proxy {
    pub config: Config,
    pub backends: Backends,
    pub routes: Routes,
    /// Handles no backend held when last asked.
    pub negative: NegativeCache,
    /// Turns ties between equally loaded backends.
    rotor: AtomicUsize,
    stop: watch::Sender<bool>,
    /// Counted metrics (`/metrics`); the rest is read from the state at scrape time.
    pub metrics: Metrics,
    /// The listeners' TLS and HTTP state (`frontend`).
    pub front: crate::frontend::Front,
}

impl Proxy {
    pub fn new(config: Config) -> Proxy {
        Proxy {
            backends: Backends::new(&config),
            routes: Routes::new(),
            negative: NegativeCache::default(),
            rotor: AtomicUsize::new(0),
            stop: watch::channel(false).0,
            metrics: Metrics::new(),
            front: crate::frontend::Front::new(&config),
            config,
        }
    }

    /// Flips to `true` when the proxy stops (for tasks outside this module, like the admin listener).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn next_rotor(&self) -> usize {
        self.rotor.fetch_add(1, Ordering::Relaxed)
    }

    pub fn service_credentials(&self) -> Credentials {
        let c = &self.config.service_credentials;
        Credentials { user: c.user.clone(), password: c.password.clone() }
    }

    /// Checks a SASL client's credentials by authenticating upstream with them (so LDAP checks the
    /// password at the impalad). The connection opened for the check stays pooled for the user's calls.
    /// `Err` holds the text the client is shown.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<(), String> {
        if self.backends.transport == BackendTransport::Nosasl {
            // The backends authenticate nobody; the name still owns the user's sessions.
            return Ok(());
        }
        let mut last = String::from("no backend is available");
        for backend in self.backends.preference(self.next_rotor()) {
            match backend.pool.checkout(creds).await {
                Ok(up) => {
                    backend.pool.checkin(up);
                    return Ok(());
                }
                Err(PoolError::AuthRefused { message, .. }) => return Err(message),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("hs2-proxy could not check the credentials: {last}"))
    }

    /// Applies evidence about a backend. Going down fails its sessions over at once: they are forgotten,
    /// so their next call gets `Invalid session id` and Hue opens a new session elsewhere.
    pub fn apply_evidence(&self, backend: &Backend, evidence: Evidence) {
        let thresholds = Thresholds { rise: self.config.health.rise, fall: self.config.health.fall };
        let Some(t) = backend.health().record(evidence, thresholds) else { return };
        if t.to == Observed::Up {
            tracing::info!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
            return;
        }
        tracing::warn!(backend = %backend.addr, from = %t.from, to = %t.to, reason = %t.reason, "backend state changed");
        if t.to == Observed::Down {
            let dropped = self.routes.forget_backend_sessions(backend.id);
            backend.pool.close_all_idle();
            for (session, user) in &dropped {
                tracing::info!(session = %session, backend = %backend.addr, user = ?user,
                    "session forgotten: its backend is down");
            }
            tracing::warn!(backend = %backend.addr, sessions = dropped.len(),
                "backend down: its sessions are forgotten; clients will reopen them elsewhere");
        }
    }

    /// Operator state of the backend at `addr`; false when there is none.
    pub fn set_admin(&self, addr: &str, state: AdminState) -> bool {
        let Some(b) = self.backends.find(addr) else { return false };
        b.set_admin(state);
        tracing::info!(backend = %addr, state = %state, "operator set backend state");
        true
    }

    /// Applies a new backend list: adds new backends, re-weights known ones, drains removed ones (they
    /// leave once their last session is gone). Other settings need a restart.
    pub fn reload_backends(self: &Arc<Self>, config: &Config) {
        let known = self.backends.all();
        for cfg in &config.backends {
            match known.iter().find(|b| b.addr == cfg.addr) {
                Some(b) => {
                    b.weight.store(cfg.weight, Ordering::Relaxed);
                    if b.removing.swap(false, Ordering::Relaxed) {
                        b.set_admin(AdminState::Active);
                    }
                }
                None => {
                    let b = self.backends.add(cfg, &self.config);
                    tracing::info!(backend = %b.addr, "backend added");
                    spawn_health(self, b);
                }
            }
        }
        for b in known.iter().filter(|b| !config.backends.iter().any(|c| c.addr == b.addr)) {
            if !b.removing.swap(true, Ordering::Relaxed) {
                b.set_admin(AdminState::Drain);
                tracing::info!(backend = %b.addr, sessions = b.sessions.load(Ordering::Relaxed),
                    "backend removed from the configuration: draining");
            }
        }
    }

    /// Closes abandoned sessions upstream and drops idle upstream connections; called periodically.
    pub async fn clean_up(&self) {
        let now = Instant::now();
        for guid in self.routes.abandoned(now, self.config.disconnected_grace) {
            if let Some(entry) = self.routes.forget_session(&guid) {
                tracing::info!(session = %guid, backend = %entry.backend.addr, user = ?entry.user,
                    "no client used the session within the grace period: closing it upstream");
                close_upstream(&entry, guid, &self.config).await;
            }
        }
        for b in self.backends.all() {
            let closed = b.pool.close_idle(now);
            if closed > 0 {
                tracing::debug!(backend = %b.addr, closed, "closed idle upstream connections");
            }
        }
    }
}

/// CloseSession on an idle connection of the session's user; without one, impalad expires the session
/// by itself (`--disconnected_session_timeout`).
async fn close_upstream(entry: &SessionEntry, guid: crate::hs2::handle::Guid, config: &Config) {
    let Some(mut up) = entry.backend.pool.checkout_idle_of(pooled_user(entry, config)) else {
        tracing::info!(session = %guid, "no idle upstream connection to close the session on; the server will expire it");
        return;
    };
    let call = requests::close_session(&entry.handle(guid), 0);
    let exchange = async {
        up.conn.write_message(&call).await?;
        up.conn.read_message(config.reply_limits).await
    };
    match tokio::time::timeout(config.pool.connect_timeout, exchange).await {
        Ok(Ok(Some(_))) => entry.backend.pool.checkin(up),
        _ => entry.backend.pool.discard(up),
    }
}

/// The user whose upstream connections may carry a call on `entry`'s session.
fn pooled_user<'a>(entry: &'a SessionEntry, config: &'a Config) -> Option<&'a str> {
    match config.backend_transport {
        BackendTransport::Nosasl => None,
        BackendTransport::Sasl => Some(entry.user.as_deref().unwrap_or(&config.service_credentials.user)),
    }
}

/// A running proxy: its address, its state, and the switch that stops it.
pub struct ProxyHandle {
    pub local_addr: SocketAddr,
    /// The admin HTTP listener (API, status page, metrics), unless turned off.
    pub admin_addr: Option<SocketAddr>,
    /// The extra listener of `http.listen`, if set.
    pub http_addr: Option<SocketAddr>,
    pub proxy: Arc<Proxy>,
}

impl ProxyHandle {
    /// Stops accepting and stops the background tasks; open connections finish their current call.
    pub fn shutdown(&self) {
        let _ = self.proxy.stop.send(true);
    }

    /// Waits until [`ProxyHandle::shutdown`] is called.
    pub async fn stopped(&self) {
        stopped(&mut self.proxy.stop.subscribe()).await;
    }
}

/// Binds the listeners (HS2, and admin unless turned off) and starts serving in the background.
/// The config keeps the bound addresses, so that port 0 shows as the port actually used.
pub async fn start(mut config: Config) -> std::io::Result<ProxyHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    config.listen = local_addr;
    let admin = match config.admin.listen {
        Some(addr) => {
            let admin = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("admin.listen {addr}: {e} (set another with --admin-listen)"))
            })?;
            config.admin.listen = Some(admin.local_addr()?);
            Some(admin)
        }
        None => None,
    };
    let admin_addr = config.admin.listen;
    let http = match config.http.listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("http.listen {addr}: {e} (set another with --http-listen)"))
            })?;
            config.http.listen = Some(l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    let http_addr = config.http.listen;
    let proxy = Arc::new(Proxy::new(config));
    for b in proxy.backends.all() {
        spawn_health(&proxy, b);
    }
    // One connection limit for all listeners.
    let permits = Arc::new(Semaphore::new(proxy.config.max_client_connections));
    tokio::spawn(accept_loop(listener, proxy.clone(), permits.clone()));
    if let Some(http) = http {
        tokio::spawn(accept_loop(http, proxy.clone(), permits));
    }
    tokio::spawn(clean_up_loop(proxy.clone()));
    if let Some(admin) = admin {
        crate::admin::serve(admin, proxy.clone());
    }
    tracing::info!(listen = %local_addr, admin = ?admin_addr, backends = proxy.backends.all().len(), "hs2-proxy listening");
    Ok(ProxyHandle { local_addr, admin_addr, http_addr, proxy })
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, permits: Arc<Semaphore>) {
    let mut stop = proxy.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            proxy.metrics.client_refused();
            tracing::warn!(client = %peer, limit = proxy.config.max_client_connections,
                "connection limit reached: closing the new connection");
            continue;
        };
        let proxy = proxy.clone();
        proxy.metrics.client_connected();
        tokio::spawn(async move {
            crate::frontend::serve(proxy.clone(), stream, peer).await;
            proxy.metrics.client_disconnected();
            drop(permit);
        });
    }
}

/// Resolves once the stop switch is on (the guard `wait_for` returns must not live across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn clean_up_loop(proxy: Arc<Proxy>) {
    let mut tick = tokio::time::interval(proxy.config.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = proxy.stop.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => proxy.clean_up().await,
            _ = stopped(&mut stop) => return,
        }
    }
}

/// One task per backend: probe every interval (or at once when live traffic saw a failure), refresh the
/// impalad's own session count when configured, and remove a drained backend that left the config.
/// Holds the proxy weakly so that a stopped proxy's state can be freed.
fn spawn_health(proxy: &Arc<Proxy>, backend: Arc<Backend>) {
    let weak = Arc::downgrade(proxy);
    let mut stop = proxy.stop.subscribe();
    tokio::spawn(async move {
        loop {
            let Some(interval) = weak.upgrade().map(|p| p.config.health.interval) else { return };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = backend.probe_now.notified() => {}
                _ = stopped(&mut stop) => return,
            }
            if !health_round(&weak, &backend).await {
                return;
            }
        }
    });
}

/// One probe round; false when the task should end.
async fn health_round(weak: &Weak<Proxy>, backend: &Arc<Backend>) -> bool {
    let Some(proxy) = weak.upgrade() else { return false };
    let creds = proxy.service_credentials();
    let target = ProbeTarget { endpoint: backend.pool.endpoint(), creds: &creds, timeout: proxy.config.health.timeout };
    let (evidence, latency) = probe::probe(&target).await;
    let (outcome, result) = match &evidence {
        Evidence::Alive => ("alive".to_string(), "alive"),
        Evidence::ShuttingDown(t) => (format!("shutting down: {t}"), "shutting_down"),
        Evidence::Failed(t) | Evidence::Unreachable(t) => (format!("failed: {t}"), "failed"),
    };
    proxy.metrics.probe(&backend.addr, result, latency);
    *backend.last_probe.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(ProbeReport { at: SystemTime::now(), latency, outcome });
    proxy.apply_evidence(backend, evidence);
    if let Some(url) = &backend.metrics_url {
        let count = metrics::open_sessions(url, proxy.config.health.timeout).await;
        if let Err(e) = &count {
            tracing::debug!(backend = %backend.addr, error = %e, "impalad metrics unavailable");
        }
        backend.set_external_sessions(count.ok());
    }
    if backend.removing.load(Ordering::Relaxed) && backend.sessions.load(Ordering::Relaxed) == 0 {
        proxy.backends.remove(backend.id);
        tracing::info!(backend = %backend.addr, "drained backend removed");
        return false;
    }
    true
}
