//! The operator's view: an HTTP listener of its own (loopback by default) with the JSON API, the status
//! page, Prometheus metrics and the proxy's own health checks.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | status page (history charts, backends, sessions per impalad), refreshed by `fetch()` polling `/fragment` |
//! | `GET /api/history` | the charts' samples of the last 15 minutes ([`history`]) |
//! | `GET /api/status` | the instance: version, listeners, uptime, connections, ZooKeeper registration |
//! | `GET /api/backends` | every backend: state, weight, load (every input: [`load`]), upstream pool, last probe |
//! | `POST /api/backends/{addr}/drain`, `/undrain`, `/maintenance` | operator state of a backend |
//! | `GET /api/sessions?backend=&user=` | every session (never its secret) |
//! | `POST /api/sessions/{id}/close` | CloseSession upstream, then forget it |
//! | `POST /api/operations/{id}/cancel` | CancelOperation upstream |
//! | `GET /metrics` | Prometheus text (`crate::metrics` holds every name) |
//! | `GET /healthz`, `GET /readyz` | the proxy is alive / takes new sessions |
//!
//! With `admin.token_file` set, everything but `/healthz`, `/readyz` and the page's empty shell needs
//! `Authorization: Bearer <token>`, compared in constant time; the token is never logged.
//! Handlers only read the proxy's state and call its methods; upstream calls live in [`actions`].

pub mod actions;
pub mod api;
pub mod charts;
pub mod history;
pub mod load;
pub mod page;
pub mod route;

pub use crate::timefmt::rfc3339;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::control::stopped;
use crate::proxy::Proxy;

/// Request line and headers of an admin request, at most.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves the admin API on `listener` until the proxy stops: at most `admin.max_connections` at once
/// (more are closed at once), and each must send its request head within `admin.header_read_timeout`
/// (an idle keep-alive connection closes after it too), so half-open connections cannot pile up.
pub fn serve(listener: TcpListener, proxy: Proxy) {
    let history = history::History::new(proxy.config().admin.history_interval);
    history::spawn(proxy.clone(), history.clone());
    let app = router(proxy.clone(), history);
    let permits = Arc::new(Semaphore::new(proxy.config().admin.max_connections));
    tokio::spawn(async move {
        let mut stop = proxy.stop_signal();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut stop) => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(client = %peer, limit = proxy.config().admin.max_connections,
                    "admin connection limit reached: closing the new connection");
                continue;
            };
            let app = app.clone();
            let timeout = proxy.config().admin.header_read_timeout;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                let mut builder = http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(timeout).max_buf_size(MAX_HEAD_BYTES);
                if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(client = %peer, error = %e, "admin connection ended");
                }
                drop(permit);
            });
        }
    });
}

pub fn router(proxy: Proxy, history: history::History) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/fragment", get(page::fragment))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(api::status))
        .route("/api/history", get(api::history))
        .route("/api/backends", get(api::backends))
        .route("/api/backends/{addr}/{action}", post(api::backend_action))
        .route("/api/sessions", get(api::sessions))
        .route("/api/route", get(route::route))
        .route("/api/sessions/{id}/close", post(api::close_session))
        .route("/api/operations/{id}/cancel", post(api::cancel_operation))
        .fallback(|| async { api::error(StatusCode::NOT_FOUND, "no such route; see GET /api/backends, /api/sessions") })
        .layer(Extension(history))
        .with_state(proxy)
}

/// Proof that a request carried the admin token (or that none is configured).
pub struct Authorized;

impl FromRequestParts<Proxy> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, proxy: &Proxy) -> Result<Authorized, Response> {
        if authorized(proxy, &parts.headers) {
            return Ok(Authorized);
        }
        let mut resp = api::error(StatusCode::UNAUTHORIZED, "this route needs Authorization: Bearer <admin token>");
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hs2-proxy\""));
        Err(resp)
    }
}

/// True when no token is configured, or the request's bearer token equals it.
pub fn authorized(proxy: &Proxy, headers: &HeaderMap) -> bool {
    let Some(token) = &proxy.config().admin.token else { return true };
    let given = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), token.0.as_bytes()))
}

/// Compares without stopping at the first difference, so that timing does not reveal how much of a
/// guessed token is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Liveness: the process answers.
async fn healthz() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// Readiness: the client listener runs and at least one backend takes new sessions.
async fn readyz(axum::extract::State(proxy): axum::extract::State<Proxy>) -> Response {
    if proxy.is_stopping() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down\n");
    }
    if !proxy.backends().iter().any(|b| proxy.is_eligible(b)) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "not ready: no backend takes new sessions\n");
    }
    plain(StatusCode::OK, "ready\n")
}

async fn metrics_text(_: Authorized, axum::extract::State(proxy): axum::extract::State<Proxy>) -> Response {
    match proxy.metrics().encode(&proxy.figures()) {
        Ok(text) => {
            let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            ([(CONTENT_TYPE, ct), (CACHE_CONTROL, "no-store")], text).into_response()
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8"), (CACHE_CONTROL, "no-store")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
