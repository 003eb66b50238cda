//! The mock's dispatch on the method name, and its answers to session-level calls.
//!
//! Every answer follows Impala: the draining check comes first where Impala has it, then the session
//! check, then the work. Errors are `TStatus` ERROR replies with every required field present, so strict
//! (Java) clients can read them. No socket I/O; a synchronous `sleep()` waits here, without the lock.

use std::time::{Duration, Instant};

use super::op_calls;
use super::rowset::ResultSet;
use super::sql::{self, Statement};
use super::state::{OpState, Operation, Session, State};
use super::{Inner, MOCK_VERSION};
use crate::hs2::handle::HandleId;
use crate::hs2::{idl, reply, requests};
use crate::hs2client::wire::{self, info_type, op_type, OpHandle, PROTOCOL_V6};
use crate::kerberos::delegation::IMPALA_DOAS_KEY;
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

/// What to send back for one call.
pub(super) enum Outcome {
    /// `result {0: response}`.
    Reply(Struct),
    /// A `TApplicationException` (e.g. an unknown method).
    Exception { kind: i32, message: String },
    /// Fault injection: write the first half of this reply, then drop the connection.
    Crash(Struct),
    /// Fast mode: an encoded `result` struct, prepared once, sent after a fresh header.
    Prepared(std::sync::Arc<Vec<u8>>),
}

pub(super) async fn dispatch(inner: &Inner, user: Option<&str>, method: &str, args: &Struct) -> Outcome {
    // A missing `req` reads as an empty one, as in Thrift's C++ server: its handles are then unknown.
    let empty = Struct::new();
    let req = args.get_struct(1).unwrap_or(&empty);
    match method {
        "OpenSession" => open_session(inner, user, req),
        "CloseSession" => close_session(inner, user, req),
        "GetInfo" => get_info(inner, user, req),
        "ExecuteStatement" => execute(inner, user, req).await,
        "GetTypeInfo" | "GetCatalogs" | "GetSchemas" | "GetTables" | "GetTableTypes" | "GetColumns"
        | "GetFunctions" | "GetPrimaryKeys" | "GetCrossReference" => metadata(inner, user, method, req),
        "PingImpalaHS2Service" => ping(inner, user, req),
        "GetBackendConfig" => with_session(inner, user, method, req, |resp| {
            // The real TBackendGflags is large; our IDL declares it opaque and empty.
            resp.with(2, Struct::new().into_value())
        }),
        "GetExecutorMembership" => with_session(inner, user, method, req, |resp| {
            let set = |s: &str| Value::Set(TType::String, vec![Value::string(s)]);
            let membership = Struct::new().with(1, set(&inner.cfg.name)).with(2, set("127.0.0.1"));
            resp.with(2, membership.into_value())
        }),
        // Impala answers these with an error status rather than an unknown method.
        "GetDelegationToken" | "CancelDelegationToken" | "RenewDelegationToken" => failure(method, "Not implemented"),
        _ => op_calls::dispatch(inner, user, method, req).await,
    }
}

/// A successful `TStatus`.
pub(super) fn ok() -> Value {
    reply::status(0, None).into_value()
}

/// A response to `method` with status ERROR and `message`, and every required field filled.
pub(super) fn failure(method: &str, message: &str) -> Outcome {
    let Some(spec) = idl::method(method) else {
        return Outcome::Exception {
            kind: crate::hs2::idl::enums::t_application_exception_type::INTERNAL_ERROR,
            message: message.to_string(),
        };
    };
    let status_field = spec.status_field.unwrap_or(1);
    let mut resp = reply::required_fields(spec.response, 0);
    resp.fields.retain(|(id, _)| *id != status_field);
    resp.fields.insert(
        0,
        (status_field, reply::status(crate::hs2::idl::enums::t_status_code::ERROR_STATUS, Some(message)).into_value()),
    );
    Outcome::Reply(resp)
}

/// The handle in a request's field `id` (a session or operation handle).
pub(super) fn handle_at(req: &Struct, id: i16) -> Option<HandleId> {
    req.get_struct(id).and_then(wire::read_handle)
}

/// The string entries of a `map<string, string>` field (a missing field has none).
fn string_pairs(map: Option<&Value>) -> impl Iterator<Item = (&str, &str)> {
    map.and_then(Value::as_map).unwrap_or_default().iter().filter_map(|(k, v)| Some((k.as_str()?, v.as_str()?)))
}

/// Validates the session in `req.1`, then answers `{1: ok, ...}` built by `fill`.
fn with_session(
    inner: &Inner,
    user: Option<&str>,
    method: &str,
    req: &Struct,
    fill: impl FnOnce(Struct) -> Struct,
) -> Outcome {
    if let Err(text) = inner.state().session_mut(handle_at(req, 1), user).map(drop) {
        return failure(method, &text);
    }
    Outcome::Reply(fill(Struct::new().with(1, ok())))
}

fn open_session(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    if let Some(text) = inner.shutdown_text() {
        return failure("OpenSession", &text);
    }
    let client_protocol = req.get_i64(1).map(|v| v as i32).unwrap_or(PROTOCOL_V6);
    // Impala's connected_user: the transport's user if it authenticated one, else the request's.
    let session_user = user.or(req.get_str(2)).unwrap_or_default().to_string();
    // Delegation, as impalad: its own key only (case-insensitive), authorised for the connected user.
    let doas = string_pairs(req.get(4)).find(|(k, _)| k.eq_ignore_ascii_case(IMPALA_DOAS_KEY)).map(|(_, v)| v);
    if let Some(doas) = doas {
        if let Err(text) = inner.cfg.authorized_proxy_users.authorize(&session_user, doas) {
            return failure("OpenSession", &text);
        }
    }
    let delegated = doas.map(str::to_string);
    // Entries that are not Impala's own settings are query options (e.g. idle_session_timeout).
    let options = string_pairs(req.get(4))
        .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("impala."))
        .map(|(k, v)| (k.to_ascii_uppercase(), v.to_string()))
        .collect();
    let id = HandleId::random();
    let session = Session {
        secret: id.secret,
        user: session_user,
        delegated,
        options,
        database: "default".to_string(),
        opened: Instant::now(),
    };
    inner.state().sessions.insert(id.guid, session);
    let http_addr = format!("{}:25000", inner.cfg.name);
    let config =
        Value::Map(TType::String, TType::String, vec![(Value::string("http_addr"), Value::string(&http_addr))]);
    Outcome::Reply(
        Struct::new()
            .with(1, ok())
            .with(2, Value::I32(client_protocol.min(PROTOCOL_V6)))
            .with(3, requests::session_handle(&id))
            .with(4, config),
    )
}

fn close_session(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    let mut st = inner.state();
    let guid = match st.session_mut(handle_at(req, 1), user) {
        Ok((guid, _)) => guid,
        Err(text) => return failure("CloseSession", &text),
    };
    st.close_session(&guid);
    Outcome::Reply(Struct::new().with(1, ok()))
}

fn get_info(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    const M: &str = "GetInfo";
    if let Some(text) = inner.shutdown_text() {
        return failure(M, &text);
    }
    if let Err(text) = inner.state().session_mut(handle_at(req, 1), user).map(drop) {
        return failure(M, &text);
    }
    let value = match req.get_i64(2).map(|v| v as i32) {
        Some(info_type::CLI_SERVER_NAME | info_type::CLI_DBMS_NAME) => "Impala",
        Some(info_type::CLI_DBMS_VER) => MOCK_VERSION,
        _ => return failure(M, "Unsupported operation"),
    };
    let info = Struct::new().with(1, Value::string(value));
    Outcome::Reply(Struct::new().with(1, ok()).with(2, info.into_value()))
}

/// Registers a new operation (its session already validated); returns its handle.
fn register(st: &mut State, op: Operation) -> OpHandle {
    // Impala: an operation's secret is its session's secret, its guid the query id.
    let id = HandleId { guid: op.id, secret: op.secret };
    let handle = OpHandle { id, has_result_set: op.results.is_some(), op_type: op.op_type };
    st.ops.insert(id.guid, op);
    handle
}

async fn execute(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    const M: &str = "ExecuteStatement";
    if let Some(text) = inner.shutdown_text() {
        return failure(M, &text);
    }
    let text = req.get_str(2).unwrap_or_default();
    let (op, wait) = {
        let mut st = inner.state();
        let (guid, session) = match st.session_mut(handle_at(req, 1), user) {
            Ok(s) => s,
            Err(e) => return failure(M, &e),
        };
        let stmt = match sql::parse(text) {
            Ok(s) => s,
            Err(e) => return failure(M, &e),
        };
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
        let mut op = Operation::new(guid, session, op_type::EXECUTE_STATEMENT, text);
        // Impala applies confOverlay to this query only (impala-shell sends its `set` options this way).
        op.options.extend(string_pairs(req.get(3)).map(|(k, v)| (k.to_ascii_uppercase(), v.to_string())));
        op.crash_on_fetch = stmt == Statement::Crash;
        op.state = state;
        op.results = results;
        op.parsed = Some(stmt);
        (register(&mut st, op), wait)
    };
    // runAsync = false: the reply waits until the statement has run.
    if let (false, Some(d)) = (req.get_bool(4).unwrap_or(false), wait) {
        tokio::time::sleep(d).await;
    }
    Outcome::Reply(Struct::new().with(1, ok()).with(2, wire::operation_handle_value(&op)))
}

fn metadata(inner: &Inner, user: Option<&str>, method: &str, req: &Struct) -> Outcome {
    let Some((op_type, results)) = ResultSet::metadata(method) else {
        return failure(method, "Not implemented");
    };
    let mut st = inner.state();
    let (guid, session) = match st.session_mut(handle_at(req, 1), user) {
        Ok(found) => found,
        Err(e) => return failure(method, &e),
    };
    let mut op = Operation::new(guid, session, op_type, method);
    op.results = Some(results);
    let op = register(&mut st, op);
    Outcome::Reply(Struct::new().with(1, ok()).with(2, wire::operation_handle_value(&op)))
}

fn ping(inner: &Inner, user: Option<&str>, req: &Struct) -> Outcome {
    with_session(inner, user, "PingImpalaHS2Service", req, |resp| {
        // Impala reports its monotonic clock; milliseconds since the process started is close enough.
        let since_start = START.get_or_init(Instant::now).elapsed().as_millis() as i64;
        resp.with(2, Value::string(&format!("impalad version {MOCK_VERSION} RELEASE (build mock)")))
            .with(3, Value::string(&format!("http://{}:25000", inner.cfg.name)))
            .with(4, Value::I64(since_start))
    })
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
