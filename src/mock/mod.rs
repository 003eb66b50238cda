//! A mock impalad: an HS2 server (plus Impala's extra calls) with Impala's session semantics and a tiny
//! SQL dialect, for the proxy's integration tests, the demo and benchmarks.
//!
//! - [`server`]: the listener and the per-connection task (the only I/O here).
//! - [`calls`], [`op_calls`]: one function per method, Impala's checks and texts.
//! - [`state`]: sessions, operations and the query log; [`sql`]: the dialect; [`rowset`]: lazily
//!   generated results; [`plan`]: a query's operators and exec summary; [`profile`]: its text profile.
//! - [`web`]: an optional web port like impalad's (`/jsonmetrics`, `/sessions?json`), started with
//!   [`MockImpalad::start_web`]; its admission figures are set by [`MockImpalad::set_admission`].
//! - [`hs2_http`]: an optional hs2-http port like impalad's (28000), with its `--trusted_auth_header`
//!   rule, started with [`MockImpalad::start_http`].
//!
//! Faults to inject: `select crash()` (the first fetch's reply is cut in half and the connection
//! dropped), [`MockImpalad::set_hang_up_on`] (calls of one method are read and the connection closed
//! without a reply, while other calls and probes work), [`MockImpalad::set_delay`],
//! [`MockImpalad::drop_connections`], [`MockImpalad::set_shutting_down`] and [`MockImpalad::stop`].
//! - `ledger`: when each session opened, and every call that named a handle the mock does not hold
//!   (a test bed with several mocks tells misrouted calls from stale ones with it).
//!
//! What makes it Impala-like, and what the proxy depends on: sessions outlive the connection that opened
//! them and work from any connection; an operation's secret is its session's secret; unknown handles get
//! `Invalid session id: <hi:lo>` / `Invalid or unknown query handle: <hi:lo>.`; a draining server answers
//! `Server is being shut down: ...`; SASL replies can be split into small frames like Impala's 128 KiB
//! write buffer does. With Kerberos (`MockAuth::Gssapi`) the connected user is the principal's short name,
//! and `impala.doas.user` needs [`MockConfig::authorized_proxy_users`], as impalad's
//! `--authorized_proxy_user_config`; `select current_user()` answers the session's effective user.

mod calls;
pub mod hs2_http;
mod ledger;
mod op_calls;
pub mod plan;
mod profile;
pub mod rowset;
mod server;
pub mod sql;
mod state;
mod web;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::hs2::handle::Guid;
use crate::kerberos::delegation::ProxyUsers;
use crate::kerberos::{Credential, Gss};
use crate::sasl::KerberosUser;
pub use ledger::{HandleKind, UnknownHandle};
use state::State;

/// The version the mock reports (GetInfo CLI_DBMS_VER, PingImpalaHS2Service).
pub const MOCK_VERSION: &str = "4.4.0-mock";

/// How clients authenticate to the mock.
#[derive(Clone)]
pub enum MockAuth {
    /// Unframed binary protocol (Impala's `NOSASL`).
    NoSasl,
    /// SASL PLAIN; `None` accepts any user and password.
    Plain { users: Option<Vec<(String, String)>> },
    /// SASL GSSAPI (Kerberos) with the keys of `keytab`: for `principal` only (`impala/localhost`), or for
    /// any principal in it. The connected user is the client principal's short name.
    Gssapi { keytab: PathBuf, principal: Option<String> },
}

impl fmt::Debug for MockAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MockAuth::NoSasl => f.write_str("NoSasl"),
            MockAuth::Plain { users: None } => f.write_str("Plain(any user)"),
            MockAuth::Plain { users: Some(u) } => write!(f, "Plain({} users)", u.len()),
            MockAuth::Gssapi { keytab, principal } => {
                write!(f, "Gssapi({} from {})", principal.as_deref().unwrap_or("any principal"), keytab.display())
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Host name reported in `http_addr` and the web server address, and shown in logs.
    pub name: String,
    pub auth: MockAuth,
    /// Waited before handling every request (a slow or distant impalad).
    pub delay: Duration,
    /// SASL only: split every reply into frames of at most this many bytes (Impala: 128 KiB).
    pub write_frame_bytes: Option<usize>,
    /// Rows per FetchResults when the request asks for none (`maxRows <= 0`).
    pub fetch_default_rows: i64,
    /// Benchmark mode: `blobs` batches are encoded once per shape and reused (every batch repeats the
    /// first batch's rows and says `startRowOffset` 0), so that the mock is never the bottleneck
    /// of a throughput measurement. Off by default (tests check per-row content).
    pub fast: bool,
    /// Who may delegate with `impala.doas.user` (impalad's `--authorized_proxy_user_config`); empty:
    /// nobody (Impala's "User delegation is disabled.").
    pub authorized_proxy_users: ProxyUsers,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            name: "mock-impalad".to_string(),
            auth: MockAuth::NoSasl,
            delay: Duration::ZERO,
            write_frame_bytes: None,
            fetch_default_rows: 1024,
            fast: false,
            authorized_proxy_users: ProxyUsers::default(),
        }
    }
}

/// A running mock impalad; clones share it.
#[derive(Clone)]
pub struct MockImpalad {
    inner: Arc<Inner>,
}

/// State shared by the handle, the accept loop and the connection tasks.
/// A `blobs` batch's shape: rows, bytes per row, `hasMoreRows`.
type BatchShape = (u64, usize, bool);

pub(crate) struct Inner {
    cfg: MockConfig,
    local_addr: SocketAddr,
    // std mutexes: every critical section is short and synchronous, never across an `.await`.
    state: Mutex<State>,
    delay: Mutex<Duration>,
    calls: Mutex<HashMap<String, u64>>,
    /// The bytes of the last request of each method, as they arrived (for byte-exactness checks).
    last_requests: Mutex<HashMap<String, Vec<u8>>>,
    shutting_down: AtomicBool,
    connections: AtomicUsize,
    accepted: AtomicU64,
    /// Flips to `true` once: the accept loop then drops every connection and the listener.
    stop: watch::Sender<bool>,
    /// Bumped to drop every open connection while the server lives on (a network blip).
    drop_generation: watch::Sender<u64>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    /// Fast mode: encoded `result` bodies of `blobs` batches, by (rows, row bytes, hasMoreRows).
    prepared: Mutex<HashMap<BatchShape, Arc<Vec<u8>>>>,
    /// Kerberos acceptor credentials (`MockAuth::Gssapi`), acquired once at start.
    acceptor: Option<Credential>,
    /// Every Kerberos login, in order (tests read how real clients end the negotiation).
    kerberos_logins: Mutex<Vec<KerberosUser>>,
    /// The web port, once started.
    web_addr: Mutex<Option<SocketAddr>>,
    /// Admission figures the web port reports, per pool: (admitted and running, queued).
    admission: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Fault injection: calls of this method get no reply; their connection is closed.
    hang_up_on: Mutex<Option<String>>,
    /// Calls that named a handle this mock does not hold (`ledger`).
    unknown: Mutex<ledger::UnknownLog>,
    /// The hs2-http port's cookie key and logins.
    http: hs2_http::HttpState,
    /// The hs2-http port's task, once started (`stop` waits for it like for the accept loop).
    http_task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the mock down with it: the data is still consistent enough.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Fast mode: the prepared body for a batch shape, built by `build` the first time.
    fn prepared(&self, key: BatchShape, build: impl FnOnce() -> Vec<u8>) -> Arc<Vec<u8>> {
        if let Some(body) = lock(&self.prepared).get(&key) {
            return body.clone();
        }
        // Built outside the lock (it is the costly part); a concurrent duplicate build is harmless.
        let body = Arc::new(build());
        lock(&self.prepared).insert(key, body.clone());
        body
    }

    fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    /// Impala's draining text, when draining.
    fn shutdown_text(&self) -> Option<String> {
        let on = self.shutting_down.load(Ordering::Relaxed);
        let open = self.state().ops.len();
        on.then(|| {
            format!(
                "Server is being shut down: startup grace period left: 0, deadline left: 59m59s, \
                 queries registered on coordinator: {open}, queries executing: 0, fragment instances: 0"
            )
        })
    }

    fn count_call(&self, method: &str, request: &[u8]) {
        // Only IDL methods get their own counter: a peer must not grow the map with made-up names.
        let key = if crate::hs2::idl::method(method).is_some() { method } else { "<unknown>" };
        *lock(&self.calls).entry(key.to_string()).or_default() += 1;
        lock(&self.last_requests).insert(key.to_string(), request.to_vec());
    }
}

impl MockImpalad {
    /// Binds `addr` (port 0 for any) and starts serving.
    pub async fn start(addr: &str, cfg: MockConfig) -> std::io::Result<MockImpalad> {
        let acceptor = match &cfg.auth {
            MockAuth::Gssapi { keytab, principal } => {
                let gss = Gss::load().map_err(std::io::Error::other)?;
                Some(gss.acceptor(keytab, principal.as_deref()).map_err(std::io::Error::other)?)
            }
            _ => None,
        };
        let listener = TcpListener::bind(addr).await?;
        // Subscribed before the loop starts, so that a `stop` right after `start` is not missed.
        let (stop, stopped) = watch::channel(false);
        let inner = Arc::new(Inner {
            local_addr: listener.local_addr()?,
            delay: Mutex::new(cfg.delay),
            cfg,
            state: Mutex::new(State::default()),
            calls: Mutex::new(HashMap::new()),
            last_requests: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            stop,
            drop_generation: watch::channel(0).0,
            accept_task: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
            acceptor,
            kerberos_logins: Mutex::new(Vec::new()),
            web_addr: Mutex::new(None),
            admission: Mutex::new(BTreeMap::new()),
            hang_up_on: Mutex::new(None),
            unknown: Mutex::new(ledger::UnknownLog::default()),
            http: Default::default(),
            http_task: Mutex::new(None),
        });
        let task = tokio::spawn(server::accept_loop(listener, inner.clone(), stopped));
        *lock(&inner.accept_task) = Some(task);
        tracing::info!(name = %inner.cfg.name, addr = %inner.local_addr, auth = ?inner.cfg.auth, "mock impalad listening");
        Ok(MockImpalad { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Starts a web port like impalad's on `addr` (port 0 for any), served until the mock stops.
    pub async fn start_web(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        tokio::spawn(web::serve(listener, self.inner.clone(), self.inner.stop.subscribe()));
        *lock(&self.inner.web_addr) = Some(local);
        tracing::info!(name = %self.inner.cfg.name, addr = %local, "mock impalad web port listening");
        Ok(local)
    }

    /// Starts an hs2-http port like impalad's on `addr` (port 0 for any), served until the mock stops.
    /// `trusted_auth_header`: impalad's `--trusted_auth_header` (see [`hs2_http`] for the rules).
    pub async fn start_http(&self, addr: &str, trusted_auth_header: Option<&str>) -> std::io::Result<SocketAddr> {
        let trusted = trusted_auth_header
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
            .transpose()
            .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(hs2_http::serve(listener, self.inner.clone(), trusted, self.inner.stop.subscribe()));
        *lock(&self.inner.http_task) = Some(task);
        tracing::info!(name = %self.inner.cfg.name, addr = %local, trusted_auth_header, "mock impalad hs2-http port listening");
        Ok(local)
    }

    /// Every request the hs2-http port authenticated, oldest first (the last 10,000).
    pub fn http_logins(&self) -> Vec<hs2_http::HttpLogin> {
        self.inner.http.logins()
    }

    /// `http://<web port>/jsonmetrics`, for a backend's `metrics_url`, once the web port runs.
    pub fn metrics_url(&self) -> Option<String> {
        lock(&self.inner.web_addr).map(|a| format!("http://{a}/jsonmetrics"))
    }

    pub fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    /// Draining: OpenSession, GetInfo and ExecuteStatement answer `Server is being shut down: ...`.
    pub fn set_shutting_down(&self, on: bool) {
        self.inner.shutting_down.store(on, Ordering::Relaxed);
    }

    /// What the web port's `/jsonmetrics` says of resource pool `pool`, as impalad's admission controller
    /// does: `admission-controller.local-num-admitted-running.<pool>` and `...local-num-queued.<pool>`
    /// (with the `agg-` figures equal to them: one coordinator). A pool appears once set.
    pub fn set_admission(&self, pool: &str, running: u64, queued: u64) {
        lock(&self.inner.admission).insert(pool.to_string(), (running, queued));
    }

    /// Fault injection: from now on a call of `method` is read, then its connection is closed without a
    /// reply (a coordinator thread that dies mid-call); `None` ends it. Other calls, probes included, work.
    pub fn set_hang_up_on(&self, method: Option<&str>) {
        *lock(&self.inner.hang_up_on) = method.map(str::to_string);
    }

    pub fn set_delay(&self, d: Duration) {
        *lock(&self.inner.delay) = d;
    }

    pub fn sessions(&self) -> Vec<Guid> {
        self.inner.state().sessions.keys().copied().collect()
    }

    pub fn has_session(&self, g: &Guid) -> bool {
        self.inner.state().sessions.contains_key(g)
    }

    /// The session's connected user.
    pub fn session_user(&self, g: &Guid) -> Option<String> {
        self.inner.state().sessions.get(g).map(|s| s.user.clone())
    }

    /// The user the session runs as (the delegated one, if any).
    pub fn session_effective_user(&self, g: &Guid) -> Option<String> {
        self.inner.state().sessions.get(g).map(|s| s.effective_user().to_string())
    }

    /// Every Kerberos login so far: principal, short name, and how the client ended the negotiation.
    pub fn kerberos_logins(&self) -> Vec<KerberosUser> {
        lock(&self.inner.kerberos_logins).clone()
    }

    pub fn open_operations(&self) -> usize {
        self.inner.state().ops.len()
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    pub fn connections_accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// The bytes of the last `method` request the mock received, exactly as they arrived.
    pub fn last_request(&self, method: &str) -> Option<Vec<u8>> {
        lock(&self.inner.last_requests).get(method).cloned()
    }

    /// How many times `method` was called (methods the IDL does not know count as `"<unknown>"`).
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.inner.calls).get(method).copied().unwrap_or(0)
    }

    /// Drops every open client connection; the server keeps listening and keeps its sessions (as after
    /// a network blip, or an impalad closing idle connections).
    pub async fn drop_connections(&self) {
        self.inner.drop_generation.send_modify(|g| *g += 1);
        tokio::task::yield_now().await;
    }

    /// Stops like a dead impalad: no more accepts, every connection dropped, every session lost.
    /// Returns once the connections are closed.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let tasks = [lock(&self.inner.accept_task).take(), lock(&self.inner.http_task).take()];
        for task in tasks.into_iter().flatten() {
            let _ = task.await;
        }
        self.inner.state().clear();
        tracing::info!(name = %self.inner.cfg.name, "mock impalad stopped");
    }
}
