//! The soak's load: kinds of clients, each a loop until the soak stops, counting what worked and
//! keeping every failure with its time (the soak tells failures during a fault from others afterwards).
//!
//! The kinds themselves are in [`super::clients`]; here is what they share: the proxy's address, the
//! stop switch, their figures, Hue's session store, and connecting with bounded waits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::cluster::CLIENT_SEQIDS;
use crate::hs2::handle::HandleId;
use crate::hs2client::{ClientAuth, ClientError, Hs2Client};

/// Every call of a soak client is bounded by this (the proxy's deadlines are shorter).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures kept per kind with their time (all are counted).
const KEPT_FAILURES: usize = 10_000;
/// A client that failed waits this long before its next round (no hot loop while the proxy restarts).
const AFTER_FAILURE: Duration = Duration::from_millis(200);

/// The client kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pooled connections; each user's latest session reused from any of them (and from new ones);
    /// heals on "Invalid session" by opening a new session; retries a call on a socket error.
    Hue,
    /// A connection and a session per cursor: open, a few queries, close.
    Impyla,
    /// Opens a session, then vanishes: mid-reply, right after a request, or halfway through one.
    Vanisher,
    /// Reads a 4 MiB reply slowly but steadily: must get it whole.
    SlowReader,
    /// Fetches 64 MiB in 16 MiB replies.
    LargeFetch,
    /// Asks for a large reply and never reads: must be cut off after `timeouts.client_write`.
    Stalled,
    /// Real impyla (Python, `super::python`): a cursor, so a session, per round.
    RealImpyla,
}

pub const KINDS: [Kind; 7] =
    [Kind::Hue, Kind::Impyla, Kind::Vanisher, Kind::SlowReader, Kind::LargeFetch, Kind::Stalled, Kind::RealImpyla];

/// How many clients of each kind run.
#[derive(Clone, Debug)]
pub struct Mix {
    pub hue_workers: usize,
    pub hue_pool: usize,
    pub impyla: usize,
    pub vanishers: usize,
    pub slow_readers: usize,
    pub large_fetchers: usize,
    pub stalled: usize,
    /// Real impyla processes; they need [`super::Settings::python`].
    pub real_impyla: usize,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            hue_workers: 3,
            hue_pool: 4,
            impyla: 3,
            vanishers: 2,
            slow_readers: 1,
            large_fetchers: 1,
            stalled: 1,
            real_impyla: 2,
        }
    }
}

impl Mix {
    /// How many clients of `kind` run.
    pub fn clients(&self, kind: Kind) -> usize {
        match kind {
            Kind::Hue => self.hue_workers,
            Kind::Impyla => self.impyla,
            Kind::Vanisher => self.vanishers,
            Kind::SlowReader => self.slow_readers,
            Kind::LargeFetch => self.large_fetchers,
            Kind::Stalled => self.stalled,
            Kind::RealImpyla => self.real_impyla,
        }
    }
}

/// One kind's figures.
#[derive(Default)]
pub struct KindStats {
    pub ok: AtomicU64,
    /// Hue: calls that failed on a lost session and worked again on a new one.
    pub healed: AtomicU64,
    /// Hue: calls that worked after a retry on a new connection.
    pub retried: AtomicU64,
    pub failures: AtomicU64,
    kept: Mutex<Vec<(Instant, String)>>,
}

impl KindStats {
    pub fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_FAILURES {
            kept.push((Instant::now(), why));
        }
    }

    pub fn kept_failures(&self) -> Vec<(Instant, String)> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What every client shares.
pub struct Ctx {
    pub proxy: SocketAddr,
    stop: watch::Receiver<bool>,
    stats: HashMap<Kind, KindStats>,
    /// Hue keeps each user's latest session in its database, for every Hue host.
    pub hue_sessions: Mutex<HashMap<String, HandleId>>,
    /// The client-side timeout of the stalled kind's wait (`timeouts.client_write` plus slack).
    pub stall_wait: Duration,
}

impl Ctx {
    pub fn stats(&self, kind: Kind) -> &KindStats {
        // Every kind has an entry from `new`.
        &self.stats[&kind]
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d` unless the soak stops first; false when it stops.
    pub async fn pause(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = async { let _ = stop.wait_for(|s| *s).await; } => false,
        }
    }

    pub async fn after_failure(&self) {
        self.pause(AFTER_FAILURE).await;
    }

    /// A client connection (SASL PLAIN as `user`, or NOSASL), every call bounded, seqids from
    /// [`CLIENT_SEQIDS`].
    pub async fn connect(&self, user: Option<&str>) -> Result<Hs2Client, String> {
        let auth = match user {
            Some(u) => ClientAuth::Plain { user: u.to_string(), password: format!("{u}-pw") },
            None => ClientAuth::NoSasl,
        };
        let mut c = match tokio::time::timeout(CONNECT_TIMEOUT, Hs2Client::connect(self.proxy, &auth)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err(format!("connect: no answer within {CONNECT_TIMEOUT:?}")),
        };
        c.set_timeout(Some(CALL_TIMEOUT));
        c.set_next_seqid(CLIENT_SEQIDS);
        Ok(c)
    }
}

/// True for errors after which the connection cannot carry another call.
pub fn is_connection_error(e: &ClientError) -> bool {
    !matches!(e, ClientError::Status { .. } | ClientError::Exception(_) | ClientError::OperationFailed(_))
}

/// Hue opens a new session and retries when an error says the session is gone (HS2-NOTES.md).
pub fn hue_heals_on(e: &ClientError) -> bool {
    let ClientError::Status { message, .. } = e else { return false };
    let m = message.to_ascii_lowercase();
    ["invalid sessionhandle", "invalid session", "client session expired"].iter().any(|p| m.contains(p))
}

/// The running clients.
pub struct Load {
    pub ctx: Arc<Ctx>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    impyla: Option<super::python::Impyla>,
}

impl Load {
    /// Starts the clients of `mix`; the real impyla ones with `python` (their logs in `dir`).
    pub fn start(
        proxy: SocketAddr,
        mix: &Mix,
        stall_wait: Duration,
        python: Option<&std::path::Path>,
        dir: &std::path::Path,
    ) -> Result<Load, super::SoakError> {
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            proxy,
            stop: stopped,
            stats: KINDS.iter().map(|k| (*k, KindStats::default())).collect(),
            hue_sessions: Mutex::new(HashMap::new()),
            stall_wait,
        });
        let mut tasks = JoinSet::new();
        let mut spawn = |n: usize, kind: Kind| {
            for i in 0..n {
                tasks.spawn(super::clients::run(ctx.clone(), kind, i, mix.hue_pool));
            }
        };
        spawn(mix.hue_workers, Kind::Hue);
        spawn(mix.impyla, Kind::Impyla);
        spawn(mix.vanishers, Kind::Vanisher);
        spawn(mix.slow_readers, Kind::SlowReader);
        spawn(mix.large_fetchers, Kind::LargeFetch);
        spawn(mix.stalled, Kind::Stalled);
        let impyla = match (python, mix.real_impyla) {
            (_, 0) => None,
            (Some(py), n) => Some(super::python::Impyla::start(py, proxy, n, ctx.clone(), dir)?),
            (None, _) => return Err(super::SoakError::Setup("real impyla clients need a Python (--python)".into())),
        };
        Ok(Load { ctx, stop, tasks, impyla })
    }

    /// Stops every client after its current round; returns how many had to be aborted after `within`.
    pub async fn stop(mut self, within: Duration) -> (Arc<Ctx>, usize) {
        self.stop.send_replace(true);
        let killed = match self.impyla.take() {
            Some(i) => i.stop().await,
            None => 0,
        };
        let deadline = tokio::time::Instant::now() + within;
        let mut aborted = 0;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(_) => {}
                Err(_) => {
                    aborted = self.tasks.len();
                    self.tasks.shutdown().await;
                }
            }
        }
        (self.ctx, aborted + killed)
    }
}
