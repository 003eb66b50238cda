//! Backends: the impalads (or other HS2 servers) behind the proxy, with their health, load counters and
//! upstream pools.
//!
//! The set changes at run time (config reload, admin actions): [`Backends`] holds `Arc<Backend>`s
//! behind a lock that is only held to copy the list, never across an `.await`. Sessions hold their
//! backend's `Arc`, so a removed backend lives on until its last session is gone.

pub mod connect;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod probe;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use crate::balance::Candidate;
use crate::config::{BackendConfig, BackendKind, BackendTransport, Config};
use health::{AdminState, Health};
use pool::Pool;

/// The last probe of a backend, for the operator view.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub at: SystemTime,
    pub latency: Duration,
    /// `alive`, `shutting down: ...` or `failed: ...`.
    pub outcome: String,
}

/// Stands for "the impalad reported no session count" in [`Backend::external_sessions`].
const NO_EXTERNAL_COUNT: u64 = u64::MAX;

#[derive(Debug)]
pub struct Backend {
    /// Unique for the process's life, never reused.
    pub id: u64,
    /// `host:port` as configured.
    pub addr: String,
    pub kind: BackendKind,
    pub metrics_url: Option<String>,
    pub weight: AtomicU32,
    /// Live sessions pinned here through the proxy.
    pub sessions: AtomicU64,
    /// Open operations of those sessions.
    pub operations: AtomicU64,
    /// Calls being relayed right now.
    pub inflight: AtomicU64,
    /// Open HS2 sessions the impalad itself reports (`/jsonmetrics`), when enabled.
    external_sessions: AtomicU64,
    health: Mutex<Health>,
    pub last_probe: Mutex<Option<ProbeReport>>,
    /// Set when the backend left the configuration: drained, then removed once its sessions are gone.
    pub removing: AtomicBool,
    /// Wakes the probe task early (evidence from live traffic).
    pub probe_now: tokio::sync::Notify,
    pub pool: Pool,
}

impl Backend {
    pub fn new(id: u64, cfg: &BackendConfig, config: &Config) -> Backend {
        Backend {
            id,
            addr: cfg.addr.clone(),
            kind: cfg.kind,
            metrics_url: cfg.metrics_url.clone(),
            weight: AtomicU32::new(cfg.weight),
            sessions: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            external_sessions: AtomicU64::new(NO_EXTERNAL_COUNT),
            health: Mutex::new(Health::default()),
            last_probe: Mutex::new(None),
            removing: AtomicBool::new(false),
            probe_now: tokio::sync::Notify::new(),
            pool: Pool::new(
                cfg.addr.clone(),
                config.backend_transport,
                cfg.upstream.clone(),
                config.pool.clone(),
                config.max_frame_bytes,
            ),
        }
    }

    /// The health state; the lock is never held across an `.await`.
    pub fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_external_sessions(&self, count: Option<u64>) {
        self.external_sessions.store(count.unwrap_or(NO_EXTERNAL_COUNT), Ordering::Relaxed);
    }

    pub fn external_sessions(&self) -> Option<u64> {
        Some(self.external_sessions.load(Ordering::Relaxed)).filter(|v| *v != NO_EXTERNAL_COUNT)
    }

    /// Load for balancing: sessions (the impalad's own count when it reports more, since sessions
    /// opened around the proxy load it too) plus open operations.
    pub fn candidate(&self) -> Candidate {
        let pinned = self.sessions.load(Ordering::Relaxed);
        let sessions = self.external_sessions().map_or(pinned, |e| e.max(pinned));
        Candidate {
            sessions: sessions + self.operations.load(Ordering::Relaxed),
            weight: self.weight.load(Ordering::Relaxed).max(1),
            eligible: self.health().eligible() && !self.removing.load(Ordering::Relaxed),
        }
    }

    /// True when calls on existing sessions may go there.
    pub fn serving(&self) -> bool {
        self.health().serving()
    }

    pub fn set_admin(&self, state: AdminState) {
        self.health().admin = state;
    }
}

/// All backends.
#[derive(Debug)]
pub struct Backends {
    list: RwLock<Vec<Arc<Backend>>>,
    next_id: AtomicU64,
    pub transport: BackendTransport,
}

impl Backends {
    pub fn new(config: &Config) -> Backends {
        let b =
            Backends { list: RwLock::new(Vec::new()), next_id: AtomicU64::new(1), transport: config.backend_transport };
        for cfg in &config.backends {
            b.add(cfg, config);
        }
        b
    }

    /// Adds a backend; returns it.
    pub fn add(&self, cfg: &BackendConfig, config: &Config) -> Arc<Backend> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let backend = Arc::new(Backend::new(id, cfg, config));
        self.list.write().unwrap_or_else(|e| e.into_inner()).push(backend.clone());
        backend
    }

    /// Drops a backend from the list (its sessions keep their `Arc` until they end).
    pub fn remove(&self, id: u64) {
        self.list.write().unwrap_or_else(|e| e.into_inner()).retain(|b| b.id != id);
    }

    /// A snapshot of the list.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn find(&self, addr: &str) -> Option<Arc<Backend>> {
        self.all().into_iter().find(|b| b.addr == addr)
    }

    /// Backends in the order a new session should try them (only those taking new sessions).
    pub fn preference(&self, rotor: usize) -> Vec<Arc<Backend>> {
        let list = self.all();
        let candidates: Vec<Candidate> = list.iter().map(|b| b.candidate()).collect();
        crate::balance::preference(&candidates, rotor).into_iter().map(|i| list[i].clone()).collect()
    }
}
