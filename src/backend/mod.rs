//! Backends: the impalads (or other HS2 servers) behind the proxy, with their health, load counters and
//! upstream pools.
//!
//! The set changes at run time (config reload, admin actions): [`Backends`] holds `Arc<Backend>`s
//! behind a lock that is only held to copy the list, never across an `.await`. The routing tables name
//! backends by id; a backend leaves the list only once it holds no session.

pub mod connect;
pub mod evacuation;
pub mod health;
pub mod impalad_metrics;
pub mod pool;
pub mod probe;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use crate::balance::Candidate;
use crate::config::{BackendConfig, BackendKind, Config, HttpUrl};
use crate::hs2::open_session::DELEGATION_KEYS;
use crate::kerberos::delegation::{Delegation, HIVE_PROXY_USER_KEY, IMPALA_DOAS_KEY};
use crate::kerberos::Credential;
use crate::routing::{BackendId, Load};
use connect::KerberosUpstream;
use health::{AdminState, Health};
use impalad_metrics::ImpaladLoad;
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

/// [`Backend::detected_kind`] before the first probe has said.
const KIND_UNKNOWN: u8 = 0;
const KIND_IMPALA: u8 = 1;
const KIND_HIVE: u8 = 2;

#[derive(Debug)]
pub struct Backend {
    /// Unique for the process's life, never reused.
    pub id: BackendId,
    /// `host:port` as configured.
    pub addr: String,
    /// The kind the configuration forces, if it does; else the probes detect it.
    configured_kind: Option<BackendKind>,
    /// What the probes found: impalad checks the session in GetInfo, Hive and Spark do not.
    detected_kind: AtomicU8,
    pub metrics_url: Option<HttpUrl>,
    pub weight: AtomicU32,
    /// Calls being relayed right now.
    pub inflight: AtomicU64,
    /// Open HS2 sessions the impalad itself reports (`/jsonmetrics`), when enabled.
    external_sessions: AtomicU64,
    /// Queries registered on the impalad (`/jsonmetrics`), when it reports them.
    external_queries: AtomicU64,
    /// This instance's sessions plus operations on the backend when impalad's figures were read: what it
    /// opened or closed since counts on top of them until the next read (which then includes it).
    local_at_read: AtomicU64,
    /// Wakes the task that reads impalad's figures early (this instance just opened a session).
    pub load_now: tokio::sync::Notify,
    health: Mutex<Health>,
    pub last_probe: Mutex<Option<ProbeReport>>,
    /// Set when the backend left the configuration: drained, then removed once its sessions are gone.
    pub removing: AtomicBool,
    /// Wakes the probe task early (evidence from live traffic).
    pub probe_now: tokio::sync::Notify,
    /// Its evacuation, when one was started (`control::evacuate`).
    pub evacuation: evacuation::Evacuation,
    pub pool: Pool,
}

impl Backend {
    /// `initiator`: the proxy's Kerberos credentials, for `backend_auth.transport = "gssapi"`.
    pub fn new(id: BackendId, cfg: &BackendConfig, config: &Config, initiator: Option<&Credential>) -> Backend {
        let kerberos = match (initiator, config.kerberos.as_ref().and_then(|k| k.upstream.as_ref())) {
            (Some(initiator), Some(u)) => {
                Some(KerberosUpstream { initiator: initiator.clone(), target: u.backend_principal_for(&cfg.addr) })
            }
            _ => None,
        };
        Backend {
            id,
            addr: cfg.addr.clone(),
            configured_kind: cfg.kind,
            detected_kind: AtomicU8::new(KIND_UNKNOWN),
            metrics_url: cfg.metrics_url.clone(),
            weight: AtomicU32::new(cfg.weight),
            inflight: AtomicU64::new(0),
            external_sessions: AtomicU64::new(NO_EXTERNAL_COUNT),
            external_queries: AtomicU64::new(NO_EXTERNAL_COUNT),
            local_at_read: AtomicU64::new(0),
            load_now: tokio::sync::Notify::new(),
            health: Mutex::new(Health::default()),
            last_probe: Mutex::new(None),
            removing: AtomicBool::new(false),
            probe_now: tokio::sync::Notify::new(),
            evacuation: Default::default(),
            pool: Pool::new(
                cfg.addr.clone(),
                config.backend_auth.transport,
                cfg.upstream.clone(),
                config.pool.clone(),
                config.limits.max_frame_bytes,
                kerberos,
            ),
        }
    }

    /// The health state; the lock is never held across an `.await`.
    pub fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records impalad's own figures (`None`: unavailable), read when this instance's load was `local`.
    pub fn set_impalad_load(&self, figures: Option<ImpaladLoad>, local: Load) {
        let (sessions, queries) = match figures {
            Some(f) => (f.sessions, f.queries.unwrap_or(NO_EXTERNAL_COUNT)),
            None => (NO_EXTERNAL_COUNT, NO_EXTERNAL_COUNT),
        };
        self.local_at_read.store(local.sessions + local.operations, Ordering::Relaxed);
        self.external_queries.store(queries, Ordering::Relaxed);
        self.external_sessions.store(sessions, Ordering::Relaxed);
    }

    pub fn external_sessions(&self) -> Option<u64> {
        Some(self.external_sessions.load(Ordering::Relaxed)).filter(|v| *v != NO_EXTERNAL_COUNT)
    }

    /// What kind of server this is: configured, else detected by the probes; `None` until known.
    pub fn kind(&self) -> Option<BackendKind> {
        self.configured_kind.or(match self.detected_kind.load(Ordering::Relaxed) {
            KIND_IMPALA => Some(BackendKind::Impala),
            KIND_HIVE => Some(BackendKind::Hive),
            _ => None,
        })
    }

    /// The OpenSession keys that delegate a session to its end user on this backend: its kind's key, else
    /// `configured` (`kerberos.delegation`), else both while the kind is unknown (each server ignores the
    /// other's, so a session never runs as the proxy's own principal by mistake).
    pub fn delegation_keys(&self, configured: Option<Delegation>) -> &'static [&'static str] {
        let delegation = match self.kind() {
            Some(BackendKind::Impala) => Some(Delegation::Impala),
            Some(BackendKind::Hive) => Some(Delegation::Hive),
            None => configured,
        };
        match delegation {
            Some(Delegation::Impala) => &[IMPALA_DOAS_KEY],
            Some(Delegation::Hive) => &[HIVE_PROXY_USER_KEY],
            None => DELEGATION_KEYS,
        }
    }

    /// Records what a probe saw; logs when the kind is first known or changes.
    pub fn set_detected_kind(&self, kind: BackendKind) {
        let code = match kind {
            BackendKind::Impala => KIND_IMPALA,
            BackendKind::Hive => KIND_HIVE,
        };
        let before = self.detected_kind.swap(code, Ordering::Relaxed);
        if before != code {
            tracing::info!(backend = %self.addr, kind = ?kind, configured = ?self.configured_kind,
                "backend kind detected from its GetInfo answer");
        }
    }

    /// Load for balancing: this instance's sessions plus open operations on the backend; or, when the
    /// impalad reports its own figures, its sessions plus registered queries (every instance's, and those
    /// of clients going around the proxy), with what this instance changed since they were read.
    pub fn candidate(&self, load: Load) -> Candidate {
        let local = load.sessions + load.operations;
        let cluster = self.external_sessions().map(|sessions| {
            let queries = Some(self.external_queries.load(Ordering::Relaxed)).filter(|q| *q != NO_EXTERNAL_COUNT);
            let since = local as i128 - self.local_at_read.load(Ordering::Relaxed) as i128;
            u64::try_from(sessions.saturating_add(queries.unwrap_or(0)) as i128 + since).unwrap_or(0)
        });
        Candidate {
            sessions: cluster.map_or(local, |c| c.max(local)),
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
pub struct Backends {
    list: RwLock<Vec<Arc<Backend>>>,
    next_id: AtomicU64,
    /// The proxy's Kerberos initiator, for backends added later too.
    initiator: Option<Credential>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backends({:?})", self.all().iter().map(|b| b.addr.clone()).collect::<Vec<_>>())
    }
}

impl Backends {
    pub fn new(config: &Config, initiator: Option<Credential>) -> Backends {
        let b = Backends { list: RwLock::new(Vec::new()), next_id: AtomicU64::new(1), initiator };
        for cfg in &config.backends {
            b.add(cfg, config);
        }
        b
    }

    /// Adds a backend; returns it.
    pub fn add(&self, cfg: &BackendConfig, config: &Config) -> Arc<Backend> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let backend = Arc::new(Backend::new(id, cfg, config, self.initiator.as_ref()));
        self.list.write().unwrap_or_else(|e| e.into_inner()).push(backend.clone());
        backend
    }

    /// Drops a backend from the list (only once it holds no session).
    pub fn remove(&self, id: BackendId) {
        self.list.write().unwrap_or_else(|e| e.into_inner()).retain(|b| b.id != id);
    }

    /// A snapshot of the list.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn find(&self, addr: &str) -> Option<Arc<Backend>> {
        self.all().into_iter().find(|b| b.addr == addr)
    }

    pub fn get(&self, id: BackendId) -> Option<Arc<Backend>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).iter().find(|b| b.id == id).cloned()
    }

    /// Backends in the order a new session should try them (only those taking new sessions), given each
    /// one's load.
    pub fn preference(&self, rotor: usize, load: impl Fn(BackendId) -> Load) -> Vec<Arc<Backend>> {
        let list = self.all();
        let candidates: Vec<Candidate> = list.iter().map(|b| b.candidate(load(b.id))).collect();
        crate::balance::preference(&candidates, rotor).into_iter().map(|i| list[i].clone()).collect()
    }
}
