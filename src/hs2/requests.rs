//! Requests the proxy makes itself (closing abandoned sessions, health probes, operator actions). No I/O.

use super::handle::HandleId;
use crate::thrift::value::{encode_message, Struct, Value};
use crate::thrift::{MessageHeader, MessageKind};

/// `THandleIdentifier { 1: guid, 2: secret }`.
pub fn handle_identifier(id: &HandleId) -> Value {
    Struct::new().with(1, Value::Bytes(id.guid.0.to_vec())).with(2, Value::Bytes(id.secret.0.to_vec())).into_value()
}

/// `TSessionHandle { 1: THandleIdentifier }`.
pub fn session_handle(id: &HandleId) -> Value {
    Struct::new().with(1, handle_identifier(id)).into_value()
}

/// `TOperationHandle { 1: THandleIdentifier, 2: operationType, 3: hasResultSet }` for a handle whose type
/// the proxy does not know: servers look operations up by identifier only.
pub fn operation_handle(id: &HandleId) -> Value {
    Struct::new().with(1, handle_identifier(id)).with(2, Value::I32(0)).with(3, Value::Bool(false)).into_value()
}

/// A call message: `args { 1: req }`.
pub fn call(method: &str, seqid: i32, req: Struct) -> Vec<u8> {
    encode_message(&MessageHeader::new(method, MessageKind::Call, seqid), &Struct::new().with(1, req.into_value()))
}

/// `CloseSession(TCloseSessionReq { 1: sessionHandle })`.
pub fn close_session(id: &HandleId, seqid: i32) -> Vec<u8> {
    call("CloseSession", seqid, Struct::new().with(1, session_handle(id)))
}

/// `CancelOperation(TCancelOperationReq { 1: operationHandle })`.
pub fn cancel_operation(id: &HandleId, seqid: i32) -> Vec<u8> {
    call("CancelOperation", seqid, Struct::new().with(1, operation_handle(id)))
}

/// `GetInfo(TGetInfoReq { 1: sessionHandle, 2: infoType })`.
pub fn get_info(id: &HandleId, info_type: i32, seqid: i32) -> Vec<u8> {
    call("GetInfo", seqid, Struct::new().with(1, session_handle(id)).with(2, Value::I32(info_type)))
}
