//! Reads an impalad's own figures from its web port, for a backend with `metrics_url`:
//! - `/jsonmetrics` (the URL as configured): open HS2 sessions, registered queries and the admission
//!   controller's figures for this coordinator (queries admitted and running, queries queued; summed over
//!   the resource pools), so that balancing sees the load that every proxy instance, and every client
//!   going around the proxy, put on it (`super::load` combines them);
//! - `/sessions?json` (same host and port): each session's last access, by any connection through any
//!   instance, so that clean-up never closes a session another instance's clients are using.
//!
//! Optional per backend, off by default. Pages are parsed here (`*_in`), fetched with the one HTTP client.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::config::HttpUrl;
use crate::hs2::handle::Guid;
use crate::http::client::{fetch, Get};

/// The metric impalad reports for open HS2 sessions.
pub const OPEN_SESSIONS_METRIC: &str = "impala-server.num-open-hiveserver2-sessions";
/// Queries registered on the coordinator: running, or finished and not yet closed.
pub const QUERIES_REGISTERED_METRIC: &str = "impala-server.num-queries-registered";
/// Per resource pool, queries this coordinator admitted that still run (impalad's admission controller:
/// `admission-controller.local-num-admitted-running.<pool>`, raised at admission, lowered when the query
/// releases its resources, i.e. when it finishes executing, before the client closes it).
pub const ADMITTED_RUNNING_PREFIX: &str = "admission-controller.local-num-admitted-running.";
/// Per resource pool, queries waiting in this coordinator's admission queue
/// (`admission-controller.local-num-queued.<pool>`).
pub const QUEUED_PREFIX: &str = "admission-controller.local-num-queued.";
/// impalad's sessions page, relative to the web port.
pub const SESSIONS_PATH: &str = "/sessions?json";
/// A metrics page larger than this is not read.
const MAX_METRICS_BYTES: usize = 8 << 20;
/// The sessions page grows with the sessions (~400 bytes each): room for ~80,000.
const MAX_SESSIONS_BYTES: usize = 32 << 20;

/// What an impalad says it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImpaladLoad {
    pub sessions: u64,
    /// `None` when the page lacks the metric (older impalads).
    pub queries: Option<u64>,
    /// Admitted and running, summed over pools; `None` when the page has no pool's figure (no query has
    /// been admitted since the impalad started, or admission runs elsewhere: `--admission_service_host`).
    pub admitted_running: Option<u64>,
    /// Queued for admission, summed over pools; `None` as for `admitted_running`.
    pub queued: Option<u64>,
}

/// What an impalad says of one of its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionActivity {
    /// The last call on the session, from any connection: ms since the Unix epoch, impalad's clock.
    pub last_accessed_ms: u64,
    /// A call is using it right now (`ref_count` > 0).
    pub in_use: bool,
    /// impalad expired it (`idle_session_timeout`): every call on it fails; closing it only frees it.
    pub expired: bool,
    /// Closed already: nothing left to close.
    pub closed: bool,
}

/// Fetches the load figures from `url`.
pub async fn load(url: &HttpUrl, timeout: Duration) -> Result<ImpaladLoad, String> {
    let page = json_page(&url.authority, &url.path, timeout, MAX_METRICS_BYTES).await?;
    load_in(&page).ok_or_else(|| format!("{url}: no {OPEN_SESSIONS_METRIC} in the page"))
}

/// The figures in a `/jsonmetrics` page: a flat object of metric name to value (impalad's
/// `MetricGroup::CMCompatibleCallback` flattens every metric group, `admission-controller` included, into
/// one object; gauges are JSON integers).
pub fn load_in(page: &serde_json::Value) -> Option<ImpaladLoad> {
    let sessions = page.get(OPEN_SESSIONS_METRIC)?.as_u64()?;
    Some(ImpaladLoad {
        sessions,
        queries: page.get(QUERIES_REGISTERED_METRIC).and_then(|v| v.as_u64()),
        admitted_running: pool_sum(page, ADMITTED_RUNNING_PREFIX),
        queued: pool_sum(page, QUEUED_PREFIX),
    })
}

/// The sum of every `<prefix><pool>` metric; `None` when there is none. A value that is not a
/// non-negative integer counts as 0 (impalad never reports one; a bad page must not hide the others).
fn pool_sum(page: &serde_json::Value, prefix: &str) -> Option<u64> {
    let pools = page.as_object()?.iter().filter(|(k, _)| k.len() > prefix.len() && k.starts_with(prefix));
    pools.map(|(_, v)| v.as_u64().unwrap_or(0)).reduce(u64::saturating_add)
}

/// Fetches every session's activity from the web port of `url`.
pub async fn sessions(url: &HttpUrl, timeout: Duration) -> Result<HashMap<Guid, SessionActivity>, String> {
    let page = json_page(&url.authority, SESSIONS_PATH, timeout, MAX_SESSIONS_BYTES).await?;
    sessions_in(&page).ok_or_else(|| format!("http://{}{SESSIONS_PATH}: no session list in the page", url.authority))
}

/// The sessions in a `/sessions?json` page: `{"sessions": [{"session_id": "hi:lo", "last_accessed_sort":
/// ms, "ref_count": n, "expired": b, "closed": b, ...}]}`. Entries without a readable id or time are left
/// out (never treated as idle).
pub fn sessions_in(page: &serde_json::Value) -> Option<HashMap<Guid, SessionActivity>> {
    let list = page.get("sessions")?.as_array()?;
    let flag = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let read = |e: &serde_json::Value| {
        let guid = Guid::parse_impala_id(e.get("session_id")?.as_str()?)?;
        let activity = SessionActivity {
            last_accessed_ms: e.get("last_accessed_sort")?.as_u64()?,
            in_use: e.get("ref_count").and_then(|v| v.as_i64()).unwrap_or(0) > 0,
            expired: flag(e, "expired"),
            closed: flag(e, "closed"),
        };
        Some((guid, activity))
    };
    Some(list.iter().filter_map(read).collect())
}

async fn json_page(
    authority: &str,
    path: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<serde_json::Value, String> {
    let get = Get { authority, method: Method::GET, path, bearer: None, timeout, max_body };
    let response = fetch(&get).await?;
    if response.status != StatusCode::OK {
        return Err(format!("http://{authority}{path} answered {}", response.status));
    }
    serde_json::from_slice(&response.body).map_err(|e| format!("http://{authority}{path}: not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_is_read_from_the_json_page() {
        let page = serde_json::json!({"a": 1, OPEN_SESSIONS_METRIC: 17, QUERIES_REGISTERED_METRIC: 3, "b": "x"});
        let plain = ImpaladLoad { sessions: 17, queries: Some(3), admitted_running: None, queued: None };
        assert_eq!(load_in(&page), Some(plain));
        let old = serde_json::json!({OPEN_SESSIONS_METRIC: 17});
        assert_eq!(load_in(&old), Some(ImpaladLoad { queries: None, ..plain }));
        assert_eq!(load_in(&serde_json::json!({})), None);
        assert_eq!(load_in(&serde_json::json!({OPEN_SESSIONS_METRIC: "many"})), None);
    }

    #[test]
    fn admission_figures_are_summed_over_pools() {
        // As impalad 4.x serves them: the pool is the key's suffix (`root.etl`, `default-pool`).
        let page = serde_json::json!({
            OPEN_SESSIONS_METRIC: 4,
            "admission-controller.local-num-admitted-running.root.etl": 3,
            "admission-controller.local-num-admitted-running.default-pool": 2,
            "admission-controller.local-num-queued.root.etl": 7,
            "admission-controller.local-num-queued.default-pool": 0,
            "admission-controller.agg-num-queued.root.etl": 50,
            "admission-controller.local-num-queued.": 99,
            "admission-controller.local-num-admitted-running.bad": "x",
        });
        let found = load_in(&page).unwrap();
        assert_eq!((found.admitted_running, found.queued), (Some(5), Some(7)), "cluster-wide agg-* is not ours");
        let none = load_in(&serde_json::json!({OPEN_SESSIONS_METRIC: 4})).unwrap();
        assert_eq!((none.admitted_running, none.queued), (None, None));
    }

    #[test]
    fn sessions_are_read_by_their_impala_ids() {
        let g = Guid([7; 16]);
        let page = serde_json::json!({"sessions": [
            {"session_id": g.impala_id(), "last_accessed_sort": 1_700_000_000_123u64, "ref_count": 1,
             "expired": false, "closed": false, "user": "hue"},
            {"session_id": "not an id", "last_accessed_sort": 5},
            {"session_id": Guid([8; 16]).impala_id(), "expired": true},
            {"session_id": Guid([9; 16]).impala_id(), "last_accessed_sort": 9, "closed": true},
        ]});
        let found = sessions_in(&page).unwrap();
        assert_eq!(found.len(), 2, "unreadable entries are left out: {found:?}");
        let expected =
            SessionActivity { last_accessed_ms: 1_700_000_000_123, in_use: true, expired: false, closed: false };
        assert_eq!(found[&g], expected);
        assert!(found[&Guid([9; 16])].closed);
        assert_eq!(sessions_in(&serde_json::json!({"num_sessions": 0})), None);
    }
}
