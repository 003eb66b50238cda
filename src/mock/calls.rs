//! The mock's dispatch on the method name, and its answers to session-level calls.
//!
//! Requests are decoded and responses encoded by Apache Thrift's generated types ([`crate::hs2::rpc`]),
//! never by the proxy's own codec. Every answer follows Impala: the draining check comes first where Impala
//! has it, then the session check, then the work. Errors are `TStatus` ERROR replies with every required
//! field present, so strict (Java) clients can read them. No socket I/O; a synchronous `sleep()` waits
//! here, without the lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use thrift::protocol::TSerializable;
use thrift::ApplicationErrorKind;

use super::op_calls;
use super::rowset::ResultSet;
use super::sql::{self, Statement};
use super::state::{OpState, Operation, Session, State};
use super::{Inner, MOCK_VERSION};
use crate::hs2::handle::HandleId;
use crate::hs2::rpc::hs2::*;
use crate::hs2::rpc::impala::*;
use crate::hs2::rpc::{self, Method, Response};
use crate::hs2client::OpHandle;
use crate::kerberos::delegation::IMPALA_DOAS_KEY;
use crate::thrift::Limits;

/// The protocol the mock speaks: the newest Impala speaks, the first with columnar rows.
const PROTOCOL_V6: TProtocolVersion = TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6;

/// What to send back for one call.
pub(super) enum Outcome {
    /// A reply's body: the encoded `result { 0: response }`.
    Reply(Vec<u8>),
    /// A `TApplicationException` (e.g. an unknown method).
    Exception { kind: ApplicationErrorKind, message: String },
    /// Fault injection: write the first half of this reply body's message, then drop the connection.
    Crash(Vec<u8>),
    /// Fast mode: an encoded `result` body, prepared once, sent after a fresh header.
    Prepared(std::sync::Arc<Vec<u8>>),
    /// The request's arguments are not the method's (a required field missing, a wrong type): like
    /// impalad's Thrift server, the mock closes the connection.
    Undecodable(String),
}

/// A metadata call (GetTables ...): every request holds its session in `sessionHandle`, every response is
/// `{status, operationHandle}`.
macro_rules! metadata_call {
    ($m:ident, $resp:ident, $inner:expr, $user:expr, $args:expr) => {
        answer::<rpc::$m>($args, |req| {
            metadata($inner, $user, stringify!($m), &req.session_handle).map(|op| $resp::new(rpc::ok(), op.thrift()))
        })
    };
}

pub(super) async fn dispatch(inner: &Inner, user: Option<&str>, method: &str, args: &[u8]) -> Outcome {
    use rpc::*;
    match method {
        "OpenSession" => answer::<OpenSession>(args, |req| open_session(inner, user, req)),
        "CloseSession" => answer::<CloseSession>(args, |req| close_session(inner, user, &req.session_handle)),
        "GetInfo" => answer::<GetInfo>(args, |req| get_info(inner, user, req)),
        "ExecuteStatement" => match decode::<ExecuteStatement>(args) {
            Ok(req) => reply::<ExecuteStatement>(execute(inner, user, req).await),
            Err(undecodable) => undecodable,
        },
        "GetTypeInfo" => metadata_call!(GetTypeInfo, TGetTypeInfoResp, inner, user, args),
        "GetCatalogs" => metadata_call!(GetCatalogs, TGetCatalogsResp, inner, user, args),
        "GetSchemas" => metadata_call!(GetSchemas, TGetSchemasResp, inner, user, args),
        "GetTables" => metadata_call!(GetTables, TGetTablesResp, inner, user, args),
        "GetTableTypes" => metadata_call!(GetTableTypes, TGetTableTypesResp, inner, user, args),
        "GetColumns" => metadata_call!(GetColumns, TGetColumnsResp, inner, user, args),
        "GetFunctions" => metadata_call!(GetFunctions, TGetFunctionsResp, inner, user, args),
        "GetPrimaryKeys" => metadata_call!(GetPrimaryKeys, TGetPrimaryKeysResp, inner, user, args),
        "GetCrossReference" => metadata_call!(GetCrossReference, TGetCrossReferenceResp, inner, user, args),
        "PingImpalaHS2Service" => answer::<PingImpalaHS2Service>(args, |req| ping(inner, user, &req.session_handle)),
        "GetBackendConfig" => answer::<GetBackendConfig>(args, |req| {
            // The real TBackendGflags is large; our IDL declares it opaque and empty.
            check_session(inner, user, &req.session_handle)
                .map(|()| TGetBackendConfigResp::new(rpc::ok(), TBackendGflags::new()))
        }),
        "GetExecutorMembership" => answer::<GetExecutorMembership>(args, |req| {
            check_session(inner, user, &req.session_handle)?;
            let set = |s: &str| [s.to_string()].into_iter().collect();
            let membership = TUpdateExecutorMembershipRequest::new(set(&inner.cfg.name), set("127.0.0.1"), None);
            Ok(TGetExecutorMembershipResp::new(rpc::ok(), membership))
        }),
        // Impala answers these with an error status rather than an unknown method.
        "GetDelegationToken" => answer::<GetDelegationToken>(args, |_| Err(NOT_IMPLEMENTED.into())),
        "CancelDelegationToken" => answer::<CancelDelegationToken>(args, |_| Err(NOT_IMPLEMENTED.into())),
        "RenewDelegationToken" => answer::<RenewDelegationToken>(args, |_| Err(NOT_IMPLEMENTED.into())),
        _ => op_calls::dispatch(inner, user, method, args).await,
    }
}

/// Impala's text for a call it has but does not serve.
const NOT_IMPLEMENTED: &str = "Not implemented";

/// `M`'s request from `args`, or the outcome of arguments that are not `M`'s.
pub(super) fn decode<M: Method>(args: &[u8]) -> Result<M::Req, Outcome> {
    rpc::decode_args(args, &Limits::REQUEST).map_err(|e| Outcome::Undecodable(format!("{}: {e}", M::NAME)))
}

/// Decodes `M`'s request, answers it with `handle` and encodes the response.
pub(super) fn answer<M: Method>(args: &[u8], handle: impl FnOnce(M::Req) -> Result<M::Resp, String>) -> Outcome {
    match decode::<M>(args) {
        Ok(req) => reply::<M>(handle(req)),
        Err(undecodable) => undecodable,
    }
}

/// Encodes a response, or for an error text the failed response (status ERROR, required fields zero).
pub(super) fn reply<M: Method>(result: Result<M::Resp, String>) -> Outcome {
    let resp = match result {
        Ok(resp) => resp,
        Err(text) => match M::Resp::failed(rpc::error_status(&text)) {
            Some(resp) => resp,
            None => return Outcome::Exception { kind: ApplicationErrorKind::InternalError, message: text },
        },
    };
    encoded(&resp)
}

/// A reply body for `resp`.
pub(super) fn encoded<R: TSerializable>(resp: &R) -> Outcome {
    match rpc::encode_result(resp) {
        Ok(body) => Outcome::Reply(body),
        Err(e) => Outcome::Exception { kind: ApplicationErrorKind::InternalError, message: e.to_string() },
    }
}

/// The id of a session handle (`None` unless guid and secret are 16 bytes each: an unknown session).
pub(super) fn session_id(h: &TSessionHandle) -> Option<HandleId> {
    HandleId::try_from(&h.session_id).ok()
}

/// The id of an operation handle, likewise.
pub(super) fn operation_id(h: &TOperationHandle) -> Option<HandleId> {
    HandleId::try_from(&h.operation_id).ok()
}

/// `Ok` when `handle` names a session this connection's user may use, else Impala's text.
fn check_session(inner: &Inner, user: Option<&str>, handle: &TSessionHandle) -> Result<(), String> {
    inner.state().session_mut(session_id(handle), user).map(drop)
}

fn open_session(inner: &Inner, user: Option<&str>, req: TOpenSessionReq) -> Result<TOpenSessionResp, String> {
    if let Some(text) = inner.shutdown_text() {
        return Err(text);
    }
    // Impala's connected_user: the transport's user if it authenticated one, else the request's.
    let session_user = user.map(str::to_string).or(req.username).unwrap_or_default();
    let config = req.configuration.unwrap_or_default();
    // Delegation, as impalad: its own key only (case-insensitive), authorised for the connected user.
    let doas = config.iter().find(|(k, _)| k.eq_ignore_ascii_case(IMPALA_DOAS_KEY)).map(|(_, v)| v.clone());
    if let Some(doas) = &doas {
        inner.cfg.authorized_proxy_users.authorize(&session_user, doas)?;
    }
    // Entries that are not Impala's own settings are query options (e.g. idle_session_timeout).
    let options = config
        .iter()
        .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("impala."))
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    let id = HandleId::random();
    let session = Session::new(id.secret, session_user, doas, options);
    inner.state().sessions.insert(id.guid, session);
    let http_addr = BTreeMap::from([("http_addr".to_string(), format!("{}:25000", inner.cfg.name))]);
    let protocol = req.client_protocol.min(PROTOCOL_V6);
    Ok(TOpenSessionResp::new(rpc::ok(), protocol, rpc::session_handle(&id), http_addr))
}

fn close_session(inner: &Inner, user: Option<&str>, handle: &TSessionHandle) -> Result<TCloseSessionResp, String> {
    let mut st = inner.state();
    let (guid, _) = st.session_mut(session_id(handle), user)?;
    st.close_session(&guid);
    Ok(TCloseSessionResp::new(rpc::ok()))
}

fn get_info(inner: &Inner, user: Option<&str>, req: TGetInfoReq) -> Result<TGetInfoResp, String> {
    if let Some(text) = inner.shutdown_text() {
        return Err(text);
    }
    check_session(inner, user, &req.session_handle)?;
    let value = match req.info_type {
        TGetInfoType::CLI_SERVER_NAME | TGetInfoType::CLI_DBMS_NAME => "Impala",
        TGetInfoType::CLI_DBMS_VER => MOCK_VERSION,
        _ => return Err("Unsupported operation".to_string()),
    };
    Ok(TGetInfoResp::new(rpc::ok(), TGetInfoValue::StringValue(value.to_string())))
}

/// Registers a new operation (its session already validated); returns its handle.
fn register(st: &mut State, op: Operation) -> OpHandle {
    // Impala: an operation's secret is its session's secret, its guid the query id.
    let id = HandleId { guid: op.id, secret: op.secret };
    let handle = OpHandle { id, has_result_set: op.results.is_some(), op_type: op.op_type };
    st.ops.insert(id.guid, op);
    handle
}

async fn execute(
    inner: &Inner,
    user: Option<&str>,
    req: TExecuteStatementReq,
) -> Result<TExecuteStatementResp, String> {
    if let Some(text) = inner.shutdown_text() {
        return Err(text);
    }
    let text = req.statement.as_str();
    let (op, wait) = {
        let mut st = inner.state();
        let (guid, session) = st.session_mut(session_id(&req.session_handle), user)?;
        let stmt = sql::parse(text)?;
        match &stmt {
            Statement::SetOption { key, value } => {
                session.options.insert(key.clone(), value.clone());
            }
            Statement::Use(db) => session.database = db.clone(),
            _ => {}
        }
        let results = ResultSet::for_statement(&stmt, session);
        let (state, wait) = match stmt {
            Statement::Sleep(ms) => {
                let d = Duration::from_millis(ms);
                (OpState::Running { until: Instant::now() + d }, Some(d))
            }
            Statement::Fail => (OpState::Failed("Query aborted: fail() was called".to_string()), None),
            _ => (OpState::Finished, None),
        };
        let mut op = Operation::new(guid, session, TOperationType::EXECUTE_STATEMENT, text);
        // Impala applies confOverlay to this query only (impala-shell sends its `set` options this way).
        let overlay = req.conf_overlay.iter().flatten();
        op.options.extend(overlay.map(|(k, v)| (k.to_ascii_uppercase(), v.clone())));
        op.crash_on_fetch = stmt == Statement::Crash;
        op.state = state;
        op.results = results;
        op.parsed = Some(stmt);
        (register(&mut st, op), wait)
    };
    // runAsync = false: the reply waits until the statement has run.
    if let (false, Some(d)) = (req.run_async.unwrap_or(false), wait) {
        tokio::time::sleep(d).await;
    }
    Ok(TExecuteStatementResp::new(rpc::ok(), op.thrift()))
}

fn metadata(inner: &Inner, user: Option<&str>, method: &str, session: &TSessionHandle) -> Result<OpHandle, String> {
    let Some((op_type, results)) = ResultSet::metadata(method) else {
        return Err(NOT_IMPLEMENTED.to_string());
    };
    let mut st = inner.state();
    let (guid, session) = st.session_mut(session_id(session), user)?;
    let mut op = Operation::new(guid, session, op_type, method);
    op.results = Some(results);
    Ok(register(&mut st, op))
}

fn ping(inner: &Inner, user: Option<&str>, session: &TSessionHandle) -> Result<TPingImpalaHS2ServiceResp, String> {
    check_session(inner, user, session)?;
    // Impala reports its monotonic clock; milliseconds since the process started is close enough.
    let since_start = START.get_or_init(Instant::now).elapsed().as_millis() as i64;
    Ok(TPingImpalaHS2ServiceResp::new(
        rpc::ok(),
        format!("impalad version {MOCK_VERSION} RELEASE (build mock)"),
        format!("http://{}:25000", inner.cfg.name),
        since_start,
    ))
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
