//! The operator's actions that reach a backend: close a session (CloseSession upstream, then forget it)
//! and cancel an operation (CancelOperation upstream). Calls go through the backend's pool, on a
//! connection of the session's own user: impalad checks that a connection's user owns the session.

use std::time::Duration;

use crate::backend::pool::Checkout;
use crate::backend::probe;
use crate::backend::Backend;
use crate::config::BackendTransport;
use crate::hs2::handle::Guid;
use crate::hs2::reply::Answer;
use crate::hs2::requests;
use crate::proxy::Proxy;
use crate::routing::SESSION_GONE;

/// An action's call gets no more time than this, connection included.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an action waits for an idle connection of a SASL user whose password the proxy does not keep.
const IDLE_WAIT: Duration = Duration::from_secs(2);

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
    // The handle the backend knows: a moved session's differs from the client's (which the backend
    // would answer with "Invalid session id", taken here for closed, and the session left open).
    let found =
        proxy.with_session(&guid, |e| (e.upstream_handle(guid), e.backend, e.carrier.clone(), e.users.user.clone()));
    let Some((handle, backend, carrier, user)) = found else {
        return Err(ActionError::NotFound(format!("no session {guid}")));
    };
    let backend = proxy.backend(backend).ok_or_else(|| ActionError::NotFound(format!("no backend for {guid}")))?;
    match call(proxy, &backend, carrier.as_deref(), &requests::close_session(&handle, 1)).await? {
        Answer::Error(text) | Answer::Exception(text) if !SESSION_GONE.iter().any(|p| text.contains(p)) => {
            return Err(ActionError::Backend(format!("{} refused CloseSession: {text}", backend.addr)));
        }
        _ => {}
    }
    if proxy.forget_session(&guid).is_some() {
        tracing::info!(session = %guid, backend = %backend.addr, user = %crate::routing::LogName(user.as_deref()), "session closed by the operator");
    }
    Ok(format!("session {guid} closed on {}", backend.addr))
}

/// Cancels operation `guid` upstream; its client still closes it.
pub async fn cancel_operation(proxy: &Proxy, guid: Guid) -> Result<String, ActionError> {
    let Some(target) = proxy.operation_target(&guid) else {
        return Err(ActionError::NotFound(format!("no operation {guid}")));
    };
    let backend =
        proxy.backend(target.backend).ok_or_else(|| ActionError::NotFound(format!("no backend for {guid}")))?;
    let bytes = requests::cancel_operation(&target.handle, 1);
    match call(proxy, &backend, target.carrier.as_deref(), &bytes).await? {
        Answer::Ok(_) => {
            tracing::info!(operation = %guid, backend = %backend.addr, "operation cancelled by the operator");
            Ok(format!("operation {guid} cancelled on {}", backend.addr))
        }
        Answer::Error(text) | Answer::Exception(text) => {
            Err(ActionError::Backend(format!("{} refused CancelOperation: {text}", backend.addr)))
        }
    }
}

/// One call on a pooled connection of `carrier`, the pool user of the session.
async fn call(proxy: &Proxy, backend: &Backend, carrier: Option<&str>, bytes: &[u8]) -> Result<Answer, ActionError> {
    let mut up = connection(proxy, backend, carrier).await?;
    let answer = tokio::time::timeout(ACTION_TIMEOUT, probe::call(up.conn(), bytes)).await;
    match answer {
        Ok(Ok(answer)) => {
            up.release();
            Ok(answer)
        }
        // Dropping the checkout closes the connection: its state is unknown.
        Ok(Err(e)) => Err(ActionError::Backend(format!("{}: {e}", backend.addr))),
        Err(_) => Err(ActionError::Backend(format!("{}: no reply within {ACTION_TIMEOUT:?}", backend.addr))),
    }
}

/// A connection that may carry a call on a session of `carrier`. The proxy keeps no client passwords,
/// so for a client's own credentials only an idle connection of that user will do; connections of the
/// service user (or the proxy's own identity) it can open.
async fn connection(proxy: &Proxy, backend: &Backend, carrier: Option<&str>) -> Result<Checkout, ActionError> {
    let service = proxy.service_credentials();
    let own =
        carrier.is_none_or(|u| u == service.user) || proxy.config().backend_auth.transport != BackendTransport::Sasl;
    if own {
        let checkout = tokio::time::timeout(ACTION_TIMEOUT, backend.pool.checkout(&service)).await;
        return match checkout {
            Ok(r) => r.map_err(|e| ActionError::Unavailable(e.to_string())),
            Err(_) => {
                Err(ActionError::Unavailable(format!("no connection to {} within {ACTION_TIMEOUT:?}", backend.addr)))
            }
        };
    }
    let deadline = tokio::time::Instant::now() + IDLE_WAIT;
    loop {
        if let Some(up) = backend.pool.checkout_idle_of(carrier) {
            return Ok(up);
        }
        if tokio::time::Instant::now() >= deadline {
            let who = carrier.unwrap_or_default();
            return Err(ActionError::Unavailable(format!(
                "no idle upstream connection of user {who:?} on {}; try again",
                backend.addr
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
