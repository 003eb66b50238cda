//! The mock's listener and per-connection task: handshake, read a request, answer it, repeat.
//!
//! A request that is not a well-formed Thrift call closes its connection with a log line; nothing a peer
//! sends can panic the mock.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::calls::{self, Outcome};
use super::{Inner, MockAuth};
use thrift::protocol::TMessageType;

use crate::conn::ThriftConn;
use crate::hs2::rpc;
use crate::kerberos::principal::ShortNames;
use crate::sasl::{self, Mechanism, SaslError};
use crate::thrift::framing::Framing;
use crate::thrift::Limits;

/// Largest SASL frame the mock reads (no request is larger than a message).
const MAX_FRAME_BYTES: u64 = Limits::REQUEST.max_message_bytes;

/// Serves until `stop` changes (it only ever changes to `true`).
pub(super) async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    // Connection tasks live in this set so that `stop` can drop every one of them, like a dead process.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    inner.accepted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(name = %inner.cfg.name, %peer, "accepted");
                    // Subscribed at accept: a later `drop_connections` reaches this connection.
                    let mut dropped = inner.drop_generation.subscribe();
                    let serving = serve(stream, inner.clone());
                    tasks.spawn(async move {
                        tokio::select! {
                            _ = serving => {}
                            _ = dropped.changed() => {}
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(name = %inner.cfg.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tasks.shutdown().await;
}

/// Counts an open connection for as long as it lives (also when its task is aborted).
struct Open(Arc<Inner>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(stream: TcpStream, inner: Arc<Inner>) {
    inner.connections.fetch_add(1, Ordering::Relaxed);
    let _open = Open(inner.clone());
    let _ = stream.set_nodelay(true);
    let name = inner.cfg.name.clone();
    let mut conn = ThriftConn::new(Box::new(stream), Framing::Unframed, MAX_FRAME_BYTES);
    let user = match &inner.cfg.auth {
        MockAuth::NoSasl => None,
        MockAuth::Plain { users } => match authenticate(&mut conn, users.as_deref()).await {
            Ok(user) => Some(user),
            Err(e) => {
                tracing::info!(%name, error = %e, "SASL handshake failed");
                return;
            }
        },
        MockAuth::Gssapi { .. } => match authenticate_gssapi(&mut conn, &inner).await {
            Ok(user) => Some(user),
            Err(e) => {
                tracing::info!(%name, error = %e, "SASL GSSAPI handshake failed");
                return;
            }
        },
    };
    if let Some(n) = inner.cfg.write_frame_bytes {
        conn.set_max_write_frame(n);
    }
    loop {
        let request = match conn.read_message(Limits::REQUEST).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%name, error = %e, "closing a connection after a bad request");
                return;
            }
        };
        let (bytes, keep_open) = match respond(&inner, user.as_deref(), &request).await {
            Some(answer) => answer,
            None => return,
        };
        if let Err(e) = conn.write_message(&bytes).await {
            tracing::debug!(%name, error = %e, "client went away");
            return;
        }
        if !keep_open {
            tracing::info!(%name, "crash(): dropped the connection mid-reply");
            conn.shutdown().await;
            return;
        }
    }
}

/// Server half of SASL PLAIN; returns the authenticated user.
async fn authenticate(conn: &mut ThriftConn, users: Option<&[(String, String)]>) -> Result<String, SaslError> {
    let creds = sasl::server_read_credentials(conn).await?;
    let known = users.is_none_or(|list| list.iter().any(|(u, p)| *u == creds.user && *p == creds.password));
    let verdict = if known { Ok(()) } else { Err(format!("Invalid username or password for user '{}'", creds.user)) };
    sasl::server_finish(conn, verdict, MAX_FRAME_BYTES).await?;
    Ok(creds.user)
}

/// Server half of SASL GSSAPI; returns the client principal's short name (impalad's default rule).
async fn authenticate_gssapi(conn: &mut ThriftConn, inner: &Inner) -> Result<String, SaslError> {
    let Some(acceptor) = inner.acceptor.as_ref() else {
        return Err(SaslError::Malformed("no Kerberos acceptor credentials".into()));
    };
    if let Mechanism::Plain(_) = sasl::server_read_start(conn, true).await? {
        // As an impalad with Kerberos only. server_finish sends BAD with the text.
        let text = "SASL mechanism PLAIN is not supported here (supported: GSSAPI)".to_string();
        sasl::server_finish(conn, Err(text.clone()), MAX_FRAME_BYTES).await?;
        return Err(SaslError::Refused(text));
    }
    let user = sasl::server_accept_gssapi(conn, acceptor, &ShortNames::default(), MAX_FRAME_BYTES).await?;
    tracing::debug!(principal = %user.principal, user = %user.short_name, ending = ?user.ending, "Kerberos login");
    let name = user.short_name.clone();
    super::lock(&inner.kerberos_logins).push(user);
    Ok(name)
}

/// The bytes to write for one request, and whether the connection stays open afterwards.
/// `None` closes the connection: the request was not a decodable call.
pub(super) async fn respond(inner: &Inner, user: Option<&str>, request: &[u8]) -> Option<(Vec<u8>, bool)> {
    let name = &inner.cfg.name;
    let (header, args) = match rpc::decode_header(request, &Limits::REQUEST) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%name, error = %e, "closing a connection after an undecodable request");
            return None;
        }
    };
    if header.message_type != TMessageType::Call {
        tracing::warn!(%name, kind = ?header.message_type, "closing a connection after a message that is not a call");
        return None;
    }
    inner.count_call(&header.name, request);
    if super::lock(&inner.hang_up_on).as_deref() == Some(header.name.as_str()) {
        tracing::info!(%name, method = %header.name, "fault injection: hanging up without a reply");
        return None;
    }
    inner.note_unknown_handles(&header.name, header.sequence_number, args);
    let delay = inner.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (method, seqid) = (header.name.as_str(), header.sequence_number);
    tracing::debug!(%name, method, seqid, "call");
    let with_header = |body: &[u8]| {
        rpc::encode_reply_header(method, seqid).map(|mut bytes| {
            bytes.extend_from_slice(body);
            bytes
        })
    };
    let answer = match calls::dispatch(inner, user, method, args).await {
        Outcome::Reply(body) => with_header(&body).map(|b| (b, true)),
        Outcome::Prepared(body) => with_header(&body).map(|b| (b, true)),
        Outcome::Exception { kind, message } => rpc::encode_exception(method, seqid, kind, &message).map(|b| (b, true)),
        Outcome::Crash(body) => with_header(&body).map(|mut b| {
            b.truncate(b.len() / 2);
            (b, false)
        }),
        Outcome::Undecodable(e) => {
            tracing::warn!(%name, error = %e, "closing a connection after a request with undecodable arguments");
            return None;
        }
    };
    match answer {
        Ok(answer) => Some(answer),
        Err(e) => {
            tracing::warn!(%name, error = %e, "closing a connection: the reply could not be encoded");
            None
        }
    }
}
