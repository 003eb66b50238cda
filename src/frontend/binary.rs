//! A binary-protocol client connection (unframed, framed or SASL): the handshake, then read a request,
//! hand it to `dispatch` with this connection as the reply sink, repeat.
//!
//! What this task owns: the handshake and its deadline, reading requests with their deadlines and the
//! shared buffered-bytes budget, the replies to requests it cannot read (broken framing closes the
//! connection after saying why), and the shutdown rule: a connection between calls closes when the proxy
//! stops (once idle for `STOP_LINGER`); one in a call finishes it first.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::{auth, Front};
use crate::backend::pool::Credentials;
use crate::conn::{ConnError, Io, RequestRead, ThriftConn};
use crate::dispatch::{self, Attachments, CallEnd, Caller};
use crate::hs2::call::{self, Request};
use crate::hs2::reply;
use crate::identity::ClientProof;
use crate::proxy::Proxy;
use crate::sasl::{self, Mechanism};
use crate::thrift::framing::{Framing, Sniffed};
use crate::thrift::scanner::Scanner;

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
pub async fn serve(
    proxy: &Proxy,
    front: &Front,
    io: Box<dyn Io>,
    first: Vec<u8>,
    kind: Sniffed,
    (peer, listener): (SocketAddr, Option<SocketAddr>),
    deadline: Instant,
) {
    let handshake = tokio::time::timeout_at(deadline, handshake(proxy, front, io, &first, kind, peer));
    let (mut conn, caller, place) = match handshake.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return tracing::info!(client = %peer, error = %e, "client connection refused"),
        Err(_) => {
            let e = End::HandshakeTimeout(proxy.config().timeouts.handshake);
            return tracing::info!(client = %peer, error = %e, "client connection refused");
        }
    };
    let mut caller = match caller {
        Ok(c) => c,
        // An unauthenticated client the proxy cannot serve: its first request learns why.
        Err(why) => return refuse_first_call(proxy, &mut conn, peer, &why).await,
    };
    caller.listener = listener;
    let place = place.or_else(|| caller.identity.as_deref().map(|u| proxy.enter_connection_of(u)));
    let _user_place = match place.transpose() {
        Ok(place) => place,
        Err(why) => {
            tracing::warn!(client = %peer, reason = %why, "client connection closed: too many of its user");
            return refuse_first_call(proxy, &mut conn, peer, &format!("hs2-proxy: {why}")).await;
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

/// A connection's place under `limits.max_connections_per_user`, or why it has none.
type UserPlace = Result<crate::limits::Held, String>;

/// The transport handshake; the caller is `Err` for an unauthenticated client the proxy cannot serve.
/// The user's place is taken here when the handshake itself ends by telling the client it is in.
async fn handshake(
    proxy: &Proxy,
    front: &Front,
    io: Box<dyn Io>,
    first: &[u8],
    kind: Sniffed,
    peer: SocketAddr,
) -> Result<(ThriftConn, Result<Caller, String>, Option<UserPlace>), End> {
    let max_frame = proxy.config().limits.max_frame_bytes;
    let framing = match kind {
        Sniffed::Unframed | Sniffed::Sasl => Framing::Unframed,
        Sniffed::Framed => Framing::Framed,
        other => return Err(End::Refused(format!("{other:?} is not the binary protocol"))),
    };
    let mut conn = ThriftConn::new(io, framing, max_frame).with_initial_bytes(first);
    if kind != Sniffed::Sasl {
        return Ok((conn, auth::caller(proxy, ClientProof::None, peer), None));
    }
    let caller = match sasl::server_read_start(&mut conn, front.gssapi.is_some()).await? {
        Mechanism::Plain(plain) => {
            let creds = Credentials { user: plain.user, password: plain.password };
            let verdict = auth::check_password(proxy, &creds).await;
            if let Err(reason) = &verdict {
                tracing::warn!(client = %peer, user = %creds.user, reason = %reason, "authentication failed");
            }
            // The user's place is taken before the client hears it is in: a client that has seen COMPLETE
            // counts under `limits.max_connections_per_user` (taken after, a slow task let a third
            // connection of a user with a cap of two open a session: tests/routing_policy.rs, 1 run in 3).
            let place = verdict.is_ok().then(|| proxy.enter_connection_of(&creds.user));
            sasl::server_finish(&mut conn, verdict, max_frame).await?;
            let caller = auth::caller(proxy, ClientProof::Password(creds), peer).map_err(End::Refused)?;
            return Ok((conn, Ok(caller), place));
        }
        Mechanism::Gssapi => {
            let (Some(acceptor), Some(k)) = (&front.gssapi, &proxy.config().kerberos) else {
                return Err(End::Refused("GSSAPI without an acceptor".into()));
            };
            let user = match sasl::server_accept_gssapi(&mut conn, acceptor, &k.short_names, max_frame).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(client = %peer, error = %e, "Kerberos authentication failed");
                    return Err(e.into());
                }
            };
            tracing::debug!(client = %peer, principal = %user.principal, user = %user.short_name,
                ending = ?user.ending, "Kerberos client authenticated");
            auth::caller(proxy, ClientProof::Verified(user.short_name), peer).map_err(End::Refused)?
        }
    };
    tracing::debug!(client = %peer, transport = ?kind, user = ?caller.identity, "client connected");
    Ok((conn, Ok(caller), None))
}

/// Answers the first request of a client the proxy cannot serve with why, then closes.
async fn refuse_first_call(proxy: &Proxy, conn: &mut ThriftConn, peer: SocketAddr, why: &str) {
    let t = &proxy.config().timeouts;
    let read = RequestRead {
        limits: proxy.config().limits.request,
        idle: t.handshake,
        stall: t.request_read,
        whole: t.request_total,
        budget: proxy.budget(),
        captures: call::request_captures,
    };
    if let Ok(Some((bytes, scanner))) = conn.read_request(&read).await {
        if let Ok(req) = Request::scanned(bytes, &scanner) {
            let _ = conn.write_message(&reply::error_reply(req.name(), req.header.seqid, why)).await;
        }
    }
    conn.release_budget();
    conn.close_after_refusal().await;
    tracing::info!(client = %peer, reason = %why, "client refused at its first request");
}

async fn run(proxy: &Proxy, conn: &mut ThriftConn, caller: &Caller, attached: &Attachments) -> Result<(), End> {
    // One stop future for the connection's life, not one per request: arming a watch's wait on every
    // read was 500 instructions a call (callgrind). `stopping` is set once it has fired.
    let mut stop_signal = proxy.stop_signal();
    let mut stop = std::pin::pin!(async move { crate::control::stopped(&mut stop_signal).await });
    let mut stopping = false;
    let t = &proxy.config().timeouts;
    let read = RequestRead {
        limits: proxy.config().limits.request,
        idle: t.client_idle,
        stall: t.request_read,
        whole: t.request_total,
        budget: proxy.budget(),
        captures: call::request_captures,
    };
    loop {
        let (bytes, scanner) = match next_request(conn, &read, stop.as_mut(), &mut stopping).await {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(()),
            Err(ConnError::BadMessage { name, seqid, reason }) => {
                // The stream position is lost: say why, then close.
                let text = format!("hs2-proxy: refused {name} request: {reason}");
                let _ = conn.write_message(&reply::protocol_error(&name, seqid, &text)).await;
                conn.release_budget();
                conn.close_after_refusal().await;
                return Err(End::Refused(text));
            }
            Err(ConnError::Idle(_)) if proxy.is_stopping() => return Err(End::Shutdown),
            Err(e) => return Err(e.into()),
        };
        let req = Request::scanned(bytes, &scanner).map_err(ConnError::from)?;
        drop(scanner); // its buffers go back now, for the reply's scanner
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
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    stopping: &mut bool,
) -> Result<Option<(bytes::Bytes, Scanner)>, ConnError> {
    if !*stopping {
        tokio::select! {
            biased;
            r = conn.read_request(read) => return r,
            _ = stop => *stopping = true,
        }
    }
    match tokio::time::timeout(STOP_LINGER, conn.read_request(read)).await {
        Ok(r) => r,
        Err(_) if conn.has_buffered_bytes() => conn.read_request(read).await,
        Err(_) => Err(ConnError::Idle(STOP_LINGER)),
    }
}
