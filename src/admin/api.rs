//! The JSON API: views of backends and sessions, and the operator's actions. The view types are shared
//! with the CLI (`cli_admin`), which reads them back.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::actions::{self, ActionError};
use super::{rfc3339, Authorized};
use crate::backend::health::{state_name, AdminState};
use crate::backend::Backend;
use crate::hs2::handle::Guid;
use crate::proxy::Proxy;
use crate::routing::{Learned, SessionView};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendsJson {
    pub backends: Vec<BackendJson>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendJson {
    /// `host:port` as configured.
    pub address: String,
    /// `up`, `draining` (the server shuts down), `drain`, `maintenance` (operator), or `down`.
    pub state: String,
    /// What probes and traffic see: `up`, `down`, `draining`.
    pub observed: String,
    /// What the operator set: `active`, `drain`, `maintenance`.
    pub admin: String,
    /// Why the backend is in its observed state.
    pub reason: String,
    /// True when it takes new sessions.
    pub eligible: bool,
    /// `impala` or `hive`: configured, or detected from its GetInfo answer; `null` until known.
    pub kind: Option<String>,
    pub weight: u32,
    /// Live sessions pinned to it through the proxy.
    pub sessions: u64,
    /// Open operations of those sessions.
    pub operations: u64,
    /// Calls being relayed now.
    pub inflight: u64,
    /// The impalad's own count of open HS2 sessions (`metrics_url`), when known.
    pub impalad_sessions: Option<u64>,
    /// Every input of the load balancing compares, slow start's share of the weight, the ejection streak.
    #[serde(default)]
    pub load: super::load::LoadJson,
    /// Left the configuration: drained, removed once its sessions are gone.
    pub removing: bool,
    pub upstream: UpstreamJson,
    pub last_probe: Option<ProbeJson>,
    /// The latest evacuation (`POST /api/backends/{addr}/evacuate`), if any: `state` is `running`, `done`
    /// (no session of the proxy's is left: restart it), `deadline` or `stopped`; `moved`, `waiting`,
    /// `unmovable`, `failed`, `left`.
    pub evacuation: Option<crate::backend::evacuation::Progress>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpstreamJson {
    pub busy: usize,
    pub idle: usize,
    pub pinned: usize,
    pub max: usize,
    pub waits: u64,
    pub wait_seconds: f64,
    pub exhausted: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeJson {
    pub at: String,
    /// `alive`, `shutting down: ...` or `failed: ...`.
    pub result: String,
    pub latency_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionsJson {
    pub sessions: Vec<SessionJson>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionJson {
    /// As impalad shows it: `hi:lo`.
    pub id: String,
    pub backend: String,
    /// The client's user: the authenticated user, else OpenSession's `username`. (With Kerberos or a
    /// delegating service account upstream, impalad's connected user is the proxy's own identity, and
    /// this user is the session's `effective_user` there.)
    pub user: Option<String>,
    /// The delegated user (`impala.doas.user`, `hive.server2.proxy.user`), else `user`.
    pub effective_user: Option<String>,
    /// Who may use it: the identity the client authenticated as; `null` when it did not.
    pub owner: Option<String>,
    /// `opened` (through this proxy) or `recovered` (found by asking the backends).
    pub learned: String,
    /// When this proxy learned it: opened, or found.
    pub learned_at: String,
    /// Client connections using the session now (`ip:port`; the first 16).
    pub clients: Vec<String>,
    /// How many client connections use the session now.
    pub connections: u32,
    pub opened_at: String,
    pub last_used: String,
    pub idle_seconds: f64,
    pub open_operations: usize,
    /// Ids (`hi:lo`, the query ids) of its open operations.
    pub operations: Vec<String>,
    /// The statement whose operation is still open (truncated).
    pub running_statement: Option<String>,
    /// The last statement the session ran (truncated).
    pub last_statement: Option<String>,
    /// Why the session cannot be moved to another backend; `null` when it can.
    pub unmovable: Option<String>,
    /// Times it was moved (evacuations, failures); true while a move runs.
    pub moves: u32,
    pub moving: bool,
    /// Its id on its backend (impalad's `/sessions` page) once moved; `null` when it is `id`.
    #[serde(default)]
    pub upstream_id: Option<String>,
    /// The routing rule that placed it (`name (fallback)` when it went outside the rule's group);
    /// `null` when no rule matched or the session was found by asking.
    pub rule: Option<String>,
}

/// The answer to an action.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionJson {
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct SessionFilter {
    pub backend: Option<String>,
    /// Matches `user` or `effective_user`.
    pub user: Option<String>,
}

pub fn backend_view(proxy: &Proxy, b: &Backend) -> BackendJson {
    let (observed, admin, reason) = {
        let h = b.health();
        (h.observed, h.admin, h.reason.clone())
    };
    let p = b.pool.stats();
    let probe = b.last_probe.lock().unwrap_or_else(|e| e.into_inner()).clone();
    BackendJson {
        address: b.addr.clone(),
        state: state_name(observed, admin).to_string(),
        observed: observed.to_string(),
        admin: admin.to_string(),
        reason,
        eligible: proxy.is_eligible(b),
        kind: b.kind().map(|k| format!("{k:?}").to_ascii_lowercase()),
        weight: b.weight.load(Ordering::Relaxed),
        sessions: proxy.load(b.id).sessions,
        operations: proxy.load(b.id).operations,
        inflight: b.inflight.load(Ordering::Relaxed),
        impalad_sessions: b.external_sessions(),
        load: super::load::load_view(proxy, b),
        removing: b.removing.load(Ordering::Relaxed),
        upstream: UpstreamJson {
            busy: p.busy(),
            idle: p.idle,
            pinned: p.pinned,
            max: p.max,
            waits: p.waits,
            wait_seconds: p.wait_seconds,
            exhausted: p.exhausted,
        },
        last_probe: probe.map(|r| ProbeJson {
            at: rfc3339(r.at),
            result: r.outcome,
            latency_ms: r.latency.as_secs_f64() * 1e3,
        }),
        evacuation: b.evacuation.progress(),
    }
}

pub fn session_view(proxy: &Proxy, s: &SessionView, now: SystemTime) -> SessionJson {
    let ids = |v: &[Guid]| v.iter().map(Guid::impala_id).collect::<Vec<_>>();
    let learned = match s.learned {
        Learned::Opened => "opened",
        Learned::Recovered => "recovered",
    };
    SessionJson {
        id: s.id.impala_id(),
        backend: proxy.backend(s.backend).map(|b| b.addr.clone()).unwrap_or_default(),
        user: s.users.user.clone(),
        effective_user: s.users.effective_user.clone(),
        owner: s.users.owner.clone(),
        learned: learned.to_string(),
        learned_at: rfc3339(s.learned_at),
        clients: s.clients.iter().map(|c| c.to_string()).collect(),
        connections: s.attached,
        opened_at: rfc3339(s.learned_at),
        last_used: rfc3339(now.checked_sub(s.idle).unwrap_or(now)),
        idle_seconds: round_ms(s.idle),
        open_operations: s.operations.len(),
        operations: ids(&s.operations),
        running_statement: s.last_statement.clone().filter(|_| s.statement_running),
        last_statement: s.last_statement.clone(),
        unmovable: s.unmovable.clone(),
        moves: s.moves,
        moving: s.moving,
        upstream_id: s.upstream.map(|g| g.impala_id()),
        rule: s.rule.clone(),
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

/// Every backend, in configuration order.
pub fn all_backends(proxy: &Proxy) -> BackendsJson {
    BackendsJson { backends: proxy.backends().iter().map(|b| backend_view(proxy, b)).collect() }
}

/// Every session matching the filter, oldest first.
pub fn filtered_sessions(proxy: &Proxy, filter: &SessionFilter) -> SessionsJson {
    let now = SystemTime::now();
    let backend = filter.backend.as_ref().map(|addr| proxy.find_backend(addr).map(|b| b.id));
    let sessions = proxy
        .sessions()
        .iter()
        .filter(|s| backend.is_none_or(|id| id == Some(s.backend)))
        .filter(|s| {
            let named = |u: &Option<String>| filter.user.is_none() || u.as_ref() == filter.user.as_ref();
            named(&s.users.user) || named(&s.users.effective_user)
        })
        .map(|s| session_view(proxy, s, now))
        .collect();
    SessionsJson { sessions }
}

/// The instance itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusJson {
    pub version: String,
    pub listen: String,
    pub started_at: String,
    pub uptime_seconds: f64,
    pub stopping: bool,
    pub client_connections: i64,
    pub sessions: usize,
    /// The ZooKeeper registration (`[discovery]`); `null` without it.
    pub discovery: Option<crate::discovery::DiscoveryState>,
}

/// `GET /api/history`: what the status page's charts show.
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryJson {
    pub interval_seconds: f64,
    pub window_seconds: f64,
    /// The ring's bound: with a short interval the samples cover less than the window.
    pub max_samples: usize,
    /// Oldest first.
    pub samples: Vec<super::history::Sample>,
}

pub async fn history(
    _: Authorized,
    State(proxy): State<Proxy>,
    axum::Extension(history): axum::Extension<super::history::History>,
) -> Response {
    // One lock at a time: a guard inside the struct expression would live until the `;`.
    let max_samples = history.ring().capacity();
    let body = HistoryJson {
        interval_seconds: proxy.config().admin.history_interval.as_secs_f64(),
        window_seconds: super::history::WINDOW.as_secs_f64(),
        max_samples,
        samples: history.samples(),
    };
    json(StatusCode::OK, &body)
}

pub async fn status(_: Authorized, State(proxy): State<Proxy>) -> Response {
    let body = StatusJson {
        version: env!("CARGO_PKG_VERSION").to_string(),
        listen: proxy.config().listen.to_string(),
        started_at: rfc3339(proxy.started_at()),
        uptime_seconds: round_ms(proxy.uptime()),
        stopping: proxy.is_stopping(),
        client_connections: proxy.metrics().client_connections(),
        sessions: proxy.session_count(),
        discovery: proxy.discovery(),
    };
    json(StatusCode::OK, &body)
}

pub async fn backends(_: Authorized, State(proxy): State<Proxy>) -> Response {
    json(StatusCode::OK, &all_backends(&proxy))
}

pub async fn sessions(_: Authorized, State(proxy): State<Proxy>, Query(filter): Query<SessionFilter>) -> Response {
    json(StatusCode::OK, &filtered_sessions(&proxy, &filter))
}

/// `?deadline=10m` of an evacuation.
#[derive(Debug, Deserialize)]
pub struct ActionQuery {
    pub deadline: Option<String>,
}

/// Longest evacuation deadline accepted.
const MAX_EVACUATION: Duration = Duration::from_secs(7 * 86_400);

pub async fn backend_action(
    _: Authorized,
    State(proxy): State<Proxy>,
    Path((addr, action)): Path<(String, String)>,
    Query(query): Query<ActionQuery>,
) -> Response {
    if action == "evacuate" {
        return evacuate(&proxy, &addr, query.deadline.as_deref().unwrap_or("10m"));
    }
    let state = match action.as_str() {
        "drain" => AdminState::Drain,
        "undrain" => AdminState::Active,
        "maintenance" => AdminState::Maintenance,
        _ => {
            let why = format!("unknown action {action:?}: drain, undrain, maintenance or evacuate");
            return error(StatusCode::NOT_FOUND, &why);
        }
    };
    if !proxy.set_admin(&addr, state) {
        return error(StatusCode::NOT_FOUND, &format!("no backend {addr:?}"));
    }
    let message = match state {
        AdminState::Active => format!("{addr} takes new sessions again"),
        AdminState::Drain => format!("{addr} drains: no new sessions, existing ones keep working"),
        AdminState::Maintenance => format!("{addr} is in maintenance: no new sessions, existing ones keep working"),
    };
    json(StatusCode::OK, &ActionJson { ok: true, message })
}

fn evacuate(proxy: &Proxy, addr: &str, deadline: &str) -> Response {
    let Some(deadline) = crate::config::parse_duration(deadline).filter(|d| !d.is_zero() && *d <= MAX_EVACUATION)
    else {
        return error(StatusCode::BAD_REQUEST, &format!("deadline {deadline:?} is not a duration from 1s to 7d"));
    };
    let Some(backend) = proxy.find_backend(addr) else {
        return error(StatusCode::NOT_FOUND, &format!("no backend {addr:?}"));
    };
    let sessions = proxy.load(backend.id).sessions;
    match crate::control::evacuate::start(proxy, backend, deadline) {
        Ok(()) => {
            let message = format!(
                "{addr} is being evacuated: no new sessions; its {sessions} session(s) move as their operations \
                 finish, for at most {}",
                crate::config::format_duration(deadline)
            );
            json(StatusCode::OK, &ActionJson { ok: true, message })
        }
        Err(why) => error(StatusCode::CONFLICT, &why),
    }
}

pub async fn close_session(_: Authorized, State(proxy): State<Proxy>, Path(id): Path<String>) -> Response {
    let Some(guid) = Guid::parse_impala_id(&id) else {
        return error(StatusCode::BAD_REQUEST, &format!("{id:?} is not a session id (hi:lo)"));
    };
    action_reply(actions::close_session(&proxy, guid).await)
}

pub async fn cancel_operation(_: Authorized, State(proxy): State<Proxy>, Path(id): Path<String>) -> Response {
    let Some(guid) = Guid::parse_impala_id(&id) else {
        return error(StatusCode::BAD_REQUEST, &format!("{id:?} is not an operation id (hi:lo)"));
    };
    action_reply(actions::cancel_operation(&proxy, guid).await)
}

fn action_reply(result: Result<String, ActionError>) -> Response {
    match result {
        Ok(message) => json(StatusCode::OK, &ActionJson { ok: true, message }),
        Err(e) => {
            let status = match e {
                ActionError::NotFound(_) => StatusCode::NOT_FOUND,
                ActionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ActionError::Backend(_) => StatusCode::BAD_GATEWAY,
            };
            error(status, &e.to_string())
        }
    }
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, [(CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// An error as `{"error": "..."}`.
pub fn error(status: StatusCode, text: &str) -> Response {
    json(status, &serde_json::json!({ "error": text }))
}
