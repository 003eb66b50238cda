//! The listener: accepts client connections within the connection limit, owns the shared state, and
//! runs the background clean-up (abandoned sessions, idle upstream connections). Shutdown is explicit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::backend::pool::{Credentials, PoolError};
use crate::backend::Backends;
use crate::config::{BackendTransport, Config};
use crate::hs2::requests;
use crate::routing::{Routes, SessionEntry};

/// State shared by every connection task: a cheap-clone `Arc` handle.
pub struct Proxy {
    pub config: Config,
    pub backends: Backends,
    pub routes: Routes,
    /// Turns ties between equally loaded backends.
    rotor: AtomicUsize,
}

impl Proxy {
    pub fn new(config: Config) -> Proxy {
        Proxy { backends: Backends::new(&config), routes: Routes::new(), rotor: AtomicUsize::new(0), config }
    }

    pub fn next_rotor(&self) -> usize {
        self.rotor.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks a SASL client's credentials by authenticating upstream with them (so LDAP checks the
    /// password at the impalad). The connection opened for the check stays pooled for the user's calls.
    /// `Err` holds the text the client is shown.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<(), String> {
        if self.backends.transport == BackendTransport::Nosasl {
            // The backends authenticate nobody; the name still owns the user's sessions.
            return Ok(());
        }
        let mut last = String::from("no backend is configured");
        for backend in self.backends.preference(self.next_rotor()) {
            match backend.pool.checkout(creds).await {
                Ok(up) => {
                    backend.pool.checkin(up);
                    return Ok(());
                }
                Err(PoolError::AuthRefused { message, .. }) => return Err(message),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("hs2-proxy could not check the credentials: {last}"))
    }

    /// Closes abandoned sessions upstream and drops idle upstream connections; called periodically.
    pub async fn clean_up(&self) {
        let now = Instant::now();
        for guid in self.routes.abandoned(now, self.config.disconnected_grace) {
            if let Some(entry) = self.routes.forget_session(&guid) {
                tracing::info!(session = %guid, backend = %entry.backend.addr, user = ?entry.user,
                    "no client used the session within the grace period: closing it upstream");
                close_upstream(&entry, guid, &self.config).await;
            }
        }
        for b in self.backends.all() {
            let closed = b.pool.close_idle(now);
            if closed > 0 {
                tracing::debug!(backend = %b.addr, closed, "closed idle upstream connections");
            }
        }
    }
}

/// CloseSession on an idle connection of the session's user; without one, impalad expires the session
/// by itself (`--disconnected_session_timeout`).
async fn close_upstream(entry: &SessionEntry, guid: crate::hs2::handle::Guid, config: &Config) {
    let Some(mut up) = entry.backend.pool.checkout_idle_of(pooled_user(entry, config)) else {
        tracing::info!(session = %guid, "no idle upstream connection to close the session on; the server will expire it");
        return;
    };
    let call = requests::close_session(&entry.handle(guid), 0);
    let exchange = async {
        up.conn.write_message(&call).await?;
        up.conn.read_message(config.reply_limits).await
    };
    match tokio::time::timeout(config.pool.connect_timeout, exchange).await {
        Ok(Ok(Some(_))) => entry.backend.pool.checkin(up),
        _ => entry.backend.pool.discard(up),
    }
}

/// The user whose upstream connections may carry a call on `entry`'s session.
fn pooled_user<'a>(entry: &'a SessionEntry, config: &'a Config) -> Option<&'a str> {
    match config.backend_transport {
        BackendTransport::Nosasl => None,
        BackendTransport::Sasl => Some(entry.user.as_deref().unwrap_or(&config.service_credentials.user)),
    }
}

/// A running proxy: its address, its state, and the switch that stops it.
pub struct ProxyHandle {
    pub local_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    stop: watch::Sender<bool>,
}

impl ProxyHandle {
    /// Stops accepting and stops the background tasks; open connections finish their current call.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until [`ProxyHandle::shutdown`] is called.
    pub async fn stopped(&self) {
        stopped(&mut self.stop.subscribe()).await;
    }
}

/// Binds the listener and starts serving in the background.
pub async fn start(config: Config) -> std::io::Result<ProxyHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let proxy = Arc::new(Proxy::new(config));
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, proxy.clone(), stop_rx.clone()));
    tokio::spawn(clean_up_loop(proxy.clone(), stop_rx));
    tracing::info!(listen = %local_addr, backends = proxy.backends.all().len(), "hs2-proxy listening");
    Ok(ProxyHandle { local_addr, proxy, stop })
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(proxy.config.max_client_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, limit = proxy.config.max_client_connections,
                "connection limit reached: closing the new connection");
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            crate::client::serve(proxy, stream, peer).await;
            drop(permit);
        });
    }
}

/// Resolves once the stop switch is on (the guard `wait_for` returns must not live across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn clean_up_loop(proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(proxy.config.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => proxy.clean_up().await,
            _ = stopped(&mut stop) => return,
        }
    }
}
