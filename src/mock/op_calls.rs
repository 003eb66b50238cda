//! The mock's answers to operation-level calls: status, fetch, metadata, cancel, close, and Impala's
//! GetLog, GetExecSummary, GetRuntimeProfile and CloseImpalaOperation (with DML row counts).
//!
//! An operation handle is valid when its guid is a live query and its secret is the session's secret; on
//! an authenticated connection the session must also belong to the connection's user. No socket I/O; a
//! fetch waits (without the lock) for a running `sleep()` to finish, as Impala blocks a fetch until rows
//! are ready.

use super::calls::{failure, handle_at, ok, Outcome};
use super::plan::{exec_summary, Plan};
use super::profile;
use super::rowset::{empty_log_rowset, no_rows_rowset};
use super::sql::Statement;
use super::state::{OpState, Operation};
use super::Inner;
use crate::hs2::idl::enums::t_application_exception_type::UNKNOWN_METHOD as APP_UNKNOWN_METHOD;
use crate::hs2client::wire::op_state;
use crate::thrift::value::{encode_struct_bytes, Struct, Value};
use crate::thrift::TType;

/// `TFetchOrientation.FETCH_FIRST`: start the result set over.
const FETCH_FIRST: i64 = 4;
/// `TFetchResultsReq.fetchType` asking for the operation log instead of rows.
const FETCH_TYPE_LOG: i64 = 1;
/// `TRuntimeProfileFormat.STRING`, the only profile format the mock writes.
const PROFILE_FORMAT_STRING: i64 = 0;
/// Impala's text for a fetch from a cancelled query.
const CANCELLED: &str = "Cancelled";

pub(super) async fn dispatch(inner: &Inner, user: Option<&str>, method: &str, req: &Struct) -> Outcome {
    match method {
        "GetOperationStatus" => status(inner, user, req),
        "CancelOperation" => with_op(inner, user, method, req, |op| {
            if !matches!(op.state(), OpState::Failed(_)) {
                op.state = OpState::Canceled;
            }
            Struct::new().with(1, ok())
        }),
        "CloseOperation" | "CloseImpalaOperation" => close(inner, user, method, req),
        "GetResultSetMetadata" => with_op(inner, user, method, req, |op| {
            let schema = match &op.results {
                Some(r) => r.schema(),
                None => Struct::new().with(1, Value::List(TType::Struct, vec![])).into_value(),
            };
            Struct::new().with(1, ok()).with(2, schema)
        }),
        "FetchResults" => fetch(inner, user, req).await,
        "GetLog" => with_op(inner, user, method, req, |op| {
            let log = match op.state() {
                OpState::Failed(e) => e.clone(),
                _ => String::new(),
            };
            Struct::new().with(1, ok()).with(2, Value::string(&log))
        }),
        "GetExecSummary" => with_query(inner, user, method, req, |op| {
            let plan = op.parsed.as_ref().and_then(Plan::for_statement);
            let summary = exec_summary(plan.as_ref(), op.state());
            Ok(Struct::new().with(1, ok()).with(2, summary))
        }),
        "GetRuntimeProfile" => with_query(inner, user, method, req, |op| {
            if req.get_i64(3).is_some_and(|f| f != PROFILE_FORMAT_STRING) {
                return Err("mock impalad: only the STRING profile format is supported".to_string());
            }
            Ok(Struct::new().with(1, ok()).with(2, Value::string(&profile::text(op, &inner.cfg.name))))
        }),
        _ => Outcome::Exception { kind: APP_UNKNOWN_METHOD, message: format!("Invalid method name: '{method}'") },
    }
}

/// Validates the operation in `req.1`, then answers with what `answer` builds.
fn with_op(
    inner: &Inner,
    user: Option<&str>,
    method: &str,
    req: &Struct,
    answer: impl FnOnce(&mut Operation) -> Struct,
) -> Outcome {
    match inner.state().operation_mut(handle_at(req, 1), user) {
        Ok(op) => Outcome::Reply(answer(op)),
        Err(text) => failure(method, &text),
    }
}

/// GetExecSummary and GetRuntimeProfile: validates the session in `req.2` (impala-shell and Hue send it),
/// then finds the query in `req.1` among the running ones or in the query log, as Impala does: `summary`
/// and `profile` come after the query was closed.
fn with_query(
    inner: &Inner,
    user: Option<&str>,
    method: &str,
    req: &Struct,
    answer: impl FnOnce(&mut Operation) -> Result<Struct, String>,
) -> Outcome {
    let mut st = inner.state();
    if let Some(session) = handle_at(req, 2) {
        if let Err(text) = st.session_mut(Some(session), user).map(drop) {
            return failure(method, &text);
        }
    }
    match st.query_mut(handle_at(req, 1), user).and_then(answer) {
        Ok(resp) => Outcome::Reply(resp),
        Err(text) => failure(method, &text),
    }
}

fn status(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    with_op(inner, user, "GetOperationStatus", req, |op| {
        let has_result_set = op.results.is_some();
        let resp = Struct::new().with(1, ok());
        let resp = match op.state() {
            OpState::Running { .. } => resp.with(2, Value::I32(op_state::RUNNING_STATE)),
            OpState::Finished => resp.with(2, Value::I32(op_state::FINISHED_STATE)),
            OpState::Canceled => resp.with(2, Value::I32(op_state::CANCELED_STATE)),
            OpState::Failed(e) => resp
                .with(2, Value::I32(op_state::ERROR_STATE))
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
        Ok(op) => op.id,
        Err(text) => return failure(method, &text),
    };
    let dml_rows = match st.close_operation(&guid).and_then(|op| op.parsed.as_ref()) {
        Some(Statement::Dml { rows }) => Some(*rows),
        _ => None,
    };
    let resp = Struct::new().with(1, ok());
    match dml_rows {
        // impala-shell fails a DML statement whose close lacks `dml_result` ("did not return DML statistics").
        // TDmlResult {1: map<string, i64> rows_modified}, per partition ("" when unpartitioned); the optional
        // row errors (Kudu only) are left out, so the shell prints "Modified N row(s)" as for an HDFS table.
        Some(rows) if method == "CloseImpalaOperation" => {
            let rows = i64::try_from(rows).unwrap_or(i64::MAX);
            let modified = Value::Map(TType::String, TType::I64, vec![(Value::string(""), Value::I64(rows))]);
            let dml = Struct::new().with(1, modified);
            Outcome::Reply(resp.with(2, dml.into_value()))
        }
        _ => Outcome::Reply(resp),
    }
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
        op.rows_fetched += batch.rows();
        (batch, has_more, crash)
    };
    if let (true, Some(size)) = (inner.cfg.fast, batch.blob_size()) {
        let body = inner.prepared((batch.rows(), size, has_more), || {
            let resp = rows_reply(has_more, batch.encode_uniform());
            encode_struct_bytes(&Struct::new().with(0, resp.into_value()))
        });
        return Outcome::Prepared(body);
    }
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
