//! The upstream connection pool of one backend.
//!
//! Connections are keyed by the credentials they authenticated with: impalad checks that a session's
//! user is the connection's user, so a connection only ever carries calls of its own user (and password:
//! a wrong password never rides on a connection a right one opened). One call is in flight per
//! connection; a checked-out connection is owned by that call. A connection that carried a session's
//! OpenSession is *pinned* while the session lives: Spark/Hive close a session when that connection
//! drops, so the pool never closes it for idleness or to make room. Pinned connections still carry
//! other calls.
//!
//! Cancel safety: a [`Checkout`] returns its connection to the idle list only when the call says it
//! completed ([`Checkout::release`]); dropped any other way (an error, or a future cancelled by a client
//! that went away) it closes the connection and frees its slot. A slot reserved for a connection being
//! opened is freed the same way if the opening is abandoned. No path leaks a slot.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use super::connect::Credentials;
use super::connect::{self, Endpoint, KerberosUpstream, OpenError};
use crate::config::{BackendTransport, PoolConfig, UpstreamConfig};
use crate::conn::ThriftConn;
use crate::http::upstream::CallHeaders;
use crate::sasl::SaslError;

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

/// Why no connection could be had. Every variant means nothing reached the backend for this call.
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
    /// True when the backend could not be reached at all: evidence that it is down, and a new session
    /// may try another backend.
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, PoolError::Connect { .. } | PoolError::ConnectTimeout(_))
    }
}

/// An open upstream connection.
struct Upstream {
    id: u64,
    key: CredKey,
    conn: ThriftConn,
    /// Per-call headers of an HTTP backend connection.
    headers: Option<CallHeaders>,
}

struct Idle {
    /// Boxed: a connection moves in and out of `idle` on every call, and moving a box is moving a pointer.
    up: Box<Upstream>,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Idle>,
    /// Open connections, idle and checked out, and slots reserved for connections being opened.
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

/// Cumulative counters; atomics because every checkout updates them outside the pool lock.
#[derive(Default)]
struct Counters {
    waits: AtomicU64,
    wait_micros: AtomicU64,
    exhausted: AtomicU64,
    opened: AtomicU64,
}

/// What the pool of one backend shares with its checked-out connections.
struct Shared {
    addr: String,
    transport: BackendTransport,
    upstream: UpstreamConfig,
    kerberos: Option<KerberosUpstream>,
    /// `backend_auth.trusted_header`: sent on every POST (Impala's trusted hop).
    trusted_header: Option<http::HeaderName>,
    cfg: PoolConfig,
    max_frame: u64,
    inner: Mutex<Inner>,
    /// Signalled when a connection is returned or closed, for callers waiting for room.
    freed: Notify,
    next_id: AtomicU64,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the pool inconsistent beyond a count; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes a connection that left the idle list (or never joined it) and frees its slot.
    fn close(&self, id: u64) {
        let mut inner = self.lock();
        inner.total = inner.total.saturating_sub(1);
        inner.pinned.remove(&id);
        drop(inner);
        self.freed.notify_one();
    }
}

pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pool({}, {:?})", self.shared.addr, self.stats())
    }
}

/// A connection owned by one call. [`Checkout::release`] gives it back after a complete exchange;
/// dropping it any other way closes it (its state is unknown).
pub struct Checkout {
    up: Option<Box<Upstream>>,
    pool: Arc<Shared>,
}

impl fmt::Debug for Checkout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checkout({}, conn {})", self.pool.addr, self.id())
    }
}

impl Checkout {
    /// The connection's id (stable for its life; pins refer to it).
    pub fn id(&self) -> u64 {
        self.up.as_ref().map_or(0, |u| u.id)
    }

    pub fn conn(&mut self) -> &mut ThriftConn {
        // `up` is only `None` inside `release` and `drop`, which consume the checkout.
        match self.up.as_mut() {
            Some(up) => &mut up.conn,
            None => unreachable!("a checkout always holds its connection until it is consumed"),
        }
    }

    /// `X-Forwarded-For` of the next call (HTTP backends; binary ones have nowhere to put it).
    pub fn set_forwarded_for(&self, value: &str) {
        if let Some(h) = self.up.as_ref().and_then(|u| u.headers.as_ref()) {
            h.set_forwarded_for(value);
        }
    }

    /// The exchange completed and the connection is in step: back to the idle list.
    pub fn release(mut self) {
        if let Some(up) = self.up.take() {
            self.pool.lock().idle.push(Idle { up, since: Instant::now() });
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(up) = self.up.take() {
            tracing::debug!(backend = %self.pool.addr, conn = up.id, "upstream connection closed: its call did not complete");
            self.pool.close(up.id);
        }
    }
}

/// A slot counted in `total` for a connection being opened; freed if the opening fails or is abandoned.
struct Reservation {
    pool: Arc<Shared>,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.pool.close(0);
        }
    }
}

impl Pool {
    pub fn new(
        addr: String,
        transport: BackendTransport,
        upstream: UpstreamConfig,
        cfg: PoolConfig,
        max_frame: u64,
        kerberos: Option<KerberosUpstream>,
    ) -> Pool {
        let shared = Shared {
            addr,
            transport,
            upstream,
            kerberos,
            trusted_header: None,
            cfg,
            max_frame,
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        };
        Pool { shared: Arc::new(shared) }
    }

    /// Every POST of this pool's connections (and of its probes) carries `header` (Impala's trusted
    /// hop, `backend_auth.trusted_header`). Set at creation, before the pool is shared.
    pub fn with_trusted_header(mut self, header: Option<http::HeaderName>) -> Pool {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.trusted_header = header;
        }
        self
    }

    /// The key a call with `creds` uses on this backend.
    pub fn key_for(&self, creds: &Credentials) -> CredKey {
        match self.shared.transport {
            // No authentication, or the proxy's own Kerberos identity on every connection.
            BackendTransport::Nosasl | BackendTransport::Gssapi => CredKey::anonymous(),
            BackendTransport::Sasl => CredKey::of(creds),
        }
    }

    /// A connection for `creds`: an idle one that is still open, or a new one, waiting for room up to
    /// `pool.wait_timeout`. Dead idle connections are dropped here, before anything is written.
    /// Cancel-safe: abandoning the future frees whatever it had reserved.
    pub async fn checkout(&self, creds: &Credentials) -> Result<Checkout, PoolError> {
        let key = self.key_for(creds);
        // Read the clock only for a checkout that has to wait: most never do (two clock reads a call).
        let mut waiting_since: Option<(Instant, tokio::time::Instant)> = None;
        let mut armed = false;
        loop {
            let freed = self.shared.freed.notified();
            tokio::pin!(freed);
            // Most checkouts find an idle connection at the first look, which arms no wait for a freed
            // one (a `Notify` registration and removal, each under its lock, on every call otherwise).
            // A look that finds none arms the wait and looks again before waiting: nothing freed
            // between the two is missed.
            if armed {
                freed.as_mut().enable();
            }
            let reserved = {
                let mut inner = self.shared.lock();
                if let Some(up) = take_idle(&mut inner, &key) {
                    self.count_wait(waiting_since);
                    return Ok(self.checkout_of(up));
                }
                reserve_room(&mut inner, &key, self.shared.cfg.max_per_backend)
            };
            if reserved {
                self.count_wait(waiting_since);
                let reservation = Reservation { pool: self.shared.clone(), armed: true };
                return self.connect(key, creds, reservation).await;
            }
            if !std::mem::replace(&mut armed, true) {
                continue;
            }
            let (started, deadline) = *waiting_since.get_or_insert_with(|| {
                let now = tokio::time::Instant::now();
                (now.into_std(), now + self.shared.cfg.wait_timeout)
            });
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.count_wait(waiting_since);
                self.shared.counters.exhausted.fetch_add(1, Ordering::Relaxed);
                let (addr, max) = (self.shared.addr.clone(), self.shared.cfg.max_per_backend);
                return Err(PoolError::Exhausted { addr, max, waited: started.elapsed() });
            }
        }
    }

    fn checkout_of(&self, up: Box<Upstream>) -> Checkout {
        Checkout { up: Some(up), pool: self.shared.clone() }
    }

    /// Counts a checkout that waited (`waiting_since` is when its wait began).
    fn count_wait(&self, waiting_since: Option<(Instant, tokio::time::Instant)>) {
        if let Some((started, _)) = waiting_since {
            let c = &self.shared.counters;
            c.waits.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.wait_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }

    /// An idle connection of `user` (any password), never a new one: for the proxy's own calls on a
    /// session whose user's password it does not keep (clean-up, operator actions).
    pub fn checkout_idle_of(&self, user: Option<&str>) -> Option<Checkout> {
        let mut inner = self.shared.lock();
        while let Some(pos) = inner.idle.iter().rposition(|i| i.up.key.user.as_deref() == user) {
            let mut up = inner.idle.remove(pos).up;
            if up.conn.is_idle_and_open() {
                return Some(self.checkout_of(up));
            }
            drop_conn(&mut inner, up.id);
            self.shared.freed.notify_one();
        }
        None
    }

    async fn connect(
        &self,
        key: CredKey,
        creds: &Credentials,
        mut reservation: Reservation,
    ) -> Result<Checkout, PoolError> {
        let addr = self.shared.addr.clone();
        let ep = self.endpoint();
        let opened = tokio::time::timeout(self.shared.cfg.connect_timeout, connect::open(&ep, creds, true))
            .await
            .map_err(|_| PoolError::ConnectTimeout(addr.clone()))?
            .map_err(|e| match e {
                OpenError::Connect(error) => PoolError::Connect { addr, error },
                OpenError::AuthRefused(message) => {
                    PoolError::AuthRefused { addr: self.shared.addr.clone(), user: creds.user.clone(), message }
                }
                OpenError::Sasl(error) => PoolError::Handshake { addr: self.shared.addr.clone(), error },
                OpenError::Http(error) => PoolError::Http { addr: self.shared.addr.clone(), error },
            })?;
        // From here the slot belongs to the checkout.
        reservation.armed = false;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.counters.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(backend = %self.shared.addr, conn = id, user = ?key.user, "upstream connection opened");
        Ok(self.checkout_of(Box::new(Upstream { id, key, conn: opened.conn, headers: opened.headers })))
    }

    /// How this pool's connections are opened (the health probe opens its own the same way).
    pub fn endpoint(&self) -> Endpoint<'_> {
        let s = &self.shared;
        Endpoint {
            addr: &s.addr,
            auth: s.transport,
            upstream: &s.upstream,
            max_frame: s.max_frame,
            kerberos: s.kerberos.as_ref(),
            trusted_header: s.trusted_header.as_ref(),
        }
    }

    /// Keeps connection `id` open while a session it opened lives.
    pub fn pin(&self, id: u64) {
        *self.shared.lock().pinned.entry(id).or_insert(0) += 1;
    }

    pub fn unpin(&self, id: u64) {
        let mut inner = self.shared.lock();
        if let Some(n) = inner.pinned.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                inner.pinned.remove(&id);
            }
        }
    }

    /// Closes idle, unpinned connections older than the idle timeout; returns how many.
    pub fn close_idle(&self, now: Instant) -> usize {
        let mut inner = self.shared.lock();
        let timeout = self.shared.cfg.idle_timeout;
        let before = inner.idle.len();
        let Inner { idle, pinned, total } = &mut *inner;
        idle.retain(|i| pinned.contains_key(&i.up.id) || now.duration_since(i.since) < timeout);
        let closed = before - idle.len();
        *total -= closed;
        if closed > 0 {
            self.shared.freed.notify_waiters();
        }
        closed
    }

    /// Closes every idle connection (the backend went down: they are dead or soon will be).
    pub fn close_all_idle(&self) {
        let mut inner = self.shared.lock();
        let closed = inner.idle.len();
        let ids: Vec<u64> = inner.idle.drain(..).map(|i| i.up.id).collect();
        ids.iter().for_each(|id| {
            inner.pinned.remove(id);
        });
        inner.total = inner.total.saturating_sub(closed);
        drop(inner);
        self.shared.freed.notify_waiters();
    }

    pub fn stats(&self) -> PoolStats {
        let (total, idle, pinned) = {
            let inner = self.shared.lock();
            (inner.total, inner.idle.len(), inner.pinned.len())
        };
        let c = &self.shared.counters;
        PoolStats {
            total,
            idle,
            pinned,
            max: self.shared.cfg.max_per_backend,
            waits: c.waits.load(Ordering::Relaxed),
            wait_seconds: c.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
            exhausted: c.exhausted.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
        }
    }
}

/// Takes the most recently used idle connection with `key` that is still open.
fn take_idle(inner: &mut Inner, key: &CredKey) -> Option<Box<Upstream>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn pool(addr: &str, transport: BackendTransport, max: usize) -> Pool {
        let cfg = PoolConfig {
            max_per_backend: max,
            wait_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
        };
        Pool::new(addr.to_string(), transport, UpstreamConfig::default(), cfg, 1 << 20, None)
    }

    fn creds() -> Credentials {
        Credentials { user: "alice".into(), password: "pw".into() }
    }

    /// A backend that accepts TCP and never answers: a SASL handshake to it waits forever.
    async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        (addr, task)
    }

    /// A checkout abandoned while its connection is being opened (a client that went away mid-call)
    /// frees its slot: the pool's count returns to zero and the next call gets a connection.
    #[tokio::test]
    async fn an_abandoned_connect_frees_its_slot() {
        let (addr, _server) = black_hole().await;
        let pool = pool(&addr, BackendTransport::Sasl, 1);
        let attempt = tokio::time::timeout(Duration::from_millis(100), pool.checkout(&creds())).await;
        assert!(attempt.is_err(), "the handshake never finishes: the caller gives up");
        assert_eq!(pool.stats().total, 0, "the reserved slot was freed");
        let again = tokio::time::timeout(Duration::from_millis(100), pool.checkout(&creds())).await;
        assert!(again.is_err(), "a second attempt gets the slot (and waits on the handshake), not Exhausted");
        assert_eq!(pool.stats().exhausted, 0);
    }

    /// A checked-out connection dropped without `release` (a cancelled call) is closed and its slot freed;
    /// a released one goes back to the idle list.
    #[tokio::test]
    async fn a_dropped_checkout_closes_and_a_released_one_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepts = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..2 {
                held.push(listener.accept().await.unwrap().0);
            }
            held
        });
        let pool = pool(&addr, BackendTransport::Nosasl, 1);
        let first = pool.checkout(&creds()).await.unwrap();
        assert_eq!(pool.stats().total, 1);
        drop(first);
        assert_eq!((pool.stats().total, pool.stats().idle), (0, 0), "dropped: closed, slot free");
        let second = pool.checkout(&creds()).await.unwrap();
        let id = second.id();
        second.release();
        assert_eq!((pool.stats().total, pool.stats().idle), (1, 1), "released: idle");
        let held = accepts.await.unwrap();
        let third = pool.checkout(&creds()).await.unwrap();
        assert_eq!(third.id(), id, "the idle connection is reused");
        drop(held);
    }
}
