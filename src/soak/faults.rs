//! The faults the soak injects while the load runs, one at a time: the schedule (pure) and carrying each
//! out and back, with the window during which client failures are expected.
//!
//! Kinds, rotated over the backends: a backend killed and restarted (it loses its sessions), drained and
//! undrained through the admin API, its impalad announcing shutdown and recovering, its connections
//! dropped (a network blip), removed from the configuration and put back (SIGHUP each time); and the
//! proxy itself stopped (SIGTERM) and started again once, early, so that the growth window sees one
//! process.

use std::time::{Duration, Instant};

use super::admin;
use super::cluster::Cluster;
use super::process::ProxyProcess;
use super::SoakError;

/// How long a fault lasts before it is undone.
pub const HOLD: Duration = Duration::from_secs(3);
/// After a fault is undone, client failures are still expected this long (health needs `rise` probes,
/// Hue needs a round to heal).
pub const SETTLE: Duration = Duration::from_secs(5);
/// How long a reload may take to show in the admin API.
const RELOAD_SHOWS_WITHIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill(usize),
    Drain(usize),
    ImpaladShutdown(usize),
    Blip(usize),
    Reload(usize),
    RestartProxy,
}

impl Fault {
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill(i) => format!("mock-{i} killed, restarted after {HOLD:?}"),
            Fault::Drain(i) => format!("mock-{i} drained (admin API), undrained after {HOLD:?}"),
            Fault::ImpaladShutdown(i) => format!("mock-{i} says \"Server is being shut down\" for {HOLD:?}"),
            Fault::Blip(i) => format!("mock-{i} drops every connection"),
            Fault::Reload(i) => format!("mock-{i} left the config (SIGHUP), back after {HOLD:?} (SIGHUP)"),
            Fault::RestartProxy => "the proxy stopped (SIGTERM) and started again".to_string(),
        }
    }
}

/// A fault and when it starts, from the start of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
}

/// One fault every `period` from 10% of `run` until 85% of it (the rest is quiet, for the final
/// checks); the proxy restart takes the slot nearest 15%. The others rotate over five kinds and the
/// `backends`, so that every kind meets every backend.
pub fn plan(run: Duration, period: Duration, backends: usize) -> Vec<Planned> {
    let kinds: [fn(usize) -> Fault; 5] =
        [Fault::Kill, Fault::Drain, Fault::Reload, Fault::ImpaladShutdown, Fault::Blip];
    let (first, last) = (run.mul_f64(0.10), run.mul_f64(0.85));
    let mut at = first;
    let mut out = Vec::new();
    while at + HOLD + SETTLE <= last && !period.is_zero() {
        out.push(at);
        at += period;
    }
    let restart = out.iter().enumerate().min_by_key(|(_, t)| t.abs_diff(run.mul_f64(0.15))).map(|(i, _)| i);
    let mut k = 0;
    out.into_iter()
        .enumerate()
        .map(|(i, at)| {
            let fault = if Some(i) == restart {
                Fault::RestartProxy
            } else {
                k += 1;
                kinds[(k - 1) % kinds.len()]((k - 1) % backends.max(1))
            };
            Planned { at, fault }
        })
        .collect()
}

/// When a fault began and when the failures it may cause should be over.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
}

impl Window {
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.from && t <= self.until
    }
}

/// Carries `fault` out, waits [`HOLD`], undoes it; returns its window.
pub async fn inject(fault: Fault, cluster: &Cluster, proxy: &mut ProxyProcess) -> Result<Window, SoakError> {
    let from = Instant::now();
    let addrs = cluster.addrs();
    let addr = |i: usize| addrs.get(i).map(|a| a.to_string()).unwrap_or_default();
    match fault {
        Fault::Kill(i) => {
            cluster.kill(i).await;
            tokio::time::sleep(HOLD).await;
            cluster.restart(i).await?;
        }
        Fault::Drain(i) => {
            admin::backend_action(proxy.admin(), &addr(i), "drain").await?;
            tokio::time::sleep(HOLD).await;
            admin::backend_action(proxy.admin(), &addr(i), "undrain").await?;
        }
        Fault::ImpaladShutdown(i) => {
            let mock = cluster.mock(i).ok_or_else(|| SoakError::Setup(format!("mock-{i} is not running")))?;
            mock.set_shutting_down(true);
            tokio::time::sleep(HOLD).await;
            mock.set_shutting_down(false);
        }
        Fault::Blip(i) => {
            if let Some(mock) = cluster.mock(i) {
                mock.drop_connections().await;
            }
        }
        Fault::Reload(i) => {
            let without: Vec<_> = addrs.iter().copied().filter(|a| a.to_string() != addr(i)).collect();
            reload(proxy, &without, &addr(i), false).await?;
            tokio::time::sleep(HOLD).await;
            reload(proxy, &addrs, &addr(i), true).await?;
        }
        Fault::RestartProxy => {
            proxy.stop().await?;
            proxy.start().await?;
        }
    }
    Ok(Window { from, until: Instant::now() + SETTLE })
}

/// Writes the backend list, sends SIGHUP, and waits until the admin API shows `addr` taking new
/// sessions (`present`) or leaving (removing, or already gone).
async fn reload(
    proxy: &ProxyProcess,
    backends: &[std::net::SocketAddr],
    addr: &str,
    present: bool,
) -> Result<(), SoakError> {
    proxy.write_config(backends)?;
    proxy.signal("HUP")?;
    let deadline = Instant::now() + RELOAD_SHOWS_WITHIN;
    loop {
        let listed = admin::backends(proxy.admin()).await?;
        let b = listed.backends.iter().find(|b| b.address == addr);
        let shows = match b {
            Some(b) if present => !b.removing && b.admin == "active",
            Some(b) => b.removing,
            None => !present,
        };
        if shows {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SoakError::Failed(format!(
                "SIGHUP: {addr} did not show as {} within {RELOAD_SHOWS_WITHIN:?}",
                if present { "back" } else { "leaving" }
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_proxy_restart_early_and_every_kind_on_every_backend() {
        let p = plan(Duration::from_secs(1800), Duration::from_secs(20), 3);
        let restarts: Vec<_> = p.iter().filter(|x| x.fault == Fault::RestartProxy).collect();
        assert_eq!(restarts.len(), 1);
        assert!(restarts[0].at < Duration::from_secs(600), "within the first third: {:?}", restarts[0].at);
        assert!(p.first().unwrap().at >= Duration::from_secs(180));
        assert!(p.last().unwrap().at + HOLD + SETTLE <= Duration::from_secs(1530), "the last 15% are quiet");
        for i in 0..3 {
            for kind in [Fault::Kill(i), Fault::Drain(i), Fault::Reload(i), Fault::ImpaladShutdown(i), Fault::Blip(i)] {
                assert!(p.iter().any(|x| x.fault == kind), "{kind:?} missing");
            }
        }
        assert!(p.windows(2).all(|w| w[1].at - w[0].at >= HOLD + SETTLE), "one at a time");
        let short = plan(Duration::from_secs(120), Duration::from_secs(9), 3);
        assert!(short.len() >= 8, "{short:?}");
        assert_eq!(short.iter().filter(|x| x.fault == Fault::RestartProxy).count(), 1);
        assert!(
            short.iter().any(|x| matches!(x.fault, Fault::Kill(_)))
                && short.iter().any(|x| matches!(x.fault, Fault::Reload(_)))
        );
    }
}
