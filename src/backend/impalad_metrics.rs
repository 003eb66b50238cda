//! Scrapes an impalad's own figures from its web port (`/jsonmetrics`): the count of open HS2 sessions,
//! so that sessions opened around the proxy count in balancing. Optional per backend, off by default.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::config::HttpUrl;
use crate::http::client::{fetch, Get};

/// The metric impalad reports for open HS2 sessions.
pub const OPEN_SESSIONS_METRIC: &str = "impala-server.num-open-hiveserver2-sessions";
/// A metrics page larger than this is not read.
const MAX_BODY_BYTES: usize = 8 << 20;

/// Fetches the open-session count from `url`.
pub async fn open_sessions(url: &HttpUrl, timeout: Duration) -> Result<u64, String> {
    let get = Get {
        authority: &url.authority,
        method: Method::GET,
        path: &url.path,
        bearer: None,
        timeout,
        max_body: MAX_BODY_BYTES,
    };
    let response = fetch(&get).await?;
    if response.status != StatusCode::OK {
        return Err(format!("{url} answered {}", response.status));
    }
    let page: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    open_sessions_in(&page).ok_or_else(|| format!("{url}: no {OPEN_SESSIONS_METRIC} in the page"))
}

/// The count in a `/jsonmetrics` page: a flat object of metric name to value.
pub fn open_sessions_in(page: &serde_json::Value) -> Option<u64> {
    page.get(OPEN_SESSIONS_METRIC)?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_from_the_json_page() {
        let page = serde_json::json!({"a": 1, OPEN_SESSIONS_METRIC: 17, "b": "x"});
        assert_eq!(open_sessions_in(&page), Some(17));
        assert_eq!(open_sessions_in(&serde_json::json!({})), None);
        assert_eq!(open_sessions_in(&serde_json::json!({OPEN_SESSIONS_METRIC: "many"})), None);
    }
}
