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
pub mod load;
pub mod pool;
pub mod probe;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::balance::Candidate;
use crate::config::{BackendConfig, BackendKind, Config, HttpUrl};
use crate::hs2::open_session::DELEGATION_KEYS;
use crate::kerberos::delegation::{Delegation, HIVE_PROXY_USER_KEY, IMPALA_DOAS_KEY};
use crate::kerberos::Credential;
use crate::metrics::RelaySeries;
use crate::routing::{BackendId, Load};
use connect::KerberosUpstream;
use health::{AdminState, Evidence, Health, Observed, Thresholds, Transition};
use impalad_metrics::ImpaladLoad;
use load::{LoadFigures, Reading};
use pool::Pool;

/// The last probe of a backend, for the operator view.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub at: SystemTime,
    pub latency: Duration,
    /// `alive`, `shutting down: ...` or `failed: ...`.
    pub outcome: String,
}

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
    /// OpenSessions sent to this backend whose sessions this instance has not counted yet (the reply is
    /// on its way or being learned). The impalad may count such a session already: a reading of its
    /// figures counts them as this instance's own (`control::load`), or the session would count twice
    /// until the next reading.
    pub opening: AtomicU64,
    /// The impalad's own figures (`/jsonmetrics`) at the last good read, with this instance's counts at
    /// that moment: what it opened or closed since counts on top of them until the next read (which then
    /// includes it). A mutex, not atomics: one read's figures are only ever seen together.
    impalad: Mutex<Option<Reading>>,
    /// `health.slow_start`, fixed at start like every health setting.
    slow_start: Duration,
    /// When the backend last came up (or was added by a reload), while slow start may still ramp it.
    came_up: Mutex<Option<Instant>>,
    /// Broken exchanges in a row on live traffic (passive ejection at `health.eject_after`).
    broken_in_a_row: AtomicU32,
    /// Times live traffic took it down: a probe begun before an ejection must not count towards `rise`.
    ejections: AtomicU64,
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
    /// Its series of relayed calls in the proxy's metrics, resolved on its first call.
    pub relay_series: OnceLock<Arc<RelaySeries>>,
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
            opening: AtomicU64::new(0),
            impalad: Mutex::new(None),
            slow_start: config.health.slow_start,
            came_up: Mutex::new(None),
            broken_in_a_row: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
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
            )
            .with_trusted_header(config.backend_auth.trusted_header.clone()),
            relay_series: OnceLock::new(),
        }
    }

    /// The health state; the lock is never held across an `.await`.
    pub fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records impalad's own figures (`None`: unavailable), read when this instance's load was `local`.
    pub fn set_impalad_load(&self, figures: Option<ImpaladLoad>, local: Load) {
        let reading = figures.map(|figures| Reading { figures, local, at: SystemTime::now() });
        *self.impalad.lock().unwrap_or_else(|e| e.into_inner()) = reading;
    }

    /// The impalad's figures at the last read, when `metrics_url` answered.
    pub fn impalad_load(&self) -> Option<ImpaladLoad> {
        self.reading().map(|r| r.figures)
    }

    /// The open HS2 sessions the impalad reported at the last read.
    pub fn external_sessions(&self) -> Option<u64> {
        self.impalad_load().map(|f| f.sessions)
    }

    fn reading(&self) -> Option<Reading> {
        *self.impalad.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Every input of the load balancing compares, given this instance's own `load` on the backend
    /// ([`load::figures`]: sessions and open operations, or the impalad's own figures with its admission
    /// queue when `metrics_url` is set).
    pub fn load_figures(&self, load: Load) -> LoadFigures {
        load::figures(load, self.reading().as_ref())
    }

    /// The share of its weight it gets now, in thousandths (slow start; 1000 = all of it).
    pub fn ramp(&self) -> u64 {
        let came_up = *self.came_up.lock().unwrap_or_else(|e| e.into_inner());
        load::ramp(came_up.map(|t| t.elapsed()), self.slow_start)
    }

    /// What balancing knows of it: its load ([`Backend::load_figures`]) and its weight as slow start
    /// ramps it.
    pub fn candidate(&self, load: Load) -> Candidate {
        Candidate {
            load: self.load_figures(load).load,
            weight: u64::from(self.weight.load(Ordering::Relaxed).max(1)) * self.ramp(),
            eligible: self.health().eligible() && !self.removing.load(Ordering::Relaxed),
        }
    }

    /// Applies evidence to the health state machine; a backend that comes up starts slow start.
    pub fn record(&self, evidence: Evidence, thresholds: Thresholds) -> Option<Transition> {
        let t = self.health().record(evidence, thresholds)?;
        if t.to == Observed::Up {
            self.start_slow_start();
        }
        Some(t)
    }

    /// Starts slow start now (it came up, or a reload added it); nothing when `health.slow_start` is 0.
    pub fn start_slow_start(&self) {
        if !self.slow_start.is_zero() {
            *self.came_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    /// A whole reply came back (whatever its HS2 status): the broken streak ends.
    pub fn exchange_ok(&self) {
        if self.broken_in_a_row.load(Ordering::Relaxed) != 0 {
            self.broken_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// One more broken exchange on live traffic; returns the streak when it reached `eject_after` (the
    /// streak then starts again).
    pub fn exchange_broken(&self, eject_after: u32) -> Option<u32> {
        let n = self.broken_in_a_row.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n < eject_after {
            return None;
        }
        self.broken_in_a_row.store(0, Ordering::Relaxed);
        Some(n)
    }

    /// Counts an ejection, before its evidence is applied (see [`Backend::ejections`]).
    pub fn count_ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Broken exchanges in a row now.
    pub fn broken_in_a_row(&self) -> u32 {
        self.broken_in_a_row.load(Ordering::Relaxed)
    }

    /// Times live traffic took it down (passive ejection).
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn backend(health: &str) -> Backend {
        let config = FileConfig::parse(&format!("[health]\n{health}")).and_then(FileConfig::validate).unwrap();
        Backend::new(1, &BackendConfig::new("h:1"), &config, None)
    }

    #[test]
    fn the_broken_streak_ends_at_eject_after_or_at_a_whole_reply() {
        let b = backend("");
        assert_eq!((b.exchange_broken(3), b.exchange_broken(3)), (None, None));
        b.exchange_ok();
        assert_eq!(b.broken_in_a_row(), 0);
        assert_eq!((b.exchange_broken(3), b.exchange_broken(3), b.exchange_broken(3)), (None, None, Some(3)));
        assert_eq!(b.broken_in_a_row(), 0, "a new streak starts");
    }

    #[test]
    fn coming_up_starts_slow_start_and_it_scales_the_weight() {
        let b = backend("slow_start = \"60s\"\nrise = 1");
        let t = Thresholds { rise: 1, fall: 1 };
        assert_eq!(b.candidate(Load::default()).weight, 1000, "a backend at start is not ramped");
        b.record(Evidence::Failed("x".into()), t).expect("down");
        b.record(Evidence::Alive, t).expect("up");
        let w = b.candidate(Load::default()).weight;
        assert!((100..110).contains(&w), "a tenth of its weight at first: {w}");
        assert_eq!(backend("rise = 1").ramp(), 1000, "off by default");
    }
}
