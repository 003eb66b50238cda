//! One client connection: handshake, then read -> route -> forward -> learn -> reply, one call at a time.
//!
//! Glue only: the transport is sniffed by `thrift::framing`, requests are read by `conn`, routing
//! decisions come from `routing`, backends from `balance` and the pools. What this task owns is the
//! order of those steps and which errors become HS2 replies (everything a client can understand) and
//! which close the connection (broken framing, or a reply that broke after bytes reached the client).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::admin::metrics::{method_label, ErrorKind};
use crate::backend::health::Evidence;
use crate::backend::pool::{Credentials, PoolError};
use crate::backend::{probe, Backend};
use crate::conn::{ConnError, Io, RelayError, ThriftConn};
use crate::hs2::call::{reply_scanner, reply_summary, status, ReplySummary, Request};
use crate::hs2::handle::Guid;
use crate::hs2::reply;
use crate::routing::{Reject, Route};
use crate::server::Proxy;
use crate::thrift::framing::{Framing, Sniffed};
use crate::{recover, sasl};

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("{0}")]
    Sasl(#[from] sasl::SaslError),
    #[error("no request for {0:?}")]
    Idle(std::time::Duration),
    #[error("{0}")]
    Refused(String),
}

pub(crate) struct Client {
    proxy: Arc<Proxy>,
    conn: ThriftConn,
    peer: SocketAddr,
    /// The SASL user, when the client authenticated.
    user: Option<String>,
    /// What this client's calls authenticate with upstream.
    creds: Credentials,
    /// Sessions this connection has used: detached when it closes.
    used: HashSet<Guid>,
    /// `X-Forwarded-For` for HTTP backends: what the client's own request said, then its address.
    forwarded_for: String,
}

/// Serves one binary-protocol connection (sniffed by `frontend`, which read `first`) until it closes.
pub async fn serve_binary(proxy: Arc<Proxy>, io: Box<dyn Io>, first: Vec<u8>, kind: Sniffed, peer: SocketAddr) {
    let mut client = match handshake(proxy, io, &first, kind, peer).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(client = %peer, error = %e, "client connection refused");
            return;
        }
    };
    match client.run().await {
        Ok(()) => tracing::debug!(client = %peer, "client closed the connection"),
        Err(e) => tracing::info!(client = %peer, error = %e, "client connection closed"),
    }
    client.close();
}

async fn handshake(
    proxy: Arc<Proxy>,
    io: Box<dyn Io>,
    first: &[u8],
    kind: Sniffed,
    peer: SocketAddr,
) -> Result<Client, End> {
    let timeout = proxy.config.handshake_timeout;
    let max_frame = proxy.config.max_frame_bytes;
    let framing = match kind {
        Sniffed::Unframed | Sniffed::Sasl => Framing::Unframed,
        Sniffed::Framed => Framing::Framed,
        other => return Err(End::Refused(format!("{other:?} is not the binary protocol"))),
    };
    let mut conn = ThriftConn::new(io, framing, max_frame).with_initial_bytes(first);
    let (user, creds) = if kind == Sniffed::Sasl {
        let creds = tokio::time::timeout(timeout, sasl::server_read_credentials(&mut conn))
            .await
            .map_err(|_| End::Idle(timeout))??;
        let creds = Credentials { user: creds.user, password: creds.password };
        let verdict = proxy.authenticate(&creds).await;
        if let Err(reason) = &verdict {
            tracing::warn!(client = %peer, user = %creds.user, reason = %reason, "authentication failed");
        }
        sasl::server_finish(&mut conn, verdict, max_frame).await?;
        (Some(creds.user.clone()), creds)
    } else {
        let c = &proxy.config.service_credentials;
        (None, Credentials { user: c.user.clone(), password: c.password.clone() })
    };
    tracing::debug!(client = %peer, transport = ?kind, user = ?user, "client connected");
    let forwarded_for = peer.ip().to_string();
    Ok(Client { proxy, conn, peer, user, creds, used: HashSet::new(), forwarded_for })
}

impl Client {
    async fn run(&mut self) -> Result<(), End> {
        let idle = self.proxy.config.client_idle_timeout;
        loop {
            let read = tokio::time::timeout(idle, self.conn.read_message(self.proxy.config.request_limits)).await;
            let bytes = match read.map_err(|_| End::Idle(idle))? {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ok(()),
                Err(ConnError::BadMessage { name, seqid, error }) => {
                    // The stream position is lost: say why, then close.
                    let text = format!("hs2-proxy: refused {name} request: {error}");
                    let _ = self.conn.write_message(&reply::application_exception(&name, seqid, 7, &text)).await;
                    return Err(End::Refused(text));
                }
                Err(e) => return Err(e.into()),
            };
            let req = Request::parse(bytes, self.proxy.config.request_limits).map_err(ConnError::from)?;
            self.handle(req).await?;
        }
    }

    async fn handle(&mut self, req: Request) -> Result<(), End> {
        let route = match self.proxy.routes.route(&req, self.user.as_deref()) {
            Route::Reject(unknown @ (Reject::UnknownSession(_) | Reject::UnknownOperation(_))) => {
                let found = recover(&self.proxy, &req, &self.creds, self.user.as_deref()).await;
                if let Some(Route::Pinned { session: Some(s), .. }) = &found {
                    // Learning the session attached this connection already: do not count it twice.
                    if self.used.insert(*s) {
                        self.proxy.routes.note_client(s, self.peer);
                    }
                }
                found.unwrap_or(Route::Reject(unknown))
            }
            route => route,
        };
        match route {
            Route::NewSession | Route::Anywhere => self.open_anywhere(req).await,
            Route::Pinned { backend, session } => {
                if !backend.serving() {
                    // Failover is under way: answer as the server would for a session it lost.
                    self.proxy.metrics.rpc_error(method_label(&req), None, ErrorKind::Unroutable);
                    let g = session.or(req.operation.map(|o| o.guid)).unwrap_or(Guid([0; 16]));
                    return self.reply_error(&req, &reply::invalid_session_text(&g)).await;
                }
                if let Some(s) = session {
                    if self.used.insert(s) {
                        self.proxy.routes.attach(&s);
                        self.proxy.routes.note_client(&s, self.peer);
                    }
                    self.proxy.routes.touch(&s, None);
                }
                self.forward(&backend, &req, session).await.map(|_| ())
            }
            Route::Reject(reject) => {
                self.proxy.metrics.rpc_error(method_label(&req), None, ErrorKind::Unroutable);
                if let Reject::WrongUser { session, owner, caller } = &reject {
                    tracing::warn!(client = %self.peer, session = %session, owner = ?owner, caller = ?caller,
                        method = req.name(), "session used by another user: refused");
                }
                self.reply_error(&req, &reject.client_text()).await
            }
        }
    }

    /// OpenSession (or a call with no handle): the least-loaded backend that accepts a connection.
    async fn open_anywhere(&mut self, req: Request) -> Result<(), End> {
        let candidates = self.proxy.backends.preference(self.proxy.next_rotor());
        if candidates.is_empty() {
            self.proxy.metrics.rpc_error(method_label(&req), None, ErrorKind::NoBackend);
            return self.reply_error(&req, "hs2-proxy: no backend is available for a new session").await;
        }
        let mut last_error = String::new();
        for backend in candidates {
            match self.forward(&backend, &req, None).await? {
                Forwarded::Done => return Ok(()),
                // Nothing was written: the next backend may take it.
                Forwarded::NotSent(e) if e.is_connect_failure() => last_error = e.to_string(),
                Forwarded::NotSent(e) => return self.reply_error(&req, &format!("hs2-proxy: {e}")).await,
            }
        }
        self.reply_error(&req, &format!("hs2-proxy: no backend could be reached ({last_error})")).await
    }

    /// Sends `req` to `backend` and relays the reply.
    async fn forward(
        &mut self,
        backend: &Arc<Backend>,
        req: &Request,
        session: Option<Guid>,
    ) -> Result<Forwarded, End> {
        let started = Instant::now();
        let method = method_label(req);
        let checkout = backend.pool.checkout(&self.creds).await;
        if checkout.is_err() {
            self.proxy.metrics.rpc_error(method, Some(&backend.addr), ErrorKind::NoConnection);
        }
        let mut up = match checkout {
            Ok(up) => up,
            Err(e) if e.is_connect_failure() && req.name() == "OpenSession" => {
                self.proxy.apply_evidence(backend, Evidence::Unreachable(e.to_string()));
                return Ok(Forwarded::NotSent(e));
            }
            Err(e) => {
                if e.is_connect_failure() {
                    self.proxy.apply_evidence(backend, Evidence::Unreachable(e.to_string()));
                }
                tracing::warn!(backend = %backend.addr, method = req.name(), error = %e, "no upstream connection");
                self.reply_error(req, &format!("hs2-proxy: {e}")).await?;
                return Ok(Forwarded::Done);
            }
        };
        up.set_forwarded_for(&self.forwarded_for);
        tracing::debug!(client = %self.peer, method = req.name(), backend = %backend.addr,
            session = ?session, conn = up.id, "forwarding");
        backend.inflight.fetch_add(1, Ordering::Relaxed);
        let outcome = self.exchange(backend, &mut up.conn, req).await;
        backend.inflight.fetch_sub(1, Ordering::Relaxed);
        let metrics = &self.proxy.metrics;
        let replied = outcome.as_ref().map_or(0, |s| s.bytes);
        metrics.rpc(method, &backend.addr, started.elapsed(), req.bytes.len() as u64, replied);
        match &outcome {
            Ok(sum) if sum.is_exception || sum.status_code.is_some_and(|c| c >= status::ERROR) => {
                metrics.rpc_error(method, Some(&backend.addr), ErrorKind::Status)
            }
            Ok(_) => {}
            Err(_) => metrics.rpc_error(method, Some(&backend.addr), ErrorKind::Broken),
        }
        match outcome {
            Ok(summary) => {
                let conn_id = up.id;
                backend.pool.checkin(up);
                self.learn(req, &summary, backend, conn_id, session);
                Ok(Forwarded::Done)
            }
            Err(Failure { error, reached_client }) => {
                backend.pool.discard(up);
                // One broken exchange is not proof; it counts, and the probe looks at once.
                self.proxy.apply_evidence(backend, Evidence::Failed(error.clone()));
                backend.probe_now.notify_one();
                tracing::warn!(backend = %backend.addr, client = %self.peer, method = req.name(), error = %error,
                    "call failed");
                if reached_client {
                    return Err(End::Refused(format!("reply from {} broke midway: {error}", backend.addr)));
                }
                let text = format!("hs2-proxy: backend {} failed during {}: {error}", backend.addr, req.name());
                self.reply_error(req, &text).await?;
                Ok(Forwarded::Done)
            }
        }
    }

    /// Writes the request upstream and relays the reply; never resends.
    async fn exchange(
        &mut self,
        backend: &Backend,
        up: &mut ThriftConn,
        req: &Request,
    ) -> Result<ReplySummary, Failure> {
        let unsent = |error: String| Failure { error, reached_client: false };
        up.write_message(&req.bytes).await.map_err(|e| unsent(e.to_string()))?;
        let mut scanner = reply_scanner(req, self.proxy.config.reply_limits);
        let timeout = self.proxy.config.backend_reply_timeout;
        match tokio::time::timeout(timeout, up.relay_reply(&mut self.conn, &mut scanner)).await {
            Ok(Ok(_)) => Ok(reply_summary(&scanner)),
            Ok(Err(RelayError { error, forwarded })) => {
                Err(Failure { error: error.to_string(), reached_client: forwarded > 0 })
            }
            Err(_) => Err(Failure {
                error: format!("no reply from {} within {timeout:?}", backend.addr),
                reached_client: scanner.consumed() > 0,
            }),
        }
    }

    /// Updates the tables from a reply.
    fn learn(
        &mut self,
        req: &Request,
        sum: &ReplySummary,
        backend: &Arc<Backend>,
        conn_id: u64,
        session: Option<Guid>,
    ) {
        let routes = &self.proxy.routes;
        if !sum.succeeded() {
            if let Some(text) = sum.error.as_deref().filter(|t| t.contains(probe::SHUTTING_DOWN)) {
                self.proxy.apply_evidence(backend, Evidence::ShuttingDown(text.to_string()));
            }
            if let Some(text) = &sum.error {
                if routes.forget_on_error(req, text) {
                    tracing::info!(backend = %backend.addr, method = req.name(), error = %text,
                        "backend no longer has the handle: forgotten");
                }
            }
            return;
        }
        match req.name() {
            "OpenSession" => {
                if let Some(s) = sum.new_session {
                    routes.learn_session(s, backend.clone(), self.user.clone(), conn_id);
                    routes.note_client(&s.guid, self.peer);
                    self.proxy.metrics.session_opened(&backend.addr);
                    self.used.insert(s.guid);
                    tracing::info!(session = %s.guid, backend = %backend.addr, user = ?self.user, client = %self.peer,
                        "session opened");
                }
            }
            "CloseSession" => {
                if let Some(g) = session {
                    routes.forget_session(&g);
                    self.used.remove(&g);
                    tracing::info!(session = %g, backend = %backend.addr, user = ?self.user, client = %self.peer,
                        "session closed");
                }
            }
            "CloseOperation" | "CloseImpalaOperation" => {
                if let Some(op) = req.operation {
                    routes.forget_operation(&op.guid);
                }
            }
            _ => {}
        }
        if let (Some(op), Some(s)) = (sum.new_operation, session) {
            routes.learn_operation_handle(op, s, req.statement.as_deref());
        }
    }

    async fn reply_error(&mut self, req: &Request, text: &str) -> Result<(), End> {
        let bytes = reply::error_reply(req.name(), req.header.seqid, text);
        self.conn.write_message(&bytes).await?;
        Ok(())
    }
}

/// A handle the proxy does not know: ask the backends who holds it (after a restart).
/// (A free function: the client task's `&self` is not `Sync` and must not be held across this await.)
async fn recover(proxy: &Proxy, req: &Request, creds: &Credentials, user: Option<&str>) -> Option<Route> {
    if let Some(s) = req.session {
        let backend = recover::session_owner(proxy, &s, creds, user).await?;
        return Some(Route::Pinned { backend, session: Some(s.guid) });
    }
    let op = req.operation?;
    let backend = recover::operation_owner(proxy, &op, creds).await?;
    Some(Route::Pinned { backend, session: None })
}

enum Forwarded {
    Done,
    /// Nothing reached the backend (no connection could be made).
    NotSent(PoolError),
}

/// A failed exchange: always the backend's side (a client's failure surfaces on its own connection).
struct Failure {
    error: String,
    /// Part of the reply was already written to the client: the connection cannot be saved.
    reached_client: bool,
}

/// Who makes an HTTP call: Basic auth or the proxy's cookie say it per request, not per connection.
pub(crate) struct HttpCaller {
    pub user: Option<String>,
    pub creds: Credentials,
    pub forwarded_for: String,
}

/// HS2 calls that arrive as HTTP request bodies (`http::server`): one `Client` per HTTP connection, each
/// call routed, forwarded and relayed by the same code as a binary call. Only where the reply goes and
/// who the caller is change per call.
impl Client {
    pub(crate) fn for_http(proxy: Arc<Proxy>, peer: SocketAddr) -> Client {
        let creds = proxy.service_credentials();
        let conn = no_reply_conn();
        Client { proxy, conn, peer, user: None, creds, used: HashSet::new(), forwarded_for: peer.ip().to_string() }
    }

    /// Serves one call, its reply written to `reply` (the response body), which is dropped at the end so
    /// that the body ends. `Err` when the response cannot be completed and must be aborted.
    pub(crate) async fn call_http(
        &mut self,
        req: Request,
        reply: ThriftConn,
        caller: HttpCaller,
    ) -> Result<(), String> {
        self.conn = reply;
        self.user = caller.user;
        self.creds = caller.creds;
        self.forwarded_for = caller.forwarded_for;
        let outcome = self.handle(req).await.map_err(|e| e.to_string());
        self.conn = no_reply_conn();
        outcome
    }

    /// Detaches the sessions this connection used: their clean-up clock starts.
    pub(crate) fn close(&mut self) {
        let now = Instant::now();
        for s in &self.used {
            self.proxy.routes.detach(s, now);
            self.proxy.routes.drop_client(s, self.peer);
        }
        self.used.clear();
    }
}

/// Stands in for an HTTP connection's reply stream between calls.
fn no_reply_conn() -> ThriftConn {
    ThriftConn::new(Box::new(tokio::io::empty()), Framing::Unframed, 0)
}
