//! Several proxy instances in one test: what each one's `GET /metrics` says about its handle lookups and
//! calls, read through its admin port like an operator would.

use std::time::Duration;

use hs2_proxy::http::client::{fetch, Get};
use hs2_proxy::metrics::sample;
use hs2_proxy::server::ProxyHandle;

/// One instance's lookups of unknown handles (`hs2_proxy_handle_lookups_total` by result) and its calls
/// (`hs2_proxy_rpcs_total`, every method and backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    pub found: u64,
    pub missed: u64,
    pub ambiguous: u64,
    pub timed_out: u64,
    pub calls: u64,
}

impl Lookups {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Lookups) -> Lookups {
        Lookups {
            found: self.found - before.found,
            missed: self.missed - before.missed,
            ambiguous: self.ambiguous - before.ambiguous,
            timed_out: self.timed_out - before.timed_out,
            calls: self.calls - before.calls,
        }
    }
}

/// The instance's `/metrics` text, through its admin listener.
pub async fn metrics_text(p: &ProxyHandle) -> String {
    let admin = p.admin_addr.expect("the test proxy has an admin listener").to_string();
    let get = Get {
        authority: &admin,
        method: http::Method::GET,
        path: "/metrics",
        bearer: None,
        timeout: Duration::from_secs(10),
        max_body: 16 << 20,
    };
    let r = fetch(&get).await.expect("GET /metrics");
    assert!(r.status.is_success(), "GET /metrics: {}", r.status);
    String::from_utf8(r.body.to_vec()).expect("UTF-8 metrics")
}

pub async fn lookups(p: &ProxyHandle) -> Lookups {
    let text = metrics_text(p).await;
    let of = |result: &str| {
        sample(&text, &format!("hs2_proxy_handle_lookups_total{{result=\"{result}\"}}")).unwrap_or(0.0) as u64
    };
    let calls = text
        .lines()
        .filter(|l| l.starts_with("hs2_proxy_rpcs_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64;
    Lookups { found: of("found"), missed: of("missed"), ambiguous: of("ambiguous"), timed_out: of("timed_out"), calls }
}
