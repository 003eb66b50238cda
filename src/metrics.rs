//! Every metric the proxy exports, in one place: names, help texts, labels, and the Prometheus text for
//! `GET /metrics` (served by `admin`). No I/O.
//!
//! Two kinds of metric:
//! - counted as things happen ([`Metrics`]: RPCs, errors, latency, bytes, probes, connections), held in
//!   a `prometheus-client` registry owned by the proxy (not a global: tests run many proxies at once);
//! - read from the proxy's state at scrape time (sessions, operations, in-flight calls, pool usage,
//!   backend state), so that they can never drift from what the routing tables hold.
//!
//! Labels are bounded: `backend` is a configured address, `method` an IDL method name (or `unknown`),
//! `kind`, `result` and `state` come from fixed lists here. No session or query id is ever a label.

pub mod totals;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::health::STATES;
use crate::backend::load::LoadFigures;
use crate::backend::pool::PoolStats;
use crate::fasthash::KeyedState;
use crate::hs2::call::Request;
use crate::hs2::idl::{self, MethodSpec};

/// Every name below is exported with this prefix (`hs2_proxy_rpcs_total`); counters get `_total`.
pub const PREFIX: &str = "hs2_proxy";

// Counted as they happen.
/// Client calls by method and by where they went (a backend address, or `none`: answered by the proxy).
pub const RPCS: &str = "rpcs";
/// Failed calls by method, backend and [`ErrorKind`].
pub const RPC_ERRORS: &str = "rpc_errors";
/// Time from taking the call to the end of the relayed reply (upstream pool wait included).
pub const RPC_DURATION: &str = "rpc_duration_seconds";
/// Request bytes read from clients and forwarded to a backend.
pub const BYTES_IN: &str = "bytes_in";
/// Reply bytes relayed from a backend to clients.
pub const BYTES_OUT: &str = "bytes_out";
/// Of those, the bytes moved socket to socket in the kernel (`splice(2)`, large strings of bulk replies).
pub const BYTES_SPLICED: &str = "bytes_spliced";
/// Health probes by backend and result (`alive`, `shutting_down`, `failed`).
pub const PROBES: &str = "health_probes";
/// Health probe round-trip time.
pub const PROBE_DURATION: &str = "health_probe_duration_seconds";
/// Sessions opened through the proxy, by backend.
pub const SESSIONS_OPENED: &str = "sessions_opened";
/// Sessions moved to another backend (`migrate`), by `from`, `to` (`none` when the move failed), `reason`
/// (`evacuation`, `failure`) and `result` (`moved`, `failed`).
pub const SESSION_MOVES: &str = "session_moves";
/// How long a move took (the client's call waited this long when its backend had died).
pub const SESSION_MOVE_DURATION: &str = "session_move_duration_seconds";
/// Lookups of handles the proxy did not know (asking every backend), by `result`: `found`, `missed`,
/// `ambiguous` (several backends claimed it: treated as unknown), `timed_out` (`timeouts.recovery`).
pub const HANDLE_LOOKUPS: &str = "handle_lookups";
/// What clean-up did with sessions no client of this instance used for the grace, by `result`: `closed`
/// (the backend confirmed nobody used them), `in_use_elsewhere` (used through another connection, e.g.
/// another instance: kept), `gone` (the backend no longer has them), `left_to_server` (no word from the
/// impalad: forgotten here, never closed), `kept` (no word, and forgetting would close it: Hive/Spark).
pub const SESSION_CLEANUPS: &str = "session_cleanups";
/// Backends taken down by live traffic (`health.eject_after` broken exchanges in a row), by backend.
pub const BACKEND_EJECTIONS: &str = "backend_ejections";
/// Client connections accepted / refused at the connection limit / open now.
pub const CLIENT_CONNECTIONS_ACCEPTED: &str = "client_connections_accepted";
pub const CLIENT_CONNECTIONS_REFUSED: &str = "client_connections_refused";
pub const CLIENT_CONNECTIONS: &str = "client_connections";

// Read from the proxy's state at scrape time.
pub const SESSIONS: &str = "sessions";
pub const OPERATIONS: &str = "operations";
pub const BACKEND_SESSIONS: &str = "backend_sessions";
pub const BACKEND_OPERATIONS: &str = "backend_operations";
pub const BACKEND_INFLIGHT: &str = "backend_inflight_rpcs";
pub const BACKEND_WEIGHT: &str = "backend_weight";
/// 1 for the backend's current [`state_name`], 0 for the others.
pub const BACKEND_STATE: &str = "backend_state";
/// The impalad's own count of open HS2 sessions, when `metrics_url` is set.
pub const BACKEND_IMPALAD_SESSIONS: &str = "backend_impalad_sessions";
/// The load balancing compares (`backend::load`: sessions, queries, admission figures), before weight.
pub const BACKEND_LOAD: &str = "backend_load";
/// The impalad's admission controller, summed over pools (`metrics_url`): queries admitted and running,
/// and queries queued, on that coordinator.
pub const BACKEND_IMPALAD_ADMITTED_RUNNING: &str = "backend_impalad_admitted_running";
pub const BACKEND_IMPALAD_QUEUED: &str = "backend_impalad_queued";
/// The share of its weight a backend gets now, 0 to 1 (below 1 while `health.slow_start` ramps it up).
pub const BACKEND_WEIGHT_RAMP: &str = "backend_weight_ramp";
/// Upstream connections by `state` (`busy`, `idle`).
pub const UPSTREAM_CONNECTIONS: &str = "upstream_connections";
pub const UPSTREAM_CONNECTIONS_MAX: &str = "upstream_connections_max";
pub const UPSTREAM_PINNED: &str = "upstream_pinned_connections";
pub const UPSTREAM_OPENED: &str = "upstream_connections_opened";
/// Checkouts that found the pool full and waited; their total wait; those that gave up.
pub const UPSTREAM_WAITS: &str = "upstream_waits";
pub const UPSTREAM_WAIT_SECONDS: &str = "upstream_wait_seconds";
pub const UPSTREAM_EXHAUSTED: &str = "upstream_exhausted";
pub const START_TIME: &str = "start_time_seconds";

/// The backend label of a call the proxy answered itself.
pub const NO_BACKEND: &str = "none";
/// The limit on client connections (`limits.max_client_connections`), for alerts on nearing it.
pub const CLIENT_CONNECTIONS_MAX: &str = "client_connections_max";
/// Bytes of unfinished requests held now, and the budget (`limits.max_buffered_request_bytes`).
pub const BUFFERED_REQUEST_BYTES: &str = "buffered_request_bytes";
pub const BUFFERED_REQUEST_BYTES_MAX: &str = "buffered_request_bytes_max";

/// RPC latency buckets (seconds): sub-millisecond GetOperationStatus polls to five-minute fetches.
const RPC_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0];
/// Probe latency buckets (seconds).
const PROBE_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0];

/// What went wrong with a call, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The backend answered with an error status or an exception.
    Status,
    /// The exchange broke or timed out.
    Broken,
    /// No upstream connection (refused, timed out, pool exhausted, credentials refused).
    NoConnection,
    /// The proxy could not route the handle (unknown, another user's, or its backend is down).
    Unroutable,
    /// No backend takes new sessions.
    NoBackend,
    /// The client stopped reading the reply (`timeouts.client_write`): its connection was closed.
    ClientStalled,
    /// The client went away before the reply was complete.
    ClientGone,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Status => "status",
            ErrorKind::Broken => "broken",
            ErrorKind::NoConnection => "no_connection",
            ErrorKind::Unroutable => "unroutable",
            ErrorKind::NoBackend => "no_backend",
            ErrorKind::ClientStalled => "client_stalled",
            ErrorKind::ClientGone => "client_gone",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: &'static str,
    backend: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStateLabels {
    backend: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoveLabels {
    from: String,
    to: String,
    reason: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    backend: String,
    result: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

/// The event-counted metrics of one proxy. Families are cheap clones of shared state: the registry
/// holds one handle, this struct the other.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: HistogramFamily<RpcLabels>,
    bytes_in: Family<BackendLabels, Counter>,
    bytes_out: Family<BackendLabels, Counter>,
    probes: Family<ProbeLabels, Counter>,
    probe_latency: HistogramFamily<BackendLabels>,
    sessions_opened: Family<BackendLabels, Counter>,
    lookups: Family<ResultLabels, Counter>,
    moves: Family<MoveLabels, Counter>,
    move_latency: HistogramFamily<ReasonLabels>,
    cleanups: Family<ResultLabels, Counter>,
    ejections: Family<BackendLabels, Counter>,
    accepted: Counter,
    refused: Counter,
    connections: Gauge,
    start_time: Gauge<f64, AtomicU64>,
    started: Instant,
    /// The same calls, errors and latencies as plain totals, for the status page's history.
    totals: totals::Totals,
    /// The series of `rpc` by backend, made once per backend (and per method on its first call): looking
    /// the labels up hashed a method and a backend string four times a call (7% of a call's instructions).
    relayed: RwLock<HashMap<String, Arc<RelaySeries>, KeyedState>>,
}

/// One backend's series of relayed calls, resolved once ([`Metrics::relay_series`]) and kept by the
/// backend, so that a call counts itself without a lookup. They stay valid for the process's life: no
/// series is ever removed from a family.
#[derive(Debug)]
pub struct RelaySeries {
    backend: String,
    bytes_in: Counter,
    bytes_out: Counter,
    /// Calls and latency by method index (`idl::METHODS`; the last slot: methods the IDL does not know).
    methods: Box<[OnceLock<(Counter, Histogram)>]>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix(PREFIX),
            rpcs: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(rpc_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            probes: Family::default(),
            probe_latency: Family::new_with_constructor(probe_histogram),
            sessions_opened: Family::default(),
            lookups: Family::default(),
            moves: Family::default(),
            move_latency: Family::new_with_constructor(rpc_histogram),
            cleanups: Family::default(),
            ejections: Family::default(),
            accepted: Counter::default(),
            refused: Counter::default(),
            connections: Gauge::default(),
            start_time: Gauge::default(),
            started: Instant::now(),
            totals: Default::default(),
            relayed: RwLock::default(),
        };
        let secs = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        m.start_time.set(secs);
        let r = &mut m.registry;
        r.register(
            RPCS,
            "Client calls, by method and the backend they went to (none: answered by the proxy)",
            m.rpcs.clone(),
        );
        r.register(RPC_ERRORS, "Failed client calls, by method, backend and kind", m.errors.clone());
        r.register(RPC_DURATION, "Call latency through the proxy, upstream pool wait included", m.latency.clone());
        r.register(BYTES_IN, "Request bytes read from clients and forwarded to the backend", m.bytes_in.clone());
        r.register(BYTES_OUT, "Reply bytes relayed from the backend to clients", m.bytes_out.clone());
        r.register(PROBES, "Health probes, by backend and result", m.probes.clone());
        r.register(PROBE_DURATION, "Health probe round-trip time", m.probe_latency.clone());
        r.register(SESSIONS_OPENED, "Sessions opened through the proxy", m.sessions_opened.clone());
        r.register(HANDLE_LOOKUPS, "Lookups of unknown handles by asking the backends, by result", m.lookups.clone());
        r.register(SESSION_MOVES, "Sessions moved to another backend, by from, to, reason and result", m.moves.clone());
        r.register(SESSION_MOVE_DURATION, "How long moving a session took, by reason", m.move_latency.clone());
        r.register(SESSION_CLEANUPS, "Clean-up decisions on sessions unused here for the grace", m.cleanups.clone());
        r.register(BACKEND_EJECTIONS, "Backends taken down by broken exchanges on live traffic", m.ejections.clone());
        r.register(CLIENT_CONNECTIONS_ACCEPTED, "Client connections accepted", m.accepted.clone());
        r.register(CLIENT_CONNECTIONS_REFUSED, "Client connections closed at the connection limit", m.refused.clone());
        r.register(CLIENT_CONNECTIONS, "Client connections open now", m.connections.clone());
        r.register(START_TIME, "When the proxy started, in seconds since the Unix epoch", m.start_time.clone());
        m
    }

    /// A call relayed by `backend`, with its latency and sizes.
    /// A relayed call to the backend of `series`; `method` is `None` for one the IDL does not know.
    pub fn rpc(
        &self,
        series: &RelaySeries,
        method: Option<&'static MethodSpec>,
        elapsed: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        // `methods` has a slot per method and one more, so every index is in range.
        let slot = &series.methods[method.map_or(idl::METHODS.len(), |m| m.index)];
        let (calls, latency) = slot.get_or_init(|| {
            let labels =
                RpcLabels { method: method.map_or(UNKNOWN_METHOD, |m| m.name), backend: series.backend.clone() };
            (self.rpcs.get_or_create(&labels).clone(), self.latency.get_or_create(&labels).clone())
        });
        calls.inc();
        latency.observe(elapsed.as_secs_f64());
        self.totals.call(elapsed);
        series.bytes_in.inc_by(bytes_in);
        series.bytes_out.inc_by(bytes_out);
    }

    /// `backend`'s relay series: the same ones for every caller, made on the first call. A backend keeps
    /// its own (a read lock and a hash of its address per call otherwise, on a lock every worker shares).
    pub fn relay_series(&self, backend: &str) -> Arc<RelaySeries> {
        let known = self.relayed.read().unwrap_or_else(|p| p.into_inner()).get(backend).cloned();
        known.unwrap_or_else(|| {
            let b = BackendLabels { backend: backend.to_string() };
            let series = Arc::new(RelaySeries {
                backend: backend.to_string(),
                bytes_in: self.bytes_in.get_or_create(&b).clone(),
                bytes_out: self.bytes_out.get_or_create(&b).clone(),
                methods: (0..=idl::METHODS.len()).map(|_| OnceLock::new()).collect(),
            });
            let mut all = self.relayed.write().unwrap_or_else(|p| p.into_inner());
            all.entry(backend.to_string()).or_insert(series).clone()
        })
    }

    /// A call that failed; `backend` is `None` when the proxy answered it itself. A call that never
    /// reached an exchange counts as a call here too ([`Metrics::rpc`] never saw it), so that errors
    /// are always a subset of calls.
    pub fn rpc_error(&self, method: &'static str, backend: Option<&str>, kind: ErrorKind) {
        let backend = backend.unwrap_or(NO_BACKEND).to_string();
        let counted = !matches!(kind, ErrorKind::Status | ErrorKind::Broken);
        if counted {
            self.rpcs.get_or_create(&RpcLabels { method, backend: backend.clone() }).inc();
        }
        self.totals.error(counted);
        self.errors.get_or_create(&ErrorLabels { method, backend, kind: kind.label() }).inc();
    }

    pub fn probe(&self, backend: &str, result: &'static str, elapsed: Duration) {
        self.probes.get_or_create(&ProbeLabels { backend: backend.to_string(), result }).inc();
        self.probe_latency
            .get_or_create(&BackendLabels { backend: backend.to_string() })
            .observe(elapsed.as_secs_f64());
    }

    /// A lookup of an unknown handle ended with `result` (see [`HANDLE_LOOKUPS`]).
    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&ResultLabels { result }).inc();
    }

    /// A session move ended (`to` is `none` when it failed).
    pub fn session_moved(&self, from: &str, to: &str, reason: &'static str, result: &'static str, took: Duration) {
        let labels = MoveLabels { from: from.to_string(), to: to.to_string(), reason, result };
        self.moves.get_or_create(&labels).inc();
        self.move_latency.get_or_create(&ReasonLabels { reason }).observe(took.as_secs_f64());
    }

    /// Clean-up decided `result` for a session (see [`SESSION_CLEANUPS`]).
    pub fn cleanup(&self, result: &'static str) {
        self.cleanups.get_or_create(&ResultLabels { result }).inc();
    }

    /// Live traffic took `backend` down (passive ejection).
    pub fn ejection(&self, backend: &str) {
        self.ejections.get_or_create(&BackendLabels { backend: backend.to_string() }).inc();
    }

    pub fn session_opened(&self, backend: &str) {
        self.sessions_opened.get_or_create(&BackendLabels { backend: backend.to_string() }).inc();
    }

    pub fn client_connected(&self) {
        self.accepted.inc();
        self.connections.inc();
    }

    pub fn client_disconnected(&self) {
        self.connections.dec();
    }

    pub fn client_refused(&self) {
        self.refused.inc();
    }

    /// Client connections open now.
    pub fn client_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Calls, errors and latencies since the start, for the status page's history.
    pub fn totals(&self) -> &totals::Totals {
        &self.totals
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The Prometheus (OpenMetrics) text: the counted metrics, then the state read now.
    pub fn encode(&self, state: &StateFigures) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &state_registry(state))?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The proxy's state at scrape time, as the gauges show it.
#[derive(Clone, Debug, Default)]
pub struct StateFigures {
    pub sessions: usize,
    pub operations: usize,
    pub max_client_connections: usize,
    pub buffered_request_bytes: u64,
    pub max_buffered_request_bytes: u64,
    pub backends: Vec<BackendFigures>,
}

/// One backend's figures.
#[derive(Clone, Debug)]
pub struct BackendFigures {
    pub addr: String,
    pub sessions: u64,
    pub operations: u64,
    pub inflight: u64,
    pub weight: u32,
    /// One of [`STATES`].
    pub state: &'static str,
    pub impalad_sessions: Option<u64>,
    pub load: LoadGauges,
    pub pool: PoolStats,
}

/// One backend's load figures, as gauges.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadGauges {
    pub load: u64,
    pub admitted_running: Option<u64>,
    pub queued: Option<u64>,
    /// Thousandths of the weight (1000 unless slow start ramps it).
    pub ramp: u64,
}

impl LoadGauges {
    /// From a backend's load figures and slow start's ramp (thousandths of its weight).
    pub fn of(f: &LoadFigures, ramp: u64) -> LoadGauges {
        LoadGauges { load: f.load, admitted_running: f.admitted_running, queued: f.queued, ramp }
    }
}

/// The `method` label of a request: its IDL name, or `unknown` (a peer must not invent label values).
pub fn method_label(req: &Request) -> &'static str {
    req.method.map_or(UNKNOWN_METHOD, |m| m.name)
}

/// The `method` label of calls to a method the IDL does not know.
const UNKNOWN_METHOD: &str = "unknown";

/// A registry built for one scrape from the proxy's state.
fn state_registry(state: &StateFigures) -> Registry {
    let mut r = Registry::with_prefix(PREFIX);
    let gauge = |v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        g
    };
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    r.register(SESSIONS, "Sessions the proxy routes", gauge(state.sessions as i64));
    r.register(OPERATIONS, "Open operations the proxy routes", gauge(state.operations as i64));
    r.register(
        CLIENT_CONNECTIONS_MAX,
        "Client connection limit (limits.max_client_connections)",
        gauge(state.max_client_connections as i64),
    );
    r.register(
        BUFFERED_REQUEST_BYTES,
        "Bytes of unfinished requests held now (beyond each connection's first buffer)",
        gauge(as_i64(state.buffered_request_bytes)),
    );
    r.register(
        BUFFERED_REQUEST_BYTES_MAX,
        "Budget for those bytes (limits.max_buffered_request_bytes)",
        gauge(as_i64(state.max_buffered_request_bytes)),
    );
    let spliced: Counter = Counter::default();
    spliced.inc_by(crate::splice::spliced_bytes());
    r.register(BYTES_SPLICED, "Reply bytes moved from backend to client sockets by splice(2), not copied", spliced);
    let per_backend = BackendGauges::default();
    for b in &state.backends {
        per_backend.add(b);
    }
    per_backend.register(&mut r);
    r
}

/// Per-backend families filled from the state; `register` moves them into a registry.
#[derive(Default)]
struct BackendGauges {
    sessions: Family<BackendLabels, Gauge>,
    operations: Family<BackendLabels, Gauge>,
    inflight: Family<BackendLabels, Gauge>,
    weight: Family<BackendLabels, Gauge>,
    state: Family<BackendStateLabels, Gauge>,
    impalad_sessions: Family<BackendLabels, Gauge>,
    load: Family<BackendLabels, Gauge>,
    admitted_running: Family<BackendLabels, Gauge>,
    queued: Family<BackendLabels, Gauge>,
    ramp: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    connections: Family<BackendStateLabels, Gauge>,
    max: Family<BackendLabels, Gauge>,
    pinned: Family<BackendLabels, Gauge>,
    opened: Family<BackendLabels, Counter>,
    waits: Family<BackendLabels, Counter>,
    wait_seconds: Family<BackendLabels, Counter<f64, AtomicU64>>,
    exhausted: Family<BackendLabels, Counter>,
}

impl BackendGauges {
    fn add(&self, b: &BackendFigures) {
        let l = BackendLabels { backend: b.addr.clone() };
        let with_state = |state| BackendStateLabels { backend: b.addr.clone(), state };
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.sessions.get_or_create(&l).set(as_i64(b.sessions));
        self.operations.get_or_create(&l).set(as_i64(b.operations));
        self.inflight.get_or_create(&l).set(as_i64(b.inflight));
        self.weight.get_or_create(&l).set(i64::from(b.weight));
        for s in STATES {
            self.state.get_or_create(&with_state(s)).set(i64::from(s == b.state));
        }
        if let Some(n) = b.impalad_sessions {
            self.impalad_sessions.get_or_create(&l).set(as_i64(n));
        }
        self.load.get_or_create(&l).set(as_i64(b.load.load));
        if let Some(n) = b.load.admitted_running {
            self.admitted_running.get_or_create(&l).set(as_i64(n));
        }
        if let Some(n) = b.load.queued {
            self.queued.get_or_create(&l).set(as_i64(n));
        }
        self.ramp.get_or_create(&l).set(b.load.ramp as f64 / 1000.0);
        let p = b.pool;
        self.connections.get_or_create(&with_state("busy")).set(p.busy() as i64);
        self.connections.get_or_create(&with_state("idle")).set(p.idle as i64);
        self.max.get_or_create(&l).set(p.max as i64);
        self.pinned.get_or_create(&l).set(p.pinned as i64);
        self.opened.get_or_create(&l).inc_by(p.opened);
        self.waits.get_or_create(&l).inc_by(p.waits);
        self.wait_seconds.get_or_create(&l).inc_by(p.wait_seconds);
        self.exhausted.get_or_create(&l).inc_by(p.exhausted);
    }

    fn register(self, r: &mut Registry) {
        r.register(BACKEND_SESSIONS, "Live sessions pinned to the backend through the proxy", self.sessions);
        r.register(BACKEND_OPERATIONS, "Open operations of those sessions", self.operations);
        r.register(BACKEND_INFLIGHT, "Calls being relayed to the backend now", self.inflight);
        r.register(BACKEND_WEIGHT, "Balancing weight", self.weight);
        r.register(BACKEND_STATE, "1 for the backend's state (up, draining, drain, maintenance, down)", self.state);
        r.register(BACKEND_IMPALAD_SESSIONS, "Open HS2 sessions the impalad itself reports", self.impalad_sessions);
        r.register(
            BACKEND_LOAD,
            "The load balancing compares (sessions, queries, admission), before weight",
            self.load,
        );
        r.register(
            BACKEND_IMPALAD_ADMITTED_RUNNING,
            "Queries the impalad admitted that still run (admission controller, every pool)",
            self.admitted_running,
        );
        r.register(BACKEND_IMPALAD_QUEUED, "Queries queued for admission on the impalad (every pool)", self.queued);
        r.register(BACKEND_WEIGHT_RAMP, "Share of its weight the backend gets now (slow start)", self.ramp);
        r.register(UPSTREAM_CONNECTIONS, "Upstream connections, busy (owned by a call) or idle", self.connections);
        r.register(UPSTREAM_CONNECTIONS_MAX, "Upstream connection cap (pool.max_per_backend)", self.max);
        r.register(UPSTREAM_PINNED, "Upstream connections kept open for the sessions they opened", self.pinned);
        r.register(UPSTREAM_OPENED, "Upstream connections opened", self.opened);
        r.register(UPSTREAM_WAITS, "Calls that found the upstream pool full and waited", self.waits);
        r.register(UPSTREAM_WAIT_SECONDS, "Time calls waited for an upstream connection", self.wait_seconds);
        r.register(UPSTREAM_EXHAUSTED, "Calls that gave up waiting for an upstream connection", self.exhausted);
    }
}

/// Reads one sample's value from Prometheus text: `name{labels}` exactly as written (for tests and
/// the CLI; labels in the order they are exported).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `hs2_proxy_<name>{backend="addr"}`: how a per-backend series is written (`name` with any `_total`).
pub fn backend_series(name: &str, backend: &str) -> String {
    let mut s = String::new();
    let _ = write!(s, "{PREFIX}_{name}{{backend=\"{backend}\"}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_metrics_are_encoded_with_their_labels() {
        let m = Metrics::new();
        m.rpc(&m.relay_series("h:1"), idl::method("ExecuteStatement"), Duration::from_millis(3), 100, 40);
        m.rpc_error("GetInfo", None, ErrorKind::Unroutable);
        let mut out = String::new();
        text::encode(&mut out, &m.registry).unwrap();
        assert_eq!(sample(&out, r#"hs2_proxy_rpcs_total{method="ExecuteStatement",backend="h:1"}"#), Some(1.0));
        assert_eq!(sample(&out, r#"hs2_proxy_rpcs_total{method="GetInfo",backend="none"}"#), Some(1.0));
        let err = r#"hs2_proxy_rpc_errors_total{method="GetInfo",backend="none",kind="unroutable"}"#;
        assert_eq!(sample(&out, err), Some(1.0));
        assert_eq!(sample(&out, &backend_series("bytes_in_total", "h:1")), Some(100.0));
        assert!(out.contains(r#"hs2_proxy_rpc_duration_seconds_bucket{le="0.005",method="ExecuteStatement""#), "{out}");
    }
}
