//! The mock's web port, shaped like impalad's (port 25000): `/jsonmetrics` (a flat object of metric names:
//! the open-session and registered-query counts and the admission controller's per-pool figures the proxy
//! balances on), `/sessions?json` (every session
//! with its last access, which the proxy's clean-up reads before it closes a session upstream) and
//! `/healthz`. Served with hyper, one task per connection, until the mock stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Inner;
use crate::backend::impalad_metrics::{
    ADMITTED_RUNNING_PREFIX, OPEN_SESSIONS_METRIC, QUERIES_REGISTERED_METRIC, QUEUED_PREFIX,
};

/// impalad's count of client connections to its HS2 port.
const CONNECTIONS_METRIC: &str = "impala.thrift-server.hiveserver2-frontend.connections-in-use";

/// Serves until `stop` turns true.
pub(super) async fn serve(listener: TcpListener, inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let inner = inner.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&inner, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(inner: &Inner, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.uri().path(), req.uri().query()) {
        ("/jsonmetrics", _) => (StatusCode::OK, metrics(inner).to_string()),
        ("/sessions", Some(q)) if q.split('&').any(|p| p == "json") => (StatusCode::OK, sessions(inner).to_string()),
        ("/healthz", _) => (StatusCode::OK, "OK".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// impalad's `/jsonmetrics`: the metrics by name, every group flattened into one object.
fn metrics(inner: &Inner) -> Value {
    let (sessions, queries) = {
        let st = inner.state();
        (st.sessions.len(), st.ops.len())
    };
    let mut page = json!({
        OPEN_SESSIONS_METRIC: sessions,
        QUERIES_REGISTERED_METRIC: queries,
        CONNECTIONS_METRIC: inner.connections.load(Ordering::Relaxed),
    });
    if let Some(map) = page.as_object_mut() {
        for (pool, (running, queued)) in super::lock(&inner.admission).iter() {
            map.insert(format!("{ADMITTED_RUNNING_PREFIX}{pool}"), json!(running));
            map.insert(format!("{QUEUED_PREFIX}{pool}"), json!(queued));
            map.insert(format!("admission-controller.agg-num-running.{pool}"), json!(running));
            map.insert(format!("admission-controller.agg-num-queued.{pool}"), json!(queued));
        }
    }
    page
}

/// impalad's `/sessions?json`: one object per session, ids as `hi:lo`, times in ms since the epoch
/// (`*_sort`), as impalad's `SessionsHandler` writes them. Calls run under the state lock here, so no
/// session is ever in use (`ref_count` 0) while the page is built.
fn sessions(inner: &Inner) -> Value {
    let st = inner.state();
    let list: Vec<Value> = st
        .sessions
        .iter()
        .map(|(guid, s)| {
            let inflight = st.ops.values().filter(|op| op.session == *guid).count();
            let last = s.last_accessed.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            json!({
                "type": "HIVESERVER2",
                "session_id": guid.impala_id(),
                "user": s.user,
                "delegated_user": s.delegated.clone().unwrap_or_default(),
                "inflight_queries": inflight,
                "last_accessed_sort": last,
                "expired": false,
                "closed": false,
                "ref_count": 0,
            })
        })
        .collect();
    json!({ "sessions": list, "num_sessions": st.sessions.len() })
}
