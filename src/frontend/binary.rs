//! A binary-protocol client connection (unframed, framed or SASL): the handshake, then read a request,
//! hand it to `dispatch` with this connection as the reply sink, repeat.
//!
//! What this task owns: the handshake and its deadline, reading requests with their deadlines and the
//! shared buffered-bytes budget, the replies to requests it cannot read (broken framing closes the
//! connection after saying why), and the shutdown rule: a connection between calls closes when the proxy
//! stops (once idle for `STOP_LINGER`); one in a call finishes it first.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::pool::Credentials;
use crate::conn::{ConnError, Io, RequestRead, ThriftConn};
use crate::dispatch::{self, Attachments, CallEnd, Caller};
use crate::hs2::call::Request;
use crate::hs2::reply;
use crate::proxy::Proxy;
use crate::thrift::framing::{Framing, Sniffed};
use crate::{frontend, sasl};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("{0}")]
    Sasl(#[from] sasl::SaslError),
    #[error("{0}")]
    Call(#[from] CallEnd),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    #[error("{0}")]
    Refused(String),
    #[error("the proxy is shutting down")]
    Shutdown,
}

/// Serves one binary-protocol connection (sniffed by `frontend`, which read `first`) until it closes.
pub async fn serve(proxy: &Proxy, io: Box<dyn Io>, first: Vec<u8>, kind: Sniffed, peer: SocketAddr, deadline: Instant) {
    let handshake = tokio::time::timeout_at(deadline, handshake(proxy, io, &first, kind, peer));
    let (mut conn, caller) = match handshake.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return tracing::info!(client = %peer, error = %e, "client connection refused"),
        Err(_) => {
            let e = End::HandshakeTimeout(proxy.config().timeouts.handshake);
            return tracing::info!(client = %peer, error = %e, "client connection refused");
        }
    };
    let attached = Attachments::default();
    match run(proxy, &mut conn, &caller, &attached).await {
        Ok(()) => tracing::debug!(client = %peer, "client closed the connection"),
        Err(End::Shutdown) => tracing::debug!(client = %peer, "idle client connection closed: shutting down"),
        Err(e) => tracing::info!(client = %peer, error = %e, "client connection closed"),
    }
    attached.detach_all(proxy, peer);
}

async fn handshake(
    proxy: &Proxy,
    io: Box<dyn Io>,
    first: &[u8],
    kind: Sniffed,
    peer: SocketAddr,
) -> Result<(ThriftConn, Caller), End> {
    let max_frame = proxy.config().limits.max_frame_bytes;
    let framing = match kind {
        Sniffed::Unframed | Sniffed::Sasl => Framing::Unframed,
        Sniffed::Framed => Framing::Framed,
        other => return Err(End::Refused(format!("{other:?} is not the binary protocol"))),
    };
    let mut conn = ThriftConn::new(io, framing, max_frame).with_initial_bytes(first);
    let caller = if kind == Sniffed::Sasl {
        let plain = sasl::server_read_credentials(&mut conn).await?;
        let creds = Credentials { user: plain.user, password: plain.password };
        let verdict = frontend::auth::check_password(proxy, &creds).await;
        if let Err(reason) = &verdict {
            tracing::warn!(client = %peer, user = %creds.user, reason = %reason, "authentication failed");
        }
        sasl::server_finish(&mut conn, verdict, max_frame).await?;
        Caller::new(Some(creds.user.clone()), creds, peer)
    } else {
        Caller::new(None, proxy.service_credentials(), peer)
    };
    tracing::debug!(client = %peer, transport = ?kind, user = ?caller.identity, "client connected");
    Ok((conn, caller))
}

async fn run(proxy: &Proxy, conn: &mut ThriftConn, caller: &Caller, attached: &Attachments) -> Result<(), End> {
    let mut stop = proxy.stop_signal();
    let t = &proxy.config().timeouts;
    let read = RequestRead {
        limits: proxy.config().limits.request,
        idle: t.client_idle,
        stall: t.request_read,
        budget: proxy.budget(),
    };
    loop {
        let bytes = match next_request(conn, &read, &mut stop).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(()),
            Err(ConnError::BadMessage { name, seqid, reason }) => {
                // The stream position is lost: say why, then close.
                let text = format!("hs2-proxy: refused {name} request: {reason}");
                let _ = conn.write_message(&reply::protocol_error(&name, seqid, &text)).await;
                return Err(End::Refused(text));
            }
            Err(ConnError::Idle(_)) if proxy.is_stopping() => return Err(End::Shutdown),
            Err(e) => return Err(e.into()),
        };
        let req = Request::parse(bytes, read.limits).map_err(ConnError::from)?;
        let served = dispatch::call(proxy, caller, attached, req, conn).await;
        conn.release_budget();
        served?;
    }
}

/// Once the proxy stops, a connection between calls stays open this long for a request on its way (a
/// client in the middle of a sequence of calls, or one that connected just before the stop), and closes
/// once it has been idle that long: a client idle for longer is between calls, and a pool that checks its
/// connections sees the close before it reuses this one. Measured in tests/upgrade.rs: without it, 20
/// upgrades under load failed 6 calls (a client's next call of a sequence racing the close); with it, none.
pub const STOP_LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// The next request; `Err(Idle)` once the proxy stops and the connection has been between calls for
/// [`STOP_LINGER`]. A request begun by then is read to its end and served (nothing is consumed until a
/// whole message is there, so the read can start over).
async fn next_request(
    conn: &mut ThriftConn,
    read: &RequestRead<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<bytes::Bytes>, ConnError> {
    if !*stop.borrow() {
        tokio::select! {
            r = conn.read_request(read) => return r,
            _ = crate::control::stopped(stop) => {}
        }
    }
    match tokio::time::timeout(STOP_LINGER, conn.read_request(read)).await {
        Ok(r) => r,
        Err(_) if conn.has_buffered_bytes() => conn.read_request(read).await,
        Err(_) => Err(ConnError::Idle(STOP_LINGER)),
    }
}
