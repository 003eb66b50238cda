//! The operator's actions that reach a backend: close a session (CloseSession upstream, then forget it)
//! and cancel an operation (CancelOperation upstream). Calls go through the backend's pool, on a
//! connection of the session's own user: impalad checks that a connection's user owns the session.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::pool::Upstream;
use crate::backend::Backend;
use crate::config::BackendTransport;
use crate::hs2::handle::Guid;
use crate::hs2::requests;
use crate::routing::SESSION_GONE;
use crate::server::Proxy;
use crate::thrift::value::decode_message;
use crate::thrift::{Limits, MessageKind};

/// An action's call gets no more time than this, connection included.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an action waits for an idle connection of a SASL user whose password the proxy does not keep.
const IDLE_WAIT: Duration = Duration::from_secs(2);
/// Replies to CloseSession and CancelOperation are small.
const ACTION_LIMITS: Limits = Limits { max_message_bytes: 1 << 20, max_depth: 32, max_container_len: 4096 };

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    NotFound(String),
    /// Nothing was sent: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The backend refused the call or did not answer.
    #[error("{0}")]
    Backend(String),
}

/// Closes `guid` upstream and forgets it. A backend that no longer has it counts as closed.
pub async fn close_session(proxy: &Proxy, guid: Guid) -> Result<String, ActionError> {
    let found = proxy.routes.with_session(&guid, |e| (e.handle(guid), e.backend.clone(), e.user.clone()));
    let Some((handle, backend, user)) = found else {
        return Err(ActionError::NotFound(format!("no session {guid}")));
    };
    let reply = call(proxy, &backend, user.as_deref(), &requests::close_session(&handle, 1)).await?;
    match reply {
        Err(text) if !SESSION_GONE.iter().any(|p| text.contains(p)) => {
            return Err(ActionError::Backend(format!("{} refused CloseSession: {text}", backend.addr)));
        }
        _ => {}
    }
    if proxy.routes.forget_session(&guid).is_some() {
        tracing::info!(session = %guid, backend = %backend.addr, user = ?user, "session closed by the operator");
    }
    Ok(format!("session {guid} closed on {}", backend.addr))
}

/// Cancels operation `guid` upstream; its client still closes it.
pub async fn cancel_operation(proxy: &Proxy, guid: Guid) -> Result<String, ActionError> {
    let Some(target) = proxy.routes.operation_target(&guid) else {
        return Err(ActionError::NotFound(format!("no operation {guid}")));
    };
    let Some(handle) = target.handle else {
        return Err(ActionError::Unavailable(format!("the proxy does not know the secret of operation {guid}")));
    };
    let bytes = requests::cancel_operation(&handle, 1);
    match call(proxy, &target.backend, target.user.as_deref(), &bytes).await? {
        Ok(()) => {
            tracing::info!(operation = %guid, backend = %target.backend.addr, "operation cancelled by the operator");
            Ok(format!("operation {guid} cancelled on {}", target.backend.addr))
        }
        Err(text) => Err(ActionError::Backend(format!("{} refused CancelOperation: {text}", target.backend.addr))),
    }
}

/// One call on a pooled connection of `user`; `Ok(Err(text))` is the backend's error reply.
async fn call(
    proxy: &Proxy,
    backend: &Arc<Backend>,
    user: Option<&str>,
    bytes: &[u8],
) -> Result<Result<(), String>, ActionError> {
    let mut up = connection(proxy, backend, user).await?;
    let exchange = async {
        up.conn.write_message(bytes).await?;
        up.conn.read_message(ACTION_LIMITS).await
    };
    let reply = match tokio::time::timeout(ACTION_TIMEOUT, exchange).await {
        Ok(Ok(Some(reply))) => reply,
        Ok(Ok(None)) => return Err(discard(backend, up, "the backend closed the connection".into())),
        Ok(Err(e)) => return Err(discard(backend, up, e.to_string())),
        Err(_) => return Err(discard(backend, up, format!("no reply within {ACTION_TIMEOUT:?}"))),
    };
    backend.pool.checkin(up);
    let (header, body, _) = decode_message(&reply, &ACTION_LIMITS)
        .map_err(|e| ActionError::Backend(format!("{}: bad reply: {e}", backend.addr)))?;
    if header.kind == MessageKind::Exception {
        return Ok(Err(body.get_str(1).unwrap_or("exception").to_string()));
    }
    let status = body.get_struct(0).and_then(|r| r.get_struct(1));
    match status.and_then(|s| s.get_i64(1)) {
        Some(0) | Some(1) => Ok(Ok(())),
        _ => Ok(Err(status.and_then(|s| s.get_str(5)).unwrap_or("error").to_string())),
    }
}

fn discard(backend: &Backend, up: Upstream, error: String) -> ActionError {
    backend.pool.discard(up);
    ActionError::Backend(format!("{}: {error}", backend.addr))
}

/// A connection that may carry a call on `user`'s session. Over SASL the proxy keeps no client
/// passwords, so only an idle connection of that user will do (or the service user's own).
async fn connection(proxy: &Proxy, backend: &Backend, user: Option<&str>) -> Result<Upstream, ActionError> {
    let service = proxy.service_credentials();
    let own = match proxy.config.backend_transport {
        BackendTransport::Nosasl => true,
        BackendTransport::Sasl => user.is_none_or(|u| u == service.user),
    };
    if own {
        return backend.pool.checkout(&service).await.map_err(|e| ActionError::Unavailable(e.to_string()));
    }
    let deadline = tokio::time::Instant::now() + IDLE_WAIT;
    loop {
        if let Some(up) = backend.pool.checkout_idle_of(user) {
            return Ok(up);
        }
        if tokio::time::Instant::now() >= deadline {
            let who = user.unwrap_or_default();
            return Err(ActionError::Unavailable(format!(
                "no idle upstream connection of user {who:?} on {}; try again",
                backend.addr
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
