//! Requests the proxy makes itself (closing abandoned sessions, health probes, lookups, operator actions).
//! No I/O.

use super::handle::HandleId;
use super::idl::fields::{t_cancel_operation_req, t_close_session_req, t_get_info_req, t_handle_identifier};
use super::idl::fields::{t_operation_handle, t_session_handle};
use super::idl::{enums, names};
use crate::thrift::value::{encode_message, Struct, Value};
use crate::thrift::{MessageHeader, MessageKind, CALL_ARGUMENT_FIELD};

/// `THandleIdentifier { guid, secret }`.
pub fn handle_identifier(id: &HandleId) -> Value {
    Struct::new()
        .with(t_handle_identifier::GUID, Value::Bytes(id.guid.0.to_vec()))
        .with(t_handle_identifier::SECRET, Value::Bytes(id.secret.0.to_vec()))
        .into_value()
}

/// `TSessionHandle { sessionId }`.
pub fn session_handle(id: &HandleId) -> Value {
    Struct::new().with(t_session_handle::SESSION_ID, handle_identifier(id)).into_value()
}

/// `TOperationHandle { operationId, operationType, hasResultSet }` for a handle whose type the proxy does
/// not know: impalad looks operations up by identifier only; Hive and Spark also by type, so there this
/// finds statements (EXECUTE_STATEMENT) only.
pub fn operation_handle(id: &HandleId) -> Value {
    operation_handle_of(id, enums::t_operation_type::EXECUTE_STATEMENT)
}

/// `TOperationHandle` with the `operationType` a client sent.
pub fn operation_handle_of(id: &HandleId, operation_type: i32) -> Value {
    Struct::new()
        .with(t_operation_handle::OPERATION_ID, handle_identifier(id))
        .with(t_operation_handle::OPERATION_TYPE, Value::I32(operation_type))
        .with(t_operation_handle::HAS_RESULT_SET, Value::Bool(false))
        .into_value()
}

/// A call message: `args { 1: req }` (every HS2 method takes one struct argument with id 1).
pub fn call(method: &str, seqid: i32, req: Struct) -> Vec<u8> {
    let args = Struct::new().with(CALL_ARGUMENT_FIELD, req.into_value());
    encode_message(&MessageHeader::new(method, MessageKind::Call, seqid), &args)
}

/// `CloseSession(TCloseSessionReq { sessionHandle })`.
pub fn close_session(id: &HandleId, seqid: i32) -> Vec<u8> {
    call(names::CLOSE_SESSION, seqid, Struct::new().with(t_close_session_req::SESSION_HANDLE, session_handle(id)))
}

/// `CancelOperation(TCancelOperationReq { operationHandle })`.
pub fn cancel_operation(id: &HandleId, seqid: i32) -> Vec<u8> {
    let req = Struct::new().with(t_cancel_operation_req::OPERATION_HANDLE, operation_handle(id));
    call(names::CANCEL_OPERATION, seqid, req)
}

/// `GetInfo(TGetInfoReq { sessionHandle, infoType })`.
pub fn get_info(id: &HandleId, info_type: i32, seqid: i32) -> Vec<u8> {
    let req = Struct::new()
        .with(t_get_info_req::SESSION_HANDLE, session_handle(id))
        .with(t_get_info_req::INFO_TYPE, Value::I32(info_type));
    call(names::GET_INFO, seqid, req)
}

/// `GetCatalogs(TGetCatalogsReq { sessionHandle })`: opens an operation, so a server that answers it
/// holds the session (Hive and Spark do not check the session in GetInfo).
pub fn get_catalogs(id: &HandleId, seqid: i32) -> Vec<u8> {
    use super::idl::fields::t_get_catalogs_req;
    call(names::GET_CATALOGS, seqid, Struct::new().with(t_get_catalogs_req::SESSION_HANDLE, session_handle(id)))
}

/// `CloseOperation(TCloseOperationReq { operationHandle })` with the handle exactly as a server sent it.
pub fn close_operation_value(handle: Value, seqid: i32) -> Vec<u8> {
    use super::idl::fields::t_close_operation_req;
    call(names::CLOSE_OPERATION, seqid, Struct::new().with(t_close_operation_req::OPERATION_HANDLE, handle))
}

/// `GetOperationStatus(TGetOperationStatusReq { operationHandle })`, with the client's `operationType`
/// when known (Hive and Spark find no operation under another type).
pub fn get_operation_status(id: &HandleId, operation_type: Option<i32>, seqid: i32) -> Vec<u8> {
    use super::idl::fields::t_get_operation_status_req;
    let ty = operation_type.unwrap_or(enums::t_operation_type::EXECUTE_STATEMENT);
    let req = Struct::new().with(t_get_operation_status_req::OPERATION_HANDLE, operation_handle_of(id, ty));
    call(names::GET_OPERATION_STATUS, seqid, req)
}

/// `ExecuteStatement(TExecuteStatementReq { sessionHandle, statement, runAsync: false })`: the proxy's
/// own statements (a moved session's replay) run to their end before the reply.
pub fn execute_statement(session: &HandleId, statement: &str, seqid: i32) -> Vec<u8> {
    use super::idl::fields::t_execute_statement_req as exec;
    let req = Struct::new()
        .with(exec::SESSION_HANDLE, session_handle(session))
        .with(exec::STATEMENT, Value::string(statement))
        .with(exec::RUN_ASYNC, Value::Bool(false));
    call(names::EXECUTE_STATEMENT, seqid, req)
}

/// `GetOperationStatus` with the operation handle exactly as a server sent it.
pub fn get_operation_status_value(handle: Value, seqid: i32) -> Vec<u8> {
    use super::idl::fields::t_get_operation_status_req;
    call(names::GET_OPERATION_STATUS, seqid, Struct::new().with(t_get_operation_status_req::OPERATION_HANDLE, handle))
}

/// The session handle of an OpenSession response.
pub fn read_session_handle(resp: &Struct) -> Option<HandleId> {
    use super::idl::fields::t_open_session_resp;
    read_handle_id(resp.get_struct(t_open_session_resp::SESSION_HANDLE)?.get_struct(t_session_handle::SESSION_ID)?)
}

/// A `THandleIdentifier`; `None` unless guid and secret are 16 bytes each.
pub fn read_handle_id(id: &Struct) -> Option<HandleId> {
    use super::handle::{Guid, Secret};
    let guid = id.get_bytes(t_handle_identifier::GUID)?.try_into().ok()?;
    let secret = id.get_bytes(t_handle_identifier::SECRET)?.try_into().ok()?;
    Some(HandleId { guid: Guid(guid), secret: Secret(secret) })
}
