//! The listeners: bind, accept client connections within the connection limit, hand each to `frontend`,
//! start the control-plane tasks and the admin listener, and stop gracefully.
//!
//! Graceful shutdown (SIGTERM/SIGINT, or [`ProxyHandle::shutdown`]): the listeners stop accepting at
//! once; a client connection between calls closes; one in the middle of a call finishes that call
//! first; [`ProxyHandle::drained`] resolves when every connection is gone, and the binary exits then or
//! after `timeouts.shutdown_grace`, whichever comes first. Sessions are never closed upstream on the
//! way out: impalad keeps them, and another instance (or this one, restarted) finds them again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, Semaphore};

use crate::config::{Config, ConfigError};
use crate::control::{self, stopped};
use crate::frontend::{self, Front};
use crate::proxy::Proxy;

/// A running proxy: its addresses, its shared state, and the switch that stops it.
pub struct ProxyHandle {
    pub local_addr: SocketAddr,
    /// The admin HTTP listener (API, status page, metrics), unless turned off.
    pub admin_addr: Option<SocketAddr>,
    /// The extra listener of `http.listen`, if set.
    pub http_addr: Option<SocketAddr>,
    pub proxy: Proxy,
    connections: Tracker,
}

impl ProxyHandle {
    /// Starts a graceful shutdown: no new connections; open ones finish their call and close.
    pub fn shutdown(&self) {
        self.proxy.begin_shutdown();
    }

    /// Waits until [`ProxyHandle::shutdown`] is called.
    pub async fn stopped(&self) {
        stopped(&mut self.proxy.stop_signal()).await;
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.count()
    }

    /// Resolves once every client connection has closed (after [`ProxyHandle::shutdown`]).
    pub async fn drained(&self) {
        self.connections.wait_empty().await;
    }

    /// Leaves ZooKeeper (bounded), shuts down, and waits for the connections, at most
    /// `timeouts.shutdown_grace`; returns how many were still open when the grace ran out.
    pub async fn shutdown_gracefully(&self) -> usize {
        self.proxy.deregister().await;
        self.shutdown();
        let grace = self.proxy.config().timeouts.shutdown_grace;
        match tokio::time::timeout(grace, self.drained()).await {
            Ok(()) => 0,
            Err(_) => self.open_connections(),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("{0}")]
    Bind(#[from] std::io::Error),
    /// A setting turned out unusable only when used (Kerberos credentials, the advertised address).
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
}

/// Binds the listeners (HS2, the optional extra HTTP one, and admin unless turned off), acquires the
/// Kerberos credentials `[kerberos]` asks for, and starts serving in the background. The config keeps
/// the bound addresses, so that port 0 shows as the port actually used.
/// Clean-up closes an abandoned session only on its impalad's word (`control::cleanup`): without a
/// `metrics_url` such sessions are left to impalad's own timeouts, and impalad's default
/// `--idle_session_timeout` is 0 (never). Said once at start, so that an operator sees it.
fn warn_of_blind_cleanup(config: &Config) {
    let blind: Vec<String> =
        config.backends.iter().filter(|b| b.metrics_url.is_none()).map(|b| b.addr.to_string()).collect();
    if !blind.is_empty() {
        tracing::warn!(backends = ?blind,
            "no metrics_url: sessions whose clients vanished are forgotten here but stay open on these impalads \
             until their own idle_session_timeout; set backends[].metrics_url to the impalad's web port \
             (docs/operations.md)");
    }
}

pub async fn start(mut config: Config) -> Result<ProxyHandle, StartError> {
    let reuse = config.reuse_port;
    let listener = bind(config.listen, reuse, "listen", "--listen")?;
    let local_addr = listener.local_addr()?;
    config.listen = local_addr;
    let admin = match config.admin.listen {
        Some(addr) => Some(bind(addr, reuse, "admin.listen", "--admin-listen")?),
        None => None,
    };
    config.admin.listen = admin.as_ref().map(TcpListener::local_addr).transpose()?;
    let http = match config.http.listen {
        Some(addr) => Some(bind(addr, reuse, "http.listen", "--http-listen")?),
        None => None,
    };
    config.http.listen = http.as_ref().map(TcpListener::local_addr).transpose()?;
    let (admin_addr, http_addr) = (config.admin.listen, config.http.listen);
    let kerberos = match config.kerberos.clone() {
        // Blocking: it may ask the KDC for the proxy's first ticket.
        Some(k) => Some(tokio::task::spawn_blocking(move || k.acquire()).await.map_err(std::io::Error::other)??),
        None => None,
    };
    warn_of_blind_cleanup(&config);
    let front = Arc::new(Front::new(&config, kerberos.as_ref()));
    let registrar = match &config.discovery {
        Some(d) => {
            let advert = crate::discovery::advert_for(&config, d, local_addr);
            let r = crate::discovery::Registrar::start(d.clone(), advert)
                .map_err(|e| ConfigError { key: "discovery.advertise".into(), reason: e.to_string() })?;
            Some(r)
        }
        None => None,
    };
    let upstream_kerberos = kerberos.as_ref().and_then(|k| k.upstream.clone());
    let proxy = Proxy::new(config, registrar, upstream_kerberos);
    for b in proxy.backends() {
        control::health::spawn(&proxy, b.clone());
        control::load::spawn(&proxy, b);
    }
    control::reaper::spawn(&proxy);
    // One connection limit for all client listeners.
    let permits = Arc::new(Semaphore::new(proxy.config().limits.max_client_connections));
    let connections = Tracker::default();
    let accept = Accept { proxy: proxy.clone(), front, permits, connections: connections.clone() };
    tokio::spawn(accept.clone().run(listener));
    if let Some(http) = http {
        tokio::spawn(accept.run(http));
    }
    if let Some(admin) = admin {
        crate::admin::serve(admin, proxy.clone());
    }
    tracing::info!(listen = %local_addr, admin = ?admin_addr, backends = proxy.backends().len(), "hs2-proxy listening");
    Ok(ProxyHandle { local_addr, admin_addr, http_addr, proxy, connections })
}

/// The accept queue of each listener (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// Binds a listener, with SO_REUSEPORT when `reuse` (`reuse_port`), so that a new instance can bind the
/// same address while this one drains. SO_REUSEADDR as `TcpListener::bind` sets it: a restart does not
/// wait for TIME_WAIT.
fn bind(addr: SocketAddr, reuse: bool, key: &str, flag: &str) -> std::io::Result<TcpListener> {
    let bound = (|| {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(reuse)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    })();
    bound.map_err(|e| {
        let hint = if reuse { "" } else { "; reuse_port = false: is another instance running there?" };
        std::io::Error::new(e.kind(), format!("{key} {addr}: {e} (set another with {flag}{hint})"))
    })
}

/// What every accept loop shares.
#[derive(Clone)]
struct Accept {
    proxy: Proxy,
    front: Arc<Front>,
    permits: Arc<Semaphore>,
    connections: Tracker,
}

impl Accept {
    async fn run(self, listener: TcpListener) {
        let mut stop = self.proxy.stop_signal();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut stop) => {
                    self.drain_queue(&listener);
                    return;
                }
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.serve(stream, peer, listener.local_addr().ok());
        }
    }

    /// Serves the connections already in the listener's accept queue before it closes: the kernel resets
    /// whatever is left there when the listener closes, and with SO_REUSEPORT it queues new connections
    /// on this listener until then. They are served like any connection open at the stop. Handshakes
    /// still in flight at the close are reset all the same (measured: 0-5 per 20 upgrades under a
    /// connection storm, with or without this); Linux 5.14+ with `net.ipv4.tcp_migrate_req = 1` moves
    /// them, and the queue, to the new instance's listener (tests/upgrade.rs: none lost).
    fn drain_queue(&self, listener: &TcpListener) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut drained = 0;
        while let std::task::Poll::Ready(Ok((stream, peer))) = listener.poll_accept(&mut cx) {
            self.serve(stream, peer, listener.local_addr().ok());
            drained += 1;
        }
        if drained > 0 {
            tracing::info!(connections = drained, "listener closing: served the connections in its accept queue");
        }
    }

    /// Hands an accepted connection to `frontend`, within the connection limit.
    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr, listening: Option<SocketAddr>) {
        let metrics = self.proxy.metrics();
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics.client_refused();
            tracing::warn!(client = %peer, limit = self.proxy.config().limits.max_client_connections,
                "connection limit reached: closing the new connection");
            return;
        };
        let from_address = match self.proxy.enter_connection_from(peer.ip()) {
            Ok(place) => place,
            Err(reason) => {
                metrics.client_refused();
                tracing::warn!(client = %peer, reason = %reason, "connection closed: too many from its address");
                return;
            }
        };
        metrics.client_connected();
        let (proxy, front, open) = (self.proxy.clone(), self.front.clone(), self.connections.enter());
        tokio::spawn(async move {
            frontend::serve(proxy.clone(), front, stream, peer, listening).await;
            proxy.metrics().client_disconnected();
            drop((permit, open, from_address));
        });
    }
}

/// Counts open client connections, so that shutdown can wait for them.
#[derive(Clone, Default)]
struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    open: AtomicUsize,
    emptied: Notify,
}

/// One open connection; leaving on drop.
struct Open(Arc<TrackerInner>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.emptied.notify_waiters();
        }
    }
}

impl Tracker {
    fn enter(&self) -> Open {
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        Open(self.inner.clone())
    }

    fn count(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.inner.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            emptied.await;
        }
    }
}
