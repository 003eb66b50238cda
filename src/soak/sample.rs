//! What the soak records over time: the proxy process seen from /proc (memory, descriptors, threads,
//! TCP connections on each side), its own view through the admin API (connections, sessions,
//! operations, upstream pools, buffered request bytes), and what the mocks hold.

use std::net::SocketAddr;
use std::time::Instant;

use super::admin;
use super::cluster::Cluster;
use super::verdict::Tolerance;
use crate::bench::procfs;
use crate::metrics::sample as metric;

/// Every recorded series: name, what it is, and how much it may grow over the judged window (see
/// `verdict::growth`). The tolerances are a floor for noise at this load plus a share of the level.
pub const SERIES: &[(&str, &str, Tolerance)] = &[
    ("rss_mib", "resident memory (MiB, /proc)", Tolerance { absolute: 16.0, relative: 0.25 }),
    ("fds", "open descriptors (/proc)", Tolerance { absolute: 32.0, relative: 0.25 }),
    ("threads", "threads (/proc)", Tolerance { absolute: 4.0, relative: 0.0 }),
    ("client_tcp", "established client connections (/proc)", Tolerance { absolute: 24.0, relative: 0.25 }),
    ("upstream_tcp", "established upstream connections (/proc)", Tolerance { absolute: 24.0, relative: 0.25 }),
    ("client_connections", "client connections (admin /api/status)", Tolerance { absolute: 24.0, relative: 0.25 }),
    ("sessions", "session table (admin /api/status)", Tolerance { absolute: 32.0, relative: 0.25 }),
    ("operations", "open operations (admin /api/backends)", Tolerance { absolute: 32.0, relative: 0.25 }),
    ("pool_open", "upstream pool connections, busy + idle (admin)", Tolerance { absolute: 24.0, relative: 0.25 }),
    ("pool_pinned", "pinned upstream connections (admin)", Tolerance { absolute: 24.0, relative: 0.25 }),
    ("buffered_bytes", "buffered request bytes (/metrics)", Tolerance { absolute: 1_048_576.0, relative: 0.0 }),
    ("mock_sessions", "sessions open on the mocks", Tolerance { absolute: 32.0, relative: 0.25 }),
    ("mock_operations", "operations open on the mocks", Tolerance { absolute: 32.0, relative: 0.25 }),
];

/// One reading; `None` where a source did not answer (the proxy restarting).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    pub values: Vec<Option<f64>>,
}

impl Sample {
    pub fn get(&self, series: &str) -> Option<f64> {
        let i = SERIES.iter().position(|(n, _, _)| *n == series)?;
        self.values.get(i).copied().flatten()
    }
}

/// Where to look.
pub struct Probe<'a> {
    pub pid: Option<u32>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub cluster: &'a Cluster,
    pub since: Instant,
}

impl Probe<'_> {
    pub async fn take(&self) -> Sample {
        let mut v: Vec<(&str, Option<f64>)> = Vec::new();
        let pid = self.pid;
        let ports: Vec<u16> = self.cluster.addrs().iter().map(SocketAddr::port).collect();
        let listen = self.listen.port();
        v.push(("rss_mib", pid.and_then(procfs::rss_kib).map(|k| k as f64 / 1024.0)));
        v.push(("fds", pid.and_then(procfs::fd_count).map(|n| n as f64)));
        v.push(("threads", pid.and_then(procfs::threads).map(|n| n as f64)));
        v.push(("client_tcp", pid.map(|p| procfs::established(p, |local, _| local == listen) as f64)));
        v.push(("upstream_tcp", pid.map(|p| procfs::established(p, |_, remote| ports.contains(&remote)) as f64)));
        let status = admin::status(self.admin).await.ok();
        v.push(("client_connections", status.as_ref().map(|s| s.client_connections as f64)));
        v.push(("sessions", status.as_ref().map(|s| s.sessions as f64)));
        let backends = admin::backends(self.admin).await.ok();
        let sum = |f: &dyn Fn(&crate::admin::api::BackendJson) -> f64| {
            backends.as_ref().map(|b| b.backends.iter().map(f).sum())
        };
        v.push(("operations", sum(&|b| b.operations as f64)));
        v.push(("pool_open", sum(&|b| (b.upstream.busy + b.upstream.idle) as f64)));
        v.push(("pool_pinned", sum(&|b| b.upstream.pinned as f64)));
        let text = admin::metrics(self.admin).await.ok();
        v.push(("buffered_bytes", text.as_deref().and_then(|t| metric(t, "hs2_proxy_buffered_request_bytes"))));
        let (sessions, operations, _) = self.cluster.totals();
        v.push(("mock_sessions", Some(sessions as f64)));
        v.push(("mock_operations", Some(operations as f64)));
        let values =
            SERIES.iter().map(|(name, _, _)| v.iter().find(|(n, _)| n == name).and_then(|(_, x)| *x)).collect();
        Sample { t: self.since.elapsed().as_secs_f64(), values }
    }
}
