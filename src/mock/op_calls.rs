//! The mock's answers to operation-level calls: status, fetch, metadata, cancel, close, and Impala's
//! GetLog, GetExecSummary, GetRuntimeProfile and CloseImpalaOperation.
//!
//! An operation handle is valid when its guid is a live query and its secret is the session's secret; on
//! an authenticated connection the session must also belong to the connection's user. No socket I/O; a
//! fetch waits (without the lock) for a running `sleep()` to finish, as Impala blocks a fetch until rows
//! are ready.

use super::calls::{failure, handle_at, ok, Outcome};
use super::rowset::{empty_log_rowset, no_rows_rowset};
use super::state::{OpState, Operation, Session};
use super::{Inner, MOCK_VERSION};
use crate::hs2::reply::APP_UNKNOWN_METHOD;
use crate::hs2client::wire::op_state;
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

/// `TFetchOrientation.FETCH_FIRST`: start the result set over.
const FETCH_FIRST: i64 = 4;
/// `TFetchResultsReq.fetchType` asking for the operation log instead of rows.
const FETCH_TYPE_LOG: i64 = 1;
/// Impala's text for a fetch from a cancelled query.
const CANCELLED: &str = "Cancelled";

pub(super) async fn dispatch(inner: &Inner, user: Option<&str>, method: &str, req: &Struct) -> Outcome {
    match method {
        "GetOperationStatus" => status(inner, user, req),
        "CancelOperation" => with_op(inner, user, method, req, |op, _| {
            if !matches!(op.state(), OpState::Failed(_)) {
                op.state = OpState::Canceled;
            }
            Struct::new().with(1, ok())
        }),
        "CloseOperation" | "CloseImpalaOperation" => close(inner, user, method, req),
        "GetResultSetMetadata" => with_op(inner, user, method, req, |op, _| {
            let schema = match &op.results {
                Some(r) => r.schema(),
                None => Struct::new().with(1, Value::List(TType::Struct, vec![])).into_value(),
            };
            Struct::new().with(1, ok()).with(2, schema)
        }),
        "FetchResults" => fetch(inner, user, req).await,
        "GetLog" => with_op(inner, user, method, req, |op, _| {
            let log = match op.state() {
                OpState::Failed(e) => e.clone(),
                _ => String::new(),
            };
            Struct::new().with(1, ok()).with(2, Value::string(&log))
        }),
        // The real TExecSummary has required fields our IDL does not declare: leave the optional out.
        "GetExecSummary" => with_op(inner, user, method, req, |_, _| Struct::new().with(1, ok())),
        "GetRuntimeProfile" => with_op(inner, user, method, req, |op, session| {
            let text = profile(op, session, &inner.cfg.name);
            Struct::new().with(1, ok()).with(2, Value::string(&text))
        }),
        _ => Outcome::Exception { kind: APP_UNKNOWN_METHOD, message: format!("Invalid method name: '{method}'") },
    }
}

/// Validates the operation in `req.1` (and the session in `req.2`, which Impala's GetExecSummary and
/// GetRuntimeProfile accept too), then answers with what `answer` builds.
fn with_op(
    inner: &Inner,
    user: Option<&str>,
    method: &str,
    req: &Struct,
    answer: impl FnOnce(&mut Operation, Option<&Session>) -> Struct,
) -> Outcome {
    let mut st = inner.state();
    if let Some(session) = handle_at(req, 2) {
        if let Err(text) = st.session_mut(Some(session), user).map(drop) {
            return failure(method, &text);
        }
    }
    let session_guid = match st.operation_mut(handle_at(req, 1), user) {
        Ok(op) => op.session,
        Err(text) => return failure(method, &text),
    };
    // Split borrows: the answer may read the session while it changes the operation.
    let state = &mut *st;
    let session = state.sessions.get(&session_guid);
    match handle_at(req, 1).and_then(|h| state.ops.get_mut(&h.guid)) {
        Some(op) => Outcome::Reply(answer(op, session)),
        None => failure(method, "internal error: operation vanished"),
    }
}

fn status(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    with_op(inner, user, "GetOperationStatus", req, |op, _| {
        let has_result_set = op.results.is_some();
        let resp = Struct::new().with(1, ok());
        let resp = match op.state() {
            OpState::Running { .. } => resp.with(2, Value::I32(op_state::RUNNING)),
            OpState::Finished => resp.with(2, Value::I32(op_state::FINISHED)),
            OpState::Canceled => resp.with(2, Value::I32(op_state::CANCELED)),
            OpState::Failed(e) => resp
                .with(2, Value::I32(op_state::ERROR))
                .with(3, Value::string(crate::hs2::reply::SQLSTATE_GENERAL_ERROR))
                .with(4, Value::I32(0))
                .with(5, Value::string(e)),
        };
        resp.with(9, Value::Bool(has_result_set))
    })
}

fn close(inner: &Inner, user: Option<&str>, method: &str, req: &Struct) -> Outcome {
    let mut st = inner.state();
    let guid = match st.operation_mut(handle_at(req, 1), user) {
        Ok(_) => handle_at(req, 1).map(|h| h.guid),
        Err(text) => return failure(method, &text),
    };
    if let Some(g) = guid {
        st.ops.remove(&g);
    }
    // CloseImpalaOperation's dml_result is optional: a query without DML leaves it out, as here.
    Outcome::Reply(Struct::new().with(1, ok()))
}

async fn fetch(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    const M: &str = "FetchResults";
    let handle = handle_at(req, 1);
    let wait = match inner.state().operation_mut(handle, user) {
        Ok(op) => op.remaining(),
        Err(text) => return failure(M, &text),
    };
    if let Some(d) = wait {
        tokio::time::sleep(d).await;
    }
    let asked = req.get_i64(3).filter(|n| *n > 0).unwrap_or(inner.cfg.fetch_default_rows);
    let (batch, has_more, crash) = {
        let mut st = inner.state();
        // Looked up again: another connection may have closed the operation meanwhile.
        let op = match st.operation_mut(handle, user) {
            Ok(op) => op,
            Err(text) => return failure(M, &text),
        };
        match op.state() {
            OpState::Failed(e) => return failure(M, &e.clone()),
            OpState::Canceled => return failure(M, CANCELLED),
            _ => {}
        }
        if req.get_i64(4) == Some(FETCH_TYPE_LOG) {
            return Outcome::Reply(rows_reply(false, empty_log_rowset()));
        }
        let crash = op.crash_on_fetch;
        let Some(results) = op.results.as_mut() else {
            return Outcome::Reply(rows_reply(false, no_rows_rowset()));
        };
        if req.get_i64(2) == Some(FETCH_FIRST) {
            results.rewind();
        }
        let (batch, has_more) = results.take_batch(asked.max(1) as u64);
        (batch, has_more, crash)
    };
    // Encoding is the costly part: it runs after the lock is released.
    let resp = rows_reply(has_more, batch.encode());
    if crash {
        Outcome::Crash(resp)
    } else {
        Outcome::Reply(resp)
    }
}

fn rows_reply(has_more: bool, rowset: Value) -> Struct {
    Struct::new().with(1, ok()).with(2, Value::Bool(has_more)).with(3, rowset)
}

/// A short text profile in the shape of Impala's (the first line is what tools parse for the query id).
fn profile(op: &mut Operation, session: Option<&Session>, host: &str) -> String {
    let state = match op.state() {
        OpState::Running { .. } => "RUNNING",
        OpState::Finished => "FINISHED",
        OpState::Canceled => "CANCELLED",
        OpState::Failed(_) => "EXCEPTION",
    };
    let (user, db) = session.map(|s| (s.user.as_str(), s.database.as_str())).unwrap_or(("", "default"));
    let query_id = op.id.impala_id();
    format!(
        "Query (id={query_id}):\n  Summary:\n    Session ID: {}\n    Session Type: HIVESERVER2\n    \
         Query Type: QUERY\n    Query State: {state}\n    Impala Version: impalad version {MOCK_VERSION} RELEASE\n    \
         User: {user}\n    Default Db: {db}\n    Sql Statement: {}\n    Coordinator: {host}:27000\n",
        op.session.impala_id(),
        op.statement,
    )
}
