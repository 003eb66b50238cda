//! ZooKeeper discovery: this instance registers itself where Hive JDBC/beeline's
//! `serviceDiscoveryMode=zooKeeper` looks, in HiveServer2's format, and takes itself out when it should
//! not get new clients.
//!
//! - `znode.rs`: the znode's name and data (pure).
//! - `retry.rs`: backoff and log pacing (pure).
//! - `task.rs`: the one background task that talks to ZooKeeper.
//!
//! ```text
//! let registrar = Registrar::start(cfg, advert)?;  // at once; registers in the background
//! registrar.set_available(false);                   // no backend takes new sessions: znode deleted
//! registrar.set_available(true);                    // one does again: a new znode
//! registrar.deregister().await;                     // on SIGTERM, before draining; bounded
//! registrar.state();                                // admin view
//! ```
//!
//! ZooKeeper never blocks or stops the proxy: every call here returns at once except `deregister`,
//! which gives up after [`DEREGISTER_TIMEOUT`] (the znode then goes when ZooKeeper expires the session).
//! The client is `zookeeper-client` (async, maintained, reconnects by itself within a session); a lost
//! session (expired: its ephemeral znode is gone) is replaced by a new one and the znode created again.

mod retry;
mod task;
pub mod znode;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{BackendTransport, Config, DiscoveryConfig};
pub use znode::{Advert, AdvertAuth, AdvertError, AdvertTransport};

/// Longest wait in [`Registrar::deregister`].
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// The registrar's link to ZooKeeper, as the admin view shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Establishing a session (at start, or after one was lost).
    Connecting,
    /// In a session, connected.
    Connected,
    /// In a session, reconnecting: the znode stays until the session times out.
    Disconnected,
    /// Deregistered for good (or the registrar was dropped).
    Stopped,
}

/// What the registrar is doing; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryState {
    /// The connect string.
    pub zookeeper: String,
    pub namespace: String,
    /// `host:port` in the znode.
    pub advertised: String,
    pub link: Link,
    /// The ZooKeeper session, `0x...`.
    pub session_id: Option<String>,
    /// Full path of our znode while registered.
    pub registered: Option<String>,
    /// What the proxy asked for with [`Registrar::set_available`].
    pub available: bool,
    /// Znodes created so far (re-registrations after a lost session count).
    pub registrations: u64,
    /// The latest error, kept until an operation succeeds.
    pub last_error: Option<String>,
}

/// How [`Registrar::deregister`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deregistered {
    /// The znode was deleted (or was not there) and the session closed.
    Done,
    /// ZooKeeper did not answer in time: the znode goes when the session expires.
    TimedOut,
}

/// The advert for this proxy's HS2 listener, bound at `bound`: `advertise` (or the listen address),
/// binary transport (the listener sniffs HTTP too, but binary is what JDBC defaults to), TLS when `[tls]`
/// has a certificate, and SASL PLAIN: `LDAP` when the backends check passwords (`backend_auth.transport =
/// "sasl"`), else `NONE`. The listener also takes NOSASL, but PLAIN carries the user's name, which owns
/// the sessions. A Kerberos listener advertises `AdvertAuth::Kerberos` with its principal instead.
pub fn advert_for(config: &Config, discovery: &DiscoveryConfig, bound: SocketAddr) -> Advert {
    let (host, port) = discovery.advertised(bound);
    let kerberos = config.kerberos.as_ref().and_then(|k| k.acceptor.as_ref());
    let auth = match (kerberos, config.backend_auth.transport) {
        // Clients that find the proxy here should use Kerberos when it accepts it.
        (Some(a), _) => AdvertAuth::Kerberos { principal: a.service_principal.clone() },
        (None, BackendTransport::Sasl) => AdvertAuth::Ldap,
        (None, _) => AdvertAuth::None,
    };
    Advert { tls: config.tls.is_some(), ..Advert::binary(host, port, auth) }
}

/// What the proxy wants; the task reads the latest value (a `watch`, so bursts of changes collapse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Want {
    available: bool,
    stop: bool,
}

/// The handle: owns the background task (dropping it stops the task, which closes the session, so
/// ZooKeeper deletes the znode at once).
#[derive(Debug)]
pub struct Registrar {
    want: watch::Sender<Want>,
    state: watch::Receiver<DiscoveryState>,
    task: tokio::task::AbortHandle,
}

impl Registrar {
    /// Starts registering `advert` (with the proxy available: call [`Registrar::set_available`] right
    /// after if it is not; the task has not connected yet, so nothing is registered in between).
    /// Must be called inside a tokio runtime. Fails only on an advert that does not fit the format.
    pub fn start(cfg: DiscoveryConfig, advert: Advert) -> Result<Registrar, AdvertError> {
        advert.check()?;
        let want = Want { available: true, stop: false };
        let initial = DiscoveryState {
            zookeeper: cfg.zookeeper.clone(),
            namespace: cfg.namespace.clone(),
            advertised: advert.uri(),
            link: Link::Connecting,
            session_id: None,
            registered: None,
            available: true,
            registrations: 0,
            last_error: None,
        };
        let (want_tx, want_rx) = watch::channel(want);
        let (state_tx, state_rx) = watch::channel(initial);
        let task = tokio::spawn(task::run(cfg, advert, want_rx, state_tx)).abort_handle();
        Ok(Registrar { want: want_tx, state: state_rx, task })
    }

    /// Registered while `true` (the default), not while `false`. Returns at once; repeated values are
    /// ignored.
    pub fn set_available(&self, available: bool) {
        self.want.send_if_modified(|w| {
            let changed = w.available != available && !w.stop;
            w.available = available;
            changed
        });
    }

    /// Deletes the znode and closes the session, for good; waits at most [`DEREGISTER_TIMEOUT`].
    /// Call it before draining, so that new clients go elsewhere. Idempotent.
    pub async fn deregister(&self) -> Deregistered {
        self.want.send_modify(|w| w.stop = true);
        let mut state = self.state.clone();
        let done = tokio::time::timeout(DEREGISTER_TIMEOUT, state.wait_for(|s| s.link == Link::Stopped)).await;
        match done {
            Ok(_) => Deregistered::Done,
            Err(_) => {
                // Dropping the task's client still asks ZooKeeper to close the session.
                self.task.abort();
                tracing::warn!(timeout = ?DEREGISTER_TIMEOUT,
                    "ZooKeeper did not confirm the deregistration in time: the znode goes when the session expires");
                Deregistered::TimedOut
            }
        }
    }

    /// A snapshot for the admin view.
    pub fn state(&self) -> DiscoveryState {
        self.state.borrow().clone()
    }

    /// Every change of [`Registrar::state`] (for tests and the admin view's waiters).
    pub fn subscribe(&self) -> watch::Receiver<DiscoveryState> {
        self.state.clone()
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    #[test]
    fn the_advert_follows_the_config_and_the_bound_port() {
        let text = "listen = \"0.0.0.0:0\"\n[discovery]\nzookeeper = \"zk:2181\"\nadvertise = \"proxy1.example.com\"\n";
        let c = FileConfig::parse(text).and_then(FileConfig::validate).unwrap();
        let d = c.discovery.clone().unwrap();
        let a = advert_for(&c, &d, "0.0.0.0:21050".parse().unwrap());
        assert_eq!(a, Advert::binary("proxy1.example.com", 21050, AdvertAuth::None));
        let mut sasl = c.clone();
        sasl.backend_auth.transport = BackendTransport::Sasl;
        assert_eq!(advert_for(&sasl, &d, "0.0.0.0:1".parse().unwrap()).auth, AdvertAuth::Ldap);
    }
}
