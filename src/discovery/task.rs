//! The registrar's background task: the only code that talks to ZooKeeper.
//!
//! One loop per ZooKeeper session: connect, then keep ZooKeeper in line with what the proxy wants
//! (registered or not), watching the znode and the session. A lost session (expired or closed: its
//! ephemeral znode is gone, or soon will be) ends the loop and a new session starts with backoff.
//!
//! A create whose reply is lost (connection loss) may still have created the znode: before creating,
//! the task lists the namespace and adopts an entry its own session owns (so no duplicate is left
//! behind), and deletes entries of its earlier, lost sessions (a restarted ZooKeeper restores those
//! sessions and their znodes until they time out, which would list this instance twice). Znodes of
//! other sessions are never touched: during an upgrade two instances share one `host:port`.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use zookeeper_client::{Acls, Client, CreateMode, EventType, OneshotWatcher, SessionState};

use super::retry::{Backoff, LogGate};
use super::znode::{is_entry_of, Advert};
use super::{DiscoveryState, Link, Want};
use crate::config::DiscoveryConfig;

/// Lost sessions remembered, to delete their znodes when they show up.
const STALE_SESSIONS: usize = 4;
/// Longest wait for one ZooKeeper request (also bounded by the session timeout).
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{what}: {source}")]
    ZooKeeper { what: &'static str, source: zookeeper_client::Error },
    #[error("{what}: no answer from ZooKeeper within {after:?}")]
    Timeout { what: &'static str, after: Duration },
}

/// How one session's loop ended.
enum Ended {
    Stop,
    SessionLost,
}

struct Runner {
    cfg: DiscoveryConfig,
    advert: Advert,
    prefix: String,
    data: Vec<u8>,
    state: watch::Sender<DiscoveryState>,
    backoff: Backoff,
    gate: LogGate,
    /// Sessions lost while registered, newest last.
    stale: Vec<i64>,
}

pub(super) async fn run(
    cfg: DiscoveryConfig,
    advert: Advert,
    mut want: watch::Receiver<Want>,
    state: watch::Sender<DiscoveryState>,
) {
    if advert.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || advert.host == "localhost" {
        warn!(advertised = %advert.uri(), "advertising a loopback address: only clients on this machine can use it");
    }
    let prefix = advert.name_prefix();
    let data = advert.data().into_bytes();
    let mut r = Runner {
        cfg,
        advert,
        prefix,
        data,
        state,
        backoff: Backoff::default(),
        gate: LogGate::default(),
        stale: vec![],
    };
    loop {
        if want.borrow_and_update().stop {
            break;
        }
        r.set(|s| s.link = Link::Connecting);
        let connected = tokio::select! {
            c = r.connect() => c,
            _ = stop_requested(&mut want) => break,
        };
        let ended = match connected {
            Ok(client) => r.serve(&client, &mut want).await,
            Err(e) => {
                r.failed(&e);
                r.pause(&mut want).await
            }
        };
        if let Ended::Stop = ended {
            break;
        }
    }
    r.set(|s| {
        s.link = Link::Stopped;
        s.registered = None;
        s.session_id = None;
    });
}

/// Resolves when the proxy asks to stop (or dropped the registrar).
async fn stop_requested(want: &mut watch::Receiver<Want>) {
    let _ = want.wait_for(|w| w.stop).await;
}

impl Runner {
    /// Updates the admin view; waiters wake only on a real change.
    fn set(&self, f: impl FnOnce(&mut DiscoveryState)) {
        self.state.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
    }

    fn op_timeout(&self) -> Duration {
        self.cfg.session_timeout.min(OP_TIMEOUT)
    }

    async fn connect(&self) -> Result<Client, StepError> {
        let what = "connecting to ZooKeeper";
        let connector = Client::connector()
            .with_session_timeout(self.cfg.session_timeout)
            // Plain `create` (not `create2`): understood by ZooKeeper 3.4 too, and we need no Stat back.
            .with_server_version(3, 4, 0);
        // The client gives up after about one session timeout by itself; this bounds it for sure.
        let limit = self.cfg.session_timeout * 2;
        match tokio::time::timeout(limit, connector.connect(&self.cfg.zookeeper)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(source)) => Err(StepError::ZooKeeper { what, source }),
            Err(_) => Err(StepError::Timeout { what, after: limit }),
        }
    }

    /// Logs a failure (paced) and keeps it for the admin view.
    fn failed(&mut self, e: &StepError) {
        let text = e.to_string();
        if self.gate.failed(std::time::Instant::now(), &text) {
            warn!(error = %text, failures = self.gate.failures(), zookeeper = %self.cfg.zookeeper,
                "ZooKeeper discovery: will retry with backoff");
        }
        self.set(|s| s.last_error = Some(text));
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        let failures = self.gate.succeeded();
        if failures > 0 {
            info!(failures, "ZooKeeper discovery works again");
        }
        self.set(|s| s.last_error = None);
    }

    /// Waits out the backoff delay; a stop request cuts it short.
    async fn pause(&mut self, want: &mut watch::Receiver<Want>) -> Ended {
        let delay = self.backoff.next_delay(rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ended::SessionLost,
            _ = stop_requested(want) => Ended::Stop,
        }
    }

    async fn serve(&mut self, client: &Client, want: &mut watch::Receiver<Want>) -> Ended {
        let session = client.session_id();
        let mut states = client.state_watcher();
        info!(session = %session, timeout = ?client.session_timeout(), "ZooKeeper session established");
        self.set(|s| {
            s.link = Link::Connected;
            s.session_id = Some(session.to_string());
        });
        let mut registered: Option<String> = None;
        loop {
            let w = *want.borrow_and_update();
            self.set(|s| s.available = w.available);
            if w.stop {
                self.remove(client, registered.take()).await;
                return Ended::Stop;
            }
            let link = states.peek_state();
            if link.is_terminated() {
                return self.session_lost(session.0, link, registered);
            }
            let (watch, retry_in) = if link == SessionState::SyncConnected {
                self.step(client, w.available, &mut registered).await
            } else {
                (None, None) // reconnecting: wait for the link to change
            };
            self.set(|s| s.registered = registered.clone());
            tokio::select! {
                changed = want.changed() => {
                    if changed.is_err() {
                        return Ended::Stop; // the registrar was dropped
                    }
                }
                s = states.changed() => self.link_changed(s),
                event = node_event(watch) => {
                    if event == EventType::NodeDeleted {
                        warn!(znode = ?registered, "our znode was deleted by another client: registering again");
                        registered = None;
                        self.set(|s| s.registered = None);
                    }
                }
                _ = sleep_opt(retry_in) => {}
            }
        }
    }

    /// One reconciliation: a watch on our znode when registered, or a retry delay when it failed.
    async fn step(
        &mut self,
        client: &Client,
        available: bool,
        registered: &mut Option<String>,
    ) -> (Option<OneshotWatcher>, Option<Duration>) {
        match self.reconcile(client, available, registered).await {
            Ok(watch) => {
                self.succeeded();
                (watch, None)
            }
            Err(e) => {
                self.failed(&e);
                (None, Some(self.backoff.next_delay(rand::random::<f64>())))
            }
        }
    }

    fn link_changed(&self, state: SessionState) {
        match state {
            SessionState::Disconnected => {
                warn!(timeout = ?self.cfg.session_timeout,
                    "lost the ZooKeeper connection; reconnecting (the znode stays while the session lives)");
                self.set(|s| s.link = Link::Disconnected);
            }
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                info!("reconnected to ZooKeeper within the session");
                self.set(|s| s.link = Link::Connected);
            }
            // terminal states are handled at the top of the loop
            _ => {}
        }
    }

    fn session_lost(&mut self, session: i64, state: SessionState, registered: Option<String>) -> Ended {
        warn!(session = %format!("{session:#x}"), state = %state, znode = ?registered,
            "ZooKeeper session lost (its ephemeral znode goes with it): starting a new session");
        if registered.is_some() {
            self.stale.push(session);
            if self.stale.len() > STALE_SESSIONS {
                self.stale.remove(0);
            }
        }
        self.set(|s| {
            s.link = Link::Connecting;
            s.registered = None;
            s.session_id = None;
            s.last_error = Some(format!("session {session:#x} {state}"));
        });
        Ended::SessionLost
    }

    /// Brings ZooKeeper in line with `available`; returns a watch on our znode while registered.
    async fn reconcile(
        &mut self,
        client: &Client,
        available: bool,
        registered: &mut Option<String>,
    ) -> Result<Option<OneshotWatcher>, StepError> {
        if !available {
            if let Some(path) = registered.take() {
                if let Err(e) = self.delete(client, &path).await {
                    *registered = Some(path);
                    return Err(e);
                }
                info!(znode = %path, "deregistered from ZooKeeper (not available)");
                self.set(|s| s.registered = None);
            }
            return Ok(None);
        }
        // Twice at most: a znode that vanished between create and watch is created once more.
        for _ in 0..2 {
            let path = match registered.clone() {
                Some(p) => p,
                None => {
                    let p = self.register(client).await?;
                    *registered = Some(p.clone());
                    p
                }
            };
            let what = "watching our znode";
            let (stat, watcher) = self.timed(what, client.check_and_watch_stat(&path)).await?;
            if stat.is_some() {
                return Ok(Some(watcher));
            }
            warn!(znode = %path, "our znode disappeared: registering again");
            *registered = None;
            self.set(|s| s.registered = None);
        }
        Ok(None)
    }

    /// Creates our znode (and the namespace if missing), adopting one this session already owns.
    async fn register(&mut self, client: &Client) -> Result<String, StepError> {
        let ns = format!("/{}", self.cfg.namespace);
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match self.timed("creating the namespace", client.create(&ns, &[], &persistent)).await {
            Ok(_) => info!(namespace = %ns, "created the ZooKeeper namespace"),
            Err(StepError::ZooKeeper { source: zookeeper_client::Error::NodeExists, .. }) => {}
            Err(e) => return Err(e),
        }
        let path = match self.adopt_or_clean(client, &ns).await? {
            Some(path) => path,
            None => {
                let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
                let prefix = format!("{ns}/{}", self.prefix);
                let (_, seq) = self.timed("creating our znode", client.create(&prefix, &self.data, &ephemeral)).await?;
                format!("{prefix}{seq}")
            }
        };
        self.stale.clear();
        info!(znode = %path, advertised = %self.advert.uri(), "registered in ZooKeeper");
        self.set(|s| {
            s.registrations += 1;
            s.registered = Some(path.clone());
            s.last_error = None;
        });
        Ok(path)
    }

    /// Our session's entry if one exists (a create whose reply was lost); deletes duplicates and
    /// entries of our lost sessions.
    async fn adopt_or_clean(&self, client: &Client, ns: &str) -> Result<Option<String>, StepError> {
        let session = client.session_id().0;
        let children = self.timed("listing the namespace", client.list_children(ns)).await?;
        let mut adopted = None;
        for child in children.iter().filter(|c| is_entry_of(c, &self.prefix)) {
            let path = format!("{ns}/{child}");
            let Some(stat) = self.timed("reading an entry", client.check_stat(&path)).await? else { continue };
            let owner = stat.ephemeral_owner;
            if owner == session && adopted.is_none() {
                adopted = Some(path);
            } else if owner == session || self.stale.contains(&owner) {
                self.delete(client, &path).await?;
                info!(znode = %path, owner = %format!("{owner:#x}"), "deleted a stale znode of this instance");
            }
        }
        Ok(adopted)
    }

    /// Deletes `path`; gone already is fine.
    async fn delete(&self, client: &Client, path: &str) -> Result<(), StepError> {
        match self.timed("deleting our znode", client.delete(path, None)).await {
            Ok(()) | Err(StepError::ZooKeeper { source: zookeeper_client::Error::NoNode, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// On stop: deletes the znode (the session closes when the client drops, which would delete it too,
    /// but only an answered delete confirms it).
    async fn remove(&mut self, client: &Client, registered: Option<String>) {
        let Some(path) = registered else { return };
        match self.delete(client, &path).await {
            Ok(()) => info!(znode = %path, "deregistered from ZooKeeper"),
            Err(e) => warn!(znode = %path, error = %e, "could not delete our znode: it goes when the session ends"),
        }
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = Result<T, zookeeper_client::Error>>,
    ) -> Result<T, StepError> {
        let after = self.op_timeout();
        match tokio::time::timeout(after, f).await {
            Ok(r) => r.map_err(|source| StepError::ZooKeeper { what, source }),
            Err(_) => Err(StepError::Timeout { what, after }),
        }
    }
}

/// The event of a znode watch; pending without one.
async fn node_event(watch: Option<OneshotWatcher>) -> EventType {
    match watch {
        Some(w) => w.changed().await.event_type,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
