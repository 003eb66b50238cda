//! A soak with faults: the real proxy binary (a child process) in front of three mock impalads, under a
//! mix of client kinds for a given time, while faults are injected one after another; then the verdict.
//!
//! - [`cluster`]: the mocks (killed and restarted in place) and the audit of misrouted calls;
//!   [`process`]: the proxy as a child process (config file, SIGHUP, SIGTERM, restart, its logs).
//! - [`load`], [`clients`]: the client kinds (Hue-like pooled, impyla-like per cursor, vanishing, slow,
//!   large, stalled; [`python`]: real impyla). [`faults`]: the schedule and each fault carried out and undone.
//! - [`sample`]: the figures recorded over time; [`verdict`]: growth and agreement, from figures only
//!   (no I/O); [`report`]: the markdown and CSV written at the end. [`admin`]: the admin API client.
//!
//! The run fails on any misrouted call, on growth without bound of any recorded series over the last two
//! thirds of the load, on client failures outside the faults' windows, on the proxy's view disagreeing
//! with the mocks' at the end, or on a panic in the proxy's log. `scripts/soak.sh` runs it for 30
//! minutes; `tests/soak.rs` for 2 (CI).

pub mod admin;
mod clients;
pub mod cluster;
pub mod faults;
pub mod load;
pub mod process;
pub mod python;
pub mod report;
pub mod sample;
pub mod verdict;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use cluster::Cluster;
use faults::Fault;
use load::{Load, Mix};
use process::{free_port, ProxyProcess, ProxySettings};
use report::{Finals, Report};
use sample::{Probe, Sample};

/// Mock impalads behind the proxy.
pub const BACKENDS: usize = 3;
/// The proxy's `sessions.disconnected_grace` and `timeouts.client_write` in the soak.
const GRACE: Duration = Duration::from_secs(5);
const CLIENT_WRITE: Duration = Duration::from_secs(2);
/// How often the audit takes the mocks' records.
const AUDIT_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The test bed could not be set up (a port, a process, a file).
    #[error("soak setup: {0}")]
    Setup(String),
    /// The proxy did not answer (expected while it restarts; an error anywhere else).
    #[error("proxy unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The hs2-proxy binary under test.
    pub proxy_bin: PathBuf,
    /// How long the load runs (faults during the first 85%).
    pub duration: Duration,
    pub sample_every: Duration,
    pub fault_period: Duration,
    /// Config, logs, report and samples go here.
    pub work_dir: PathBuf,
    pub mix: Mix,
    /// The interpreter of the real impyla clients (the project's .venv); `None` runs none.
    pub python: Option<PathBuf>,
}

impl Settings {
    /// The defaults for a run of `minutes`: a sample every 1/60 of the run (2 to 10 s), a fault every
    /// 9 s in short runs and every 20 s in long ones.
    pub fn for_minutes(minutes: f64, proxy_bin: PathBuf, work_dir: PathBuf) -> Settings {
        let duration = Duration::from_secs_f64((minutes * 60.0).max(30.0));
        let sample_every = (duration / 60).clamp(Duration::from_secs(2), Duration::from_secs(10));
        let fault_period =
            if duration <= Duration::from_secs(300) { Duration::from_secs(9) } else { Duration::from_secs(20) };
        Settings { proxy_bin, duration, sample_every, fault_period, work_dir, mix: Mix::default(), python: None }
    }
}

/// Runs the soak; `Ok` holds the report whether or not it passed (see [`Report::passed`]).
pub async fn run(s: &Settings) -> Result<Report, SoakError> {
    std::fs::create_dir_all(&s.work_dir).map_err(|e| SoakError::Setup(format!("{}: {e}", s.work_dir.display())))?;
    let cluster = Cluster::start(BACKENDS).await?;
    let settings = ProxySettings {
        listen: free_port()?,
        admin: free_port()?,
        disconnected_grace: "5s",
        client_write: "2s",
        metrics_urls: cluster.metrics_urls(),
    };
    let mut proxy = ProxyProcess::new(&s.proxy_bin, &s.work_dir, settings);
    proxy.write_config(&cluster.addrs())?;
    proxy.start().await?;
    let since = Instant::now();
    let mut mix = s.mix.clone();
    if s.python.is_none() {
        mix.real_impyla = 0;
    }
    let load =
        Load::start(proxy.listen(), &mix, CLIENT_WRITE + Duration::from_secs(2), s.python.as_deref(), &s.work_dir)?;
    let pid = Arc::new(AtomicU32::new(proxy.pid().unwrap_or(0)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let background =
        spawn_background(cluster.clone(), &proxy, pid.clone(), samples.clone(), since, s.sample_every, stop_rx);
    let mut windows = Vec::new();
    let mut fault_log = Vec::new();
    let mut problems = Vec::new();
    for planned in faults::plan(s.duration, s.fault_period, BACKENDS) {
        tokio::time::sleep_until((since + planned.at).into()).await;
        match faults::inject(planned.fault, &cluster, &mut proxy).await {
            Ok(w) => windows.push(w),
            Err(e) => problems.push(format!("fault {:?} at {:?}: {e}", planned.fault, planned.at)),
        }
        if planned.fault == Fault::RestartProxy {
            pid.store(proxy.pid().unwrap_or(0), Ordering::Relaxed);
        }
        fault_log.push(planned);
    }
    tokio::time::sleep_until((since + s.duration).into()).await;
    let (ctx, aborted) = load.stop(Duration::from_secs(60)).await;
    if aborted > 0 {
        problems.push(format!("{aborted} clients did not finish their round within 60 s of the stop"));
    }
    stop_tx.send_replace(true);
    let _ = background.await;
    cluster.audit_now();
    let finals = final_checks(&proxy, &cluster).await;
    let exit = proxy.stop().await;
    cluster.stop().await;
    if let Err(e) = exit {
        problems.push(e.to_string());
    }
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let run =
        report::Run { settings: s, mix: &mix, windows: &windows, faults: &fault_log, proxy_starts: proxy.starts() };
    Ok(Report::build(&run, &ctx, cluster.audit_figures(), samples, finals, problems))
}

/// The sampler and the misroute audit, until `stop`.
fn spawn_background(
    cluster: Arc<Cluster>,
    proxy: &ProxyProcess,
    pid: Arc<AtomicU32>,
    samples: Arc<Mutex<Vec<Sample>>>,
    since: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (listen, admin) = (proxy.listen(), proxy.admin());
    tokio::spawn(async move {
        let mut audit = tokio::time::interval(AUDIT_EVERY);
        let mut sampling = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = audit.tick() => cluster.audit_now(),
                _ = sampling.tick() => {
                    let p = match pid.load(Ordering::Relaxed) { 0 => None, p => Some(p) };
                    let probe = Probe { pid: p, listen, admin, cluster: &cluster, since };
                    let taken = probe.take().await;
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(taken);
                }
                _ = stop.changed() => return,
            }
        }
    })
}

/// Waits (polling, bounded) until `check` is true; returns whether it became true.
async fn until(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the load stopped: the proxy's view against the mocks', then the clean-up against what is left.
async fn final_checks(proxy: &ProxyProcess, cluster: &Cluster) -> Finals {
    let admin_addr = proxy.admin();
    let mut f = Finals::default();
    let idle = until(Duration::from_secs(15), async || {
        admin::status(admin_addr).await.is_ok_and(|s| s.client_connections == 0)
    })
    .await;
    if !idle {
        f.problems.push("client connections still open 15 s after every client stopped".into());
    }
    match agreement(proxy, cluster).await {
        Ok(mut p) => f.problems.append(&mut p),
        Err(e) => f.problems.push(format!("reading the admin API: {e}")),
    }
    let pid = proxy.pid().unwrap_or(0);
    let ports: Vec<u16> = cluster.addrs().iter().map(|a| a.port()).collect();
    let sockets_match = until(Duration::from_secs(5), async || {
        let open = crate::bench::procfs::established(pid, |_, remote| ports.contains(&remote));
        let pooled = admin::backends(admin_addr)
            .await
            .map(|b| b.backends.iter().map(|b| b.upstream.busy + b.upstream.idle).sum::<usize>());
        pooled.is_ok_and(|p| p == open)
    })
    .await;
    if !sockets_match {
        f.problems.push("the proxy's upstream sockets (/proc) never matched its pools' counts (admin)".into());
    }
    let limit = GRACE + Duration::from_secs(15);
    let reaped = until(limit, async || admin::status(admin_addr).await.is_ok_and(|s| s.sessions == 0)).await;
    if !reaped {
        f.problems.push(format!("sessions still in the table {limit:?} after the last client left"));
    }
    f.sessions_at_end = admin::status(admin_addr).await.map(|s| s.sessions).unwrap_or(usize::MAX);
    if let Ok(b) = admin::backends(admin_addr).await {
        f.pinned_at_end = b.backends.iter().map(|b| b.upstream.pinned).sum();
        if f.pinned_at_end > 0 {
            f.problems.push(format!("{} upstream connections still pinned with no session left", f.pinned_at_end));
        }
    }
    let (left, panics) = proxy.read_logs();
    let leftovers = verdict::leftover_sessions(&cluster.holdings(), proxy.started_at(), &left);
    f.left_to_server = left.len();
    f.orphans_of_earlier_instance =
        cluster.holdings().values().flat_map(|m| m.sessions.values()).filter(|t| **t < proxy.started_at()).count();
    f.problems.extend(leftovers);
    f.problems.extend(panics.into_iter().map(|p| format!("panic in the proxy's log: {p}")));
    f
}

/// Two listings of the proxy's sessions around one read of the mocks, then the per-backend counts.
async fn agreement(proxy: &ProxyProcess, cluster: &Cluster) -> Result<Vec<String>, SoakError> {
    let listed = |j: crate::admin::api::SessionsJson| -> Vec<verdict::ListedSession> {
        j.sessions
            .into_iter()
            .filter_map(|s| {
                let id = crate::hs2::handle::Guid::parse_impala_id(&s.id)?;
                let operations =
                    s.operations.iter().filter_map(|o| crate::hs2::handle::Guid::parse_impala_id(o)).collect();
                let held_as =
                    s.upstream_id.as_deref().and_then(crate::hs2::handle::Guid::parse_impala_id).unwrap_or(id);
                Some(verdict::ListedSession { id, held_as, backend: s.backend, operations })
            })
            .collect()
    };
    let before = listed(admin::sessions(proxy.admin()).await?);
    let mocks = cluster.holdings();
    let after = listed(admin::sessions(proxy.admin()).await?);
    let mut problems = verdict::compare_sessions(&before, &after, &mocks, proxy.started_at());
    // The clean-up may close a session between two reads: compare counts on a read pair that agrees.
    let mut counted = false;
    for _ in 0..10 {
        let b = admin::backends(proxy.admin()).await?;
        let s = listed(admin::sessions(proxy.admin()).await?);
        let b2 = admin::backends(proxy.admin()).await?;
        let same = b.backends.iter().zip(&b2.backends).all(|(x, y)| x.sessions == y.sessions);
        if !same {
            continue;
        }
        counted = true;
        for be in &b.backends {
            let n = s.iter().filter(|x| x.backend == be.address).count() as u64;
            if n != be.sessions {
                problems.push(format!(
                    "{}: /api/backends says {} sessions, /api/sessions lists {n}",
                    be.address, be.sessions
                ));
            }
            if be.inflight != 0 || be.upstream.busy != 0 {
                problems.push(format!(
                    "{}: {} calls in flight, {} busy upstream connections with no client",
                    be.address, be.inflight, be.upstream.busy
                ));
            }
        }
        break;
    }
    if !counted {
        problems.push("the per-backend session counts never held still over two reads".into());
    }
    Ok(problems)
}
