//! The upstream connection pool of one backend.
//!
//! Connections are keyed by the credentials they authenticated with: impalad checks that a session's
//! user is the connection's user, so a connection only ever carries calls of its own user (and password:
//! a wrong password never rides on a connection a right one opened). One call is in flight per
//! connection; a checked-out connection is owned by that call. A connection that carried a session's
//! OpenSession is *pinned* while the session lives: Spark/Hive close a session when that connection
//! drops, so the pool never closes it for idleness or to make room. Pinned connections still carry
//! other calls.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::connect::{self, Endpoint, OpenError};
use crate::config::{BackendTransport, PoolConfig, UpstreamConfig};
use crate::conn::ThriftConn;
use crate::http::upstream::CallHeaders;
use crate::sasl::SaslError;

/// Who a connection authenticates as.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

/// What a pooled connection is keyed by: the user, and a keyed hash of the password (never the password).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredKey {
    pub user: Option<String>,
    digest: u64,
}

impl CredKey {
    /// The key of connections to a backend that does no authentication.
    pub fn anonymous() -> CredKey {
        CredKey { user: None, digest: 0 }
    }

    pub fn of(creds: &Credentials) -> CredKey {
        // A per-process random key: digests are useless outside this process.
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let digest = HASHER.get_or_init(RandomState::new).hash_one(creds.password.as_bytes());
        CredKey { user: Some(creds.user.clone()), digest }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to backend {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    #[error("connecting to backend {0} timed out")]
    ConnectTimeout(String),
    #[error("backend {addr} refused the credentials of user {user:?}: {message}")]
    AuthRefused { addr: String, user: String, message: String },
    #[error("SASL handshake with backend {addr} failed: {error}")]
    Handshake { addr: String, error: SaslError },
    #[error("HTTP connection to backend {addr} failed: {error}")]
    Http { addr: String, error: String },
    #[error("all {max} upstream connections to backend {addr} are busy; waited {waited:?}")]
    Exhausted { addr: String, max: usize, waited: Duration },
}

impl PoolError {
    /// True when nothing reached the backend and another backend may be tried (a new session only).
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, PoolError::Connect { .. } | PoolError::ConnectTimeout(_))
    }
}

/// An upstream connection, owned by one call at a time.
pub struct Upstream {
    pub id: u64,
    pub key: CredKey,
    pub conn: ThriftConn,
    /// Per-call headers of an HTTP backend connection.
    pub headers: Option<CallHeaders>,
}

impl Upstream {
    /// `X-Forwarded-For` of the next call (HTTP backends; binary ones have nowhere to put it).
    pub fn set_forwarded_for(&self, value: &str) {
        if let Some(h) = &self.headers {
            h.set_forwarded_for(value);
        }
    }
}

struct Idle {
    up: Upstream,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Idle>,
    /// Open connections, idle and checked out.
    total: usize,
    /// Pinned connection id -> live sessions it opened.
    pinned: HashMap<u64, usize>,
}

/// Counts for the operator view.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Open connections (and ones being opened), idle and checked out.
    pub total: usize,
    pub idle: usize,
    pub pinned: usize,
    /// The cap (`pool.max_per_backend`).
    pub max: usize,
    /// Checkouts that found no room and had to wait, since start.
    pub waits: u64,
    /// Total time those checkouts waited.
    pub wait_seconds: f64,
    /// Checkouts that gave up after `pool.wait_timeout`.
    pub exhausted: u64,
    /// Connections opened, since start.
    pub opened: u64,
}

impl PoolStats {
    /// Connections owned by a call right now.
    pub fn busy(&self) -> usize {
        self.total.saturating_sub(self.idle)
    }
}

/// Cumulative wait counters; atomics because every checkout updates them outside the pool lock.
#[derive(Default)]
struct WaitCounters {
    waits: AtomicU64,
    wait_micros: AtomicU64,
    exhausted: AtomicU64,
    opened: AtomicU64,
}

pub struct Pool {
    addr: String,
    transport: BackendTransport,
    upstream: UpstreamConfig,
    cfg: PoolConfig,
    max_frame: u64,
    inner: Mutex<Inner>,
    /// Signalled when a connection is returned or closed, for callers waiting for room.
    freed: Notify,
    next_id: AtomicU64,
    counters: WaitCounters,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pool({}, {:?})", self.addr, self.stats())
    }
}

impl Pool {
    pub fn new(
        addr: String,
        transport: BackendTransport,
        upstream: UpstreamConfig,
        cfg: PoolConfig,
        max_frame: u64,
    ) -> Pool {
        Pool {
            addr,
            transport,
            upstream,
            cfg,
            max_frame,
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            next_id: AtomicU64::new(1),
            counters: WaitCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the pool inconsistent beyond a count; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key a call with `creds` uses on this backend.
    pub fn key_for(&self, creds: &Credentials) -> CredKey {
        match self.transport {
            BackendTransport::Nosasl => CredKey::anonymous(),
            BackendTransport::Sasl => CredKey::of(creds),
        }
    }

    /// A connection for `creds`: an idle one that is still open, or a new one, waiting for room up to
    /// the configured time. Dead idle connections are dropped here, before anything is written.
    pub async fn checkout(&self, creds: &Credentials) -> Result<Upstream, PoolError> {
        let key = self.key_for(creds);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.cfg.wait_timeout;
        let mut waited = false;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let reserved = {
                let mut inner = self.lock();
                if let Some(up) = take_idle(&mut inner, &key) {
                    self.count_wait(waited, started);
                    return Ok(up);
                }
                reserve_room(&mut inner, &key, self.cfg.max_per_backend)
            };
            if reserved {
                self.count_wait(waited, started);
                return self.connect(key, creds).await.inspect_err(|_| self.forget_one());
            }
            waited = true;
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.count_wait(waited, started);
                self.counters.exhausted.fetch_add(1, Ordering::Relaxed);
                let max = self.cfg.max_per_backend;
                return Err(PoolError::Exhausted { addr: self.addr.clone(), max, waited: started.elapsed() });
            }
        }
    }

    fn count_wait(&self, waited: bool, started: Instant) {
        if waited {
            self.counters.waits.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.counters.wait_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }

    /// An idle connection of `user` (any password), never a new one: for the proxy's own clean-up calls.
    pub fn checkout_idle_of(&self, user: Option<&str>) -> Option<Upstream> {
        let mut inner = self.lock();
        let pos = inner.idle.iter().rposition(|i| i.up.key.user.as_deref() == user)?;
        let mut up = inner.idle.remove(pos).up;
        if up.conn.is_idle_and_open() {
            return Some(up);
        }
        drop_conn(&mut inner, up.id);
        self.freed.notify_one();
        None
    }

    async fn connect(&self, key: CredKey, creds: &Credentials) -> Result<Upstream, PoolError> {
        let addr = self.addr.clone();
        let ep = self.endpoint();
        let opened = tokio::time::timeout(self.cfg.connect_timeout, connect::open(&ep, creds, true))
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.addr.clone()))?
            .map_err(|e| match e {
                OpenError::Connect(error) => PoolError::Connect { addr, error },
                OpenError::AuthRefused(message) => PoolError::AuthRefused { addr, user: creds.user.clone(), message },
                OpenError::Sasl(error) => PoolError::Handshake { addr, error },
                OpenError::Http(error) => PoolError::Http { addr, error },
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(backend = %self.addr, conn = id, user = ?key.user, "upstream connection opened");
        Ok(Upstream { id, key, conn: opened.conn, headers: opened.headers })
    }

    /// How this pool's connections are opened (the health probe opens its own the same way).
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint { addr: &self.addr, auth: self.transport, upstream: &self.upstream, max_frame: self.max_frame }
    }

    /// Returns a connection after a complete call.
    pub fn checkin(&self, up: Upstream) {
        self.lock().idle.push(Idle { up, since: Instant::now() });
        self.freed.notify_one();
    }

    /// Drops a connection that is broken or in an unknown state.
    pub fn discard(&self, up: Upstream) {
        drop_conn(&mut self.lock(), up.id);
        self.freed.notify_one();
    }

    fn forget_one(&self) {
        let mut inner = self.lock();
        inner.total = inner.total.saturating_sub(1);
        drop(inner);
        self.freed.notify_one();
    }

    /// Keeps connection `id` open while a session it opened lives.
    pub fn pin(&self, id: u64) {
        *self.lock().pinned.entry(id).or_insert(0) += 1;
    }

    pub fn unpin(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(n) = inner.pinned.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                inner.pinned.remove(&id);
            }
        }
    }

    /// Closes idle, unpinned connections older than the idle timeout; returns how many.
    pub fn close_idle(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let timeout = self.cfg.idle_timeout;
        let before = inner.idle.len();
        let Inner { idle, pinned, total } = &mut *inner;
        idle.retain(|i| pinned.contains_key(&i.up.id) || now.duration_since(i.since) < timeout);
        let closed = before - idle.len();
        *total -= closed;
        if closed > 0 {
            self.freed.notify_waiters();
        }
        closed
    }

    /// Closes every idle connection (the backend went down: they are dead or soon will be).
    pub fn close_all_idle(&self) {
        let mut inner = self.lock();
        let closed = inner.idle.len();
        let ids: Vec<u64> = inner.idle.drain(..).map(|i| i.up.id).collect();
        ids.iter().for_each(|id| {
            inner.pinned.remove(id);
        });
        inner.total = inner.total.saturating_sub(closed);
        drop(inner);
        self.freed.notify_waiters();
    }

    pub fn stats(&self) -> PoolStats {
        let (total, idle, pinned) = {
            let inner = self.lock();
            (inner.total, inner.idle.len(), inner.pinned.len())
        };
        let c = &self.counters;
        PoolStats {
            total,
            idle,
            pinned,
            max: self.cfg.max_per_backend,
            waits: c.waits.load(Ordering::Relaxed),
            wait_seconds: c.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
            exhausted: c.exhausted.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
        }
    }
}

/// Takes the most recently used idle connection with `key` that is still open.
fn take_idle(inner: &mut Inner, key: &CredKey) -> Option<Upstream> {
    while let Some(pos) = inner.idle.iter().rposition(|i| &i.up.key == key) {
        let mut up = inner.idle.remove(pos).up;
        if up.conn.is_idle_and_open() {
            return Some(up);
        }
        tracing::debug!(conn = up.id, "dropping a dead idle upstream connection");
        drop_conn(inner, up.id);
    }
    None
}

/// Makes room for a new connection: below the cap, or by closing another user's idle unpinned one.
fn reserve_room(inner: &mut Inner, key: &CredKey, max: usize) -> bool {
    if inner.total < max {
        inner.total += 1;
        return true;
    }
    let victim = inner.idle.iter().position(|i| &i.up.key != key && !inner.pinned.contains_key(&i.up.id));
    match victim {
        // The new connection takes the victim's place in `total`.
        Some(pos) => {
            inner.idle.remove(pos);
            true
        }
        None => false,
    }
}

fn drop_conn(inner: &mut Inner, id: u64) {
    inner.total = inner.total.saturating_sub(1);
    inner.pinned.remove(&id);
}
