//! Moving a live session to another backend: for an evacuation (a rolling restart) and when its backend
//! died (`sessions.move_on_failure`).
//!
//! The session is opened again on the target with the OpenSession the proxy sent for it (its
//! configuration: query options, delegation), with the same credentials, and its replayable statements
//! (`USE`, `SET`, ...; see `hs2::session_state`) are run again in order, each checked. Only when every
//! step succeeded does the session switch over (`routing::moves`): the client keeps its handle, which the
//! proxy rewrites to the new one in every request. A move that fails in any step leaves the session where
//! it was (the half-opened session on the target is closed). No statement that changes data is ever
//! replayed, and no query is run again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::pool::Checkout;
use crate::backend::{probe, Backend};
use crate::conn::ThriftConn;
use crate::hs2::handle::{Guid, HandleId};
use crate::hs2::idl::enums::t_operation_state as state;
use crate::hs2::idl::fields::{t_execute_statement_resp, t_get_operation_status_resp};
use crate::hs2::open_session::with_delegation;
use crate::hs2::reply::Answer;
use crate::hs2::requests;
use crate::proxy::Proxy;
use crate::routing::{MovePlan, NotNow};

/// How long one replayed statement may run before the move gives up.
const STATEMENT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest one call of a move may wait for its answer (less when `timeouts.backend_reply` is shorter): a
/// target that accepted the connection and then hangs must not hold the session, and a client's call
/// waiting for the move, for ever.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Polling a replayed statement's state: start fast, back off to this.
const POLL_MAX: Duration = Duration::from_millis(100);

/// Why a session moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its backend is being evacuated (`hs2-proxy evacuate`).
    Evacuation,
    /// Its backend went down.
    Failure,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Evacuation => "evacuation",
            Reason::Failure => "failure",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("cannot move now: {0}")]
    NotNow(#[from] NotNow),
    #[error("no other backend takes new sessions")]
    NoTarget,
    #[error("opening the session on {backend} failed: {error}")]
    Open { backend: String, error: String },
    #[error("replaying `{statement}` on {backend} failed: {error}")]
    Replay { backend: String, statement: String, error: String },
}

/// A finished move.
#[derive(Debug)]
pub struct Moved {
    pub from: String,
    pub to: String,
    pub took: Duration,
}

/// Moves session `guid` to the least-loaded other backend that takes new sessions.
pub async fn move_session(proxy: &Proxy, guid: Guid, reason: Reason) -> Result<Moved, MoveError> {
    let started = Instant::now();
    let plan = proxy.begin_move(&guid, reason == Reason::Failure)?;
    let from = proxy.backend(plan.from).map(|b| b.addr.clone()).unwrap_or_default();
    match reopen(proxy, &plan).await {
        Ok((target, new, conn)) => {
            proxy.finish_move(&plan, target.id, new, conn.id());
            conn.release();
            let took = started.elapsed();
            proxy.metrics().session_moved(&from, &target.addr, reason.label(), "moved", took);
            tracing::info!(session = %guid, from = %from, to = %target.addr, reason = reason.label(), took = ?took,
                "session moved");
            if reason == Reason::Evacuation {
                close_old(proxy, &plan).await;
            }
            Ok(Moved { from, to: target.addr.clone(), took })
        }
        Err(e) => {
            proxy.abort_move(&guid);
            proxy.metrics().session_moved(&from, "none", reason.label(), "failed", started.elapsed());
            tracing::warn!(session = %guid, from = %from, reason = reason.label(), error = %e,
                "session move failed: it stays where it was");
            Err(e)
        }
    }
}

/// Opens the session again on a target and replays its state; returns the target, the new handle and the
/// connection that opened it (to pin). Targets are tried in order of preference until one takes the
/// session with its whole state: one that refuses the OpenSession or a replayed statement (a database
/// it lacks, a limit of sessions per user) is no reason to leave the session where it is.
async fn reopen(proxy: &Proxy, plan: &MovePlan) -> Result<(Arc<Backend>, HandleId, Checkout), MoveError> {
    let mut last = None;
    for target in proxy.preference().into_iter().filter(|b| b.id != plan.from) {
        match reopen_on(proxy, &target, plan).await {
            Ok((new, conn)) => return Ok((target, new, conn)),
            Err(e) => {
                tracing::debug!(session = %plan.guid, target = %target.addr, error = %e, "target refused the session");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(MoveError::NoTarget))
}

/// One target: OpenSession and every replayed statement; the half-opened session is closed on failure.
async fn reopen_on(proxy: &Proxy, target: &Backend, plan: &MovePlan) -> Result<(HandleId, Checkout), MoveError> {
    let mut conn = target
        .pool
        .checkout(&plan.origin.creds)
        .await
        .map_err(|e| MoveError::Open { backend: target.addr.clone(), error: e.to_string() })?;
    let limit = proxy.config().timeouts.backend_reply.min(CALL_DEADLINE);
    let new = open_on(proxy, target, conn.conn(), plan, limit).await?;
    for statement in &plan.statements {
        if let Err(error) = replay(conn.conn(), &new, statement, limit).await {
            let _ = call_within(conn.conn(), &requests::close_session(&new, 0), limit).await;
            return Err(MoveError::Replay { backend: target.addr.clone(), statement: statement.clone(), error });
        }
    }
    Ok((new, conn))
}

/// OpenSession on `target` as the proxy first sent it, with the delegation key of the target's kind.
async fn open_on(
    proxy: &Proxy,
    target: &Backend,
    conn: &mut ThriftConn,
    plan: &MovePlan,
    limit: Duration,
) -> Result<HandleId, MoveError> {
    let failed = |error: String| MoveError::Open { backend: target.addr.clone(), error };
    let request = match &plan.origin.delegate_as {
        None => plan.origin.open_request.to_vec(),
        Some(user) => {
            let keys = target.delegation_keys(proxy.config().kerberos.as_ref().and_then(|k| k.delegation));
            let limits = proxy.config().limits.request;
            with_delegation(&plan.origin.open_request, &limits, keys, user).map_err(|e| failed(e.to_string()))?
        }
    };
    match call_within(conn, &request, limit).await.map_err(failed)? {
        Answer::Ok(resp) => requests::read_session_handle(&resp).ok_or_else(|| failed("no session handle".into())),
        Answer::Error(text) | Answer::Exception(text) => Err(failed(text)),
    }
}

/// Runs one statement on the new session and waits for it to finish.
async fn replay(conn: &mut ThriftConn, session: &HandleId, statement: &str, limit: Duration) -> Result<(), String> {
    let resp = match call_within(conn, &requests::execute_statement(session, statement, 1), limit).await? {
        Answer::Ok(resp) => resp,
        Answer::Error(text) | Answer::Exception(text) => return Err(text),
    };
    let Some(op) = resp.get(t_execute_statement_resp::OPERATION_HANDLE).cloned() else { return Ok(()) };
    let deadline = Instant::now() + STATEMENT_DEADLINE;
    let mut pause = Duration::from_millis(1);
    let outcome = loop {
        let status = match call_within(conn, &requests::get_operation_status_value(op.clone(), 2), limit).await? {
            Answer::Ok(s) => s,
            Answer::Error(text) | Answer::Exception(text) => break Err(text),
        };
        let code = status.get_i64(t_get_operation_status_resp::OPERATION_STATE).unwrap_or(-1);
        if code == i64::from(state::FINISHED_STATE) {
            break Ok(());
        }
        let done = [
            state::CANCELED_STATE,
            state::CLOSED_STATE,
            state::ERROR_STATE,
            state::UKNOWN_STATE,
            state::TIMEDOUT_STATE,
        ];
        if done.iter().any(|s| i64::from(*s) == code) {
            let text = status.get_str(t_get_operation_status_resp::ERROR_MESSAGE).unwrap_or("it did not finish");
            break Err(text.to_string());
        }
        if Instant::now() > deadline {
            break Err(format!("not finished within {STATEMENT_DEADLINE:?}"));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    };
    call_within(conn, &requests::close_operation_value(op, 3), limit).await?;
    outcome
}

/// One call of a move, bounded by `limit`.
async fn call_within(conn: &mut ThriftConn, bytes: &[u8], limit: Duration) -> Result<Answer, String> {
    match tokio::time::timeout(limit, probe::call(conn, bytes)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Closes the session on the backend it left (best effort: it expires there anyway).
async fn close_old(proxy: &Proxy, plan: &MovePlan) {
    let Some(from) = proxy.backend(plan.from) else { return };
    let Ok(mut conn) = from.pool.checkout(&plan.origin.creds).await else { return };
    let closed = tokio::time::timeout(
        proxy.config().pool.connect_timeout,
        probe::call(conn.conn(), &requests::close_session(&plan.old, 0)),
    )
    .await;
    if let Ok(Ok(_)) = closed {
        conn.release();
    }
}
