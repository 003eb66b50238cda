//! The mock's answers to operation-level calls: status, fetch, metadata, cancel, close, and Impala's
//! GetLog, GetExecSummary, GetRuntimeProfile and CloseImpalaOperation (with DML row counts).
//!
//! An operation handle is valid when its guid is a live query and its secret is the session's secret; on
//! an authenticated connection the session must also belong to the connection's user. No socket I/O; a
//! fetch waits (without the lock) for a running `sleep()` to finish, as Impala blocks a fetch until rows
//! are ready.

use std::collections::BTreeMap;

use thrift::ApplicationErrorKind;

use super::calls::{answer, decode, encoded, operation_id, reply, session_id, Outcome};
use super::plan::{exec_summary, Plan};
use super::profile;
use super::rowset::{empty_log_rowset, no_rows_rowset};
use super::sql::Statement;
use super::state::{OpState, Operation};
use super::Inner;
use crate::hs2::rpc;
use crate::hs2::rpc::hs2::*;
use crate::hs2::rpc::impala::*;

/// `TFetchResultsReq.fetchType` asking for the operation log instead of rows.
const FETCH_TYPE_LOG: i16 = 1;
/// Impala's text for a fetch from a cancelled query.
const CANCELLED: &str = "Cancelled";

pub(super) async fn dispatch(inner: &Inner, user: Option<&str>, method: &str, args: &[u8]) -> Outcome {
    use rpc::*;
    match method {
        "GetOperationStatus" => {
            answer::<GetOperationStatus>(args, |req| with_op(inner, user, &req.operation_handle, |op| Ok(status(op))))
        }
        "CancelOperation" => answer::<CancelOperation>(args, |req| {
            with_op(inner, user, &req.operation_handle, |op| {
                if !matches!(op.state(), OpState::Failed(_)) {
                    op.state = OpState::Canceled;
                }
                Ok(TCancelOperationResp::new(rpc::ok()))
            })
        }),
        "CloseOperation" => answer::<CloseOperation>(args, |req| {
            close(inner, user, &req.operation_handle).map(|_| TCloseOperationResp::new(rpc::ok()))
        }),
        "CloseImpalaOperation" => answer::<CloseImpalaOperation>(args, |req| {
            let dml_rows = close(inner, user, &req.operation_handle)?;
            // impala-shell fails a DML statement whose close lacks `dml_result` ("did not return DML
            // statistics"): the rows per partition ("" when unpartitioned), so it prints "Modified N row(s)".
            let dml = dml_rows.map(|rows| {
                TDmlResult::new(BTreeMap::from([(String::new(), i64::try_from(rows).unwrap_or(i64::MAX))]))
            });
            Ok(TCloseImpalaOperationResp::new(rpc::ok(), dml))
        }),
        "GetResultSetMetadata" => answer::<GetResultSetMetadata>(args, |req| {
            with_op(inner, user, &req.operation_handle, |op| {
                let schema = op.results.as_ref().map(|r| r.schema()).unwrap_or_else(|| TTableSchema::new(vec![]));
                Ok(TGetResultSetMetadataResp::new(rpc::ok(), schema))
            })
        }),
        "FetchResults" => match decode::<FetchResults>(args) {
            Ok(req) => fetch(inner, user, req).await,
            Err(undecodable) => undecodable,
        },
        "GetLog" => answer::<GetLog>(args, |req| {
            with_op(inner, user, &req.operation_handle, |op| {
                let log = match op.state() {
                    OpState::Failed(e) => e.clone(),
                    _ => String::new(),
                };
                Ok(TGetLogResp::new(rpc::ok(), log))
            })
        }),
        "GetExecSummary" => answer::<GetExecSummary>(args, |req| {
            with_query(inner, user, req.operation_handle.as_ref(), req.session_handle.as_ref(), |op| {
                let plan = op.parsed.as_ref().and_then(Plan::for_statement);
                Ok(TGetExecSummaryResp::new(rpc::ok(), exec_summary(plan.as_ref(), op.state()), None))
            })
        }),
        "GetRuntimeProfile" => answer::<GetRuntimeProfile>(args, |req| {
            with_query(inner, user, req.operation_handle.as_ref(), req.session_handle.as_ref(), |op| {
                if req.format.is_some_and(|f| f != TRuntimeProfileFormat::STRING) {
                    return Err("mock impalad: only the STRING profile format is supported".to_string());
                }
                let text = profile::text(op, &inner.cfg.name);
                Ok(TGetRuntimeProfileResp::new(rpc::ok(), text, None, None, None))
            })
        }),
        _ => Outcome::Exception {
            kind: ApplicationErrorKind::UnknownMethod,
            message: format!("Invalid method name: '{method}'"),
        },
    }
}

/// Validates the operation `handle`, then answers with what `answer` builds.
fn with_op<R>(
    inner: &Inner,
    user: Option<&str>,
    handle: &TOperationHandle,
    answer: impl FnOnce(&mut Operation) -> Result<R, String>,
) -> Result<R, String> {
    answer(inner.state().operation_mut(operation_id(handle), user)?)
}

/// GetExecSummary and GetRuntimeProfile: validates `session` when present (impala-shell and Hue send it),
/// then finds the query `op` among the running ones or in the query log, as Impala does: `summary` and
/// `profile` come after the query was closed.
fn with_query<R>(
    inner: &Inner,
    user: Option<&str>,
    op: Option<&TOperationHandle>,
    session: Option<&TSessionHandle>,
    answer: impl FnOnce(&mut Operation) -> Result<R, String>,
) -> Result<R, String> {
    let mut st = inner.state();
    if let Some(session) = session.and_then(session_id) {
        st.session_mut(Some(session), user)?;
    }
    st.query_mut(op.and_then(operation_id), user).and_then(answer)
}

fn status(op: &mut Operation) -> TGetOperationStatusResp {
    let has_result_set = op.results.is_some();
    let (state, failure) = match op.state() {
        OpState::Running { .. } => (TOperationState::RUNNING_STATE, None),
        OpState::Finished => (TOperationState::FINISHED_STATE, None),
        OpState::Canceled => (TOperationState::CANCELED_STATE, None),
        OpState::Failed(e) => (TOperationState::ERROR_STATE, Some(e.clone())),
    };
    TGetOperationStatusResp {
        status: rpc::ok(),
        operation_state: Some(state),
        sql_state: failure.as_ref().map(|_| crate::hs2::reply::SQLSTATE_GENERAL_ERROR.to_string()),
        error_code: failure.as_ref().map(|_| 0),
        error_message: failure,
        task_status: None,
        operation_started: None,
        operation_completed: None,
        has_result_set: Some(has_result_set),
        progress_update_response: None,
        num_modified_rows: None,
    }
}

/// Closes the operation `handle`; the rows a DML statement wrote, if it was one.
fn close(inner: &Inner, user: Option<&str>, handle: &TOperationHandle) -> Result<Option<u64>, String> {
    let mut st = inner.state();
    let guid = st.operation_mut(operation_id(handle), user)?.id;
    Ok(match st.close_operation(&guid).and_then(|op| op.parsed.as_ref()) {
        Some(Statement::Dml { rows }) => Some(*rows),
        _ => None,
    })
}

async fn fetch(inner: &Inner, user: Option<&str>, req: TFetchResultsReq) -> Outcome {
    type M = rpc::FetchResults;
    let handle = operation_id(&req.operation_handle);
    let wait = match inner.state().operation_mut(handle, user) {
        Ok(op) => op.remaining(),
        Err(text) => return reply::<M>(Err(text)),
    };
    if let Some(d) = wait {
        tokio::time::sleep(d).await;
    }
    let asked = Some(req.max_rows).filter(|n| *n > 0).unwrap_or(inner.cfg.fetch_default_rows);
    let (batch, has_more, crash) = {
        let mut st = inner.state();
        // Looked up again: another connection may have closed the operation meanwhile.
        let op = match st.operation_mut(handle, user) {
            Ok(op) => op,
            Err(text) => return reply::<M>(Err(text)),
        };
        match op.state() {
            OpState::Failed(e) => return reply::<M>(Err(e.clone())),
            OpState::Canceled => return reply::<M>(Err(CANCELLED.to_string())),
            _ => {}
        }
        if req.fetch_type == Some(FETCH_TYPE_LOG) {
            return encoded(&rows_reply(false, empty_log_rowset()));
        }
        let crash = op.crash_on_fetch;
        let Some(results) = op.results.as_mut() else {
            return encoded(&rows_reply(false, no_rows_rowset()));
        };
        if req.orientation == TFetchOrientation::FETCH_FIRST {
            results.rewind();
        }
        let (batch, has_more) = results.take_batch(asked.max(1) as u64);
        op.rows_fetched += batch.rows();
        (batch, has_more, crash)
    };
    if let (true, Some(size)) = (inner.cfg.fast, batch.blob_size()) {
        let body = inner.prepared((batch.rows(), size, has_more), || {
            rpc::encode_result(&rows_reply(has_more, batch.encode_uniform())).unwrap_or_default()
        });
        if !body.is_empty() {
            return Outcome::Prepared(body);
        }
    }
    // Encoding is the costly part: it runs after the lock is released.
    match encoded(&rows_reply(has_more, batch.encode())) {
        Outcome::Reply(body) if crash => Outcome::Crash(body),
        outcome => outcome,
    }
}

fn rows_reply(has_more: bool, rowset: TRowSet) -> TFetchResultsResp {
    TFetchResultsResp::new(rpc::ok(), has_more, rowset)
}
