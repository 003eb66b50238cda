//! HS2 shapes shared by the client and the mock impalad: handles, statuses and row sets, built and read
//! with [`crate::thrift::value`]. No I/O.
//!
//! Field ids come from `idl/*.thrift`; a test checks each one used here against the generated schema, so
//! the two cannot drift apart.

use crate::hs2::handle::{Guid, HandleId, Secret, ID_BYTES};
use crate::hs2::requests;
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

use crate::hs2::idl::enums;
use crate::hs2::idl::fields::{t_handle_identifier, t_operation_handle, t_session_handle, t_status};

/// `TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V6`: the newest Impala speaks, the first with columnar rows.
pub const PROTOCOL_V6: i32 = enums::t_protocol_version::HIVE_CLI_SERVICE_PROTOCOL_V6;

/// `TOperationState` values.
pub mod op_state {
    pub use crate::hs2::idl::enums::t_operation_state::*;

    /// True for a state an operation never leaves.
    pub fn is_terminal(state: i32) -> bool {
        matches!(state, FINISHED_STATE | CANCELED_STATE | CLOSED_STATE | ERROR_STATE | UKNOWN_STATE | TIMEDOUT_STATE)
    }
}

/// `TGetInfoType` values.
pub use crate::hs2::idl::enums::t_get_info_type as info_type;
/// `TOperationType` values.
pub use crate::hs2::idl::enums::t_operation_type as op_type;
/// `TTypeId` values.
pub use crate::hs2::idl::enums::t_type_id as type_id;

/// An operation handle as the client keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHandle {
    pub id: HandleId,
    pub has_result_set: bool,
    /// A `TOperationType` (see [`op_type`]).
    pub op_type: i32,
}

/// A `TStatus`, as read from a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `TStatusCode`.
    pub code: i64,
    /// `errorMessage`, or empty.
    pub message: String,
}

impl Status {
    /// SUCCESS or SUCCESS_WITH_INFO (or STILL_EXECUTING, which is not a failure).
    pub fn is_success(&self) -> bool {
        use enums::t_status_code::{STILL_EXECUTING_STATUS, SUCCESS_STATUS, SUCCESS_WITH_INFO_STATUS};
        [SUCCESS_STATUS, SUCCESS_WITH_INFO_STATUS, STILL_EXECUTING_STATUS].map(i64::from).contains(&self.code)
    }
}

/// A `TOperationHandle` with the type the client knows. (Session handles: [`requests::session_handle`].)
pub fn operation_handle_value(op: &OpHandle) -> Value {
    Struct::new()
        .with(t_operation_handle::OPERATION_ID, requests::handle_identifier(&op.id))
        .with(t_operation_handle::OPERATION_TYPE, Value::I32(op.op_type))
        .with(t_operation_handle::HAS_RESULT_SET, Value::Bool(op.has_result_set))
        .into_value()
}

/// Reads a `THandleIdentifier`; `None` unless guid and secret are 16 bytes each.
pub fn read_handle_id(id: &Struct) -> Option<HandleId> {
    let guid: [u8; ID_BYTES] = id.get_bytes(t_handle_identifier::GUID)?.try_into().ok()?;
    let secret: [u8; ID_BYTES] = id.get_bytes(t_handle_identifier::SECRET)?.try_into().ok()?;
    Some(HandleId { guid: Guid(guid), secret: Secret(secret) })
}

/// Reads the id of a `TSessionHandle` or `TOperationHandle` (both keep it in the same field).
pub fn read_handle(handle: &Struct) -> Option<HandleId> {
    const _: () = assert!(t_session_handle::SESSION_ID == t_operation_handle::OPERATION_ID);
    read_handle_id(handle.get_struct(t_session_handle::SESSION_ID)?)
}

/// Reads a `TOperationHandle`.
pub fn read_op_handle(handle: &Struct) -> Option<OpHandle> {
    Some(OpHandle {
        id: read_handle(handle)?,
        op_type: handle.get_i64(t_operation_handle::OPERATION_TYPE).unwrap_or(op_type::UNKNOWN as i64) as i32,
        has_result_set: handle.get_bool(t_operation_handle::HAS_RESULT_SET).unwrap_or(false),
    })
}

/// Reads the `TStatus` of a response (field 1 of every HS2 response); `None` when it is missing or has
/// no code.
pub fn read_status(resp: &Struct) -> Option<Status> {
    let status = resp.get_struct(1)?;
    Some(Status {
        code: status.get_i64(t_status::STATUS_CODE)?,
        message: status.get_str(t_status::ERROR_MESSAGE).unwrap_or_default().to_string(),
    })
}

/// One column of a fetched batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Column {
    pub values: Vec<Value>,
    /// Bit `i` set means row `i` is NULL (bytes beyond the end mean "not null").
    pub nulls: Vec<u8>,
}

impl Column {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0)
    }
}

/// Takes field `id` out of `s` (replies can be large: moving beats cloning).
pub fn take_field(s: &mut Struct, id: i16) -> Option<Value> {
    let at = s.fields.iter().position(|(i, _)| *i == id)?;
    Some(s.fields.swap_remove(at).1)
}

/// Reads the columns of a V6 `TRowSet` (field 3, a list of `TColumn` unions); `None` if malformed.
pub fn read_columns(mut rowset: Struct) -> Option<Vec<Column>> {
    let Some(Value::List(_, columns)) = take_field(&mut rowset, 3) else {
        // A row set without columns (no result set, or an old protocol): no data.
        return Some(Vec::new());
    };
    columns
        .into_iter()
        .map(|c| {
            // A union holds exactly one field, whichever type the column has.
            let Value::Struct(mut union) = c else { return None };
            let (_, Value::Struct(mut typed)) = union.fields.pop()? else { return None };
            let nulls = match take_field(&mut typed, 2) {
                Some(Value::Bytes(b)) => b,
                _ => Vec::new(),
            };
            match take_field(&mut typed, 1)? {
                Value::List(_, values) => Some(Column { values, nulls }),
                _ => None,
            }
        })
        .collect()
}

/// The `TColumn` union field that carries a column of elements of wire type `ttype` (for builders).
pub fn column_arm(ttype: TType) -> i16 {
    match ttype {
        TType::Bool => 1,
        TType::Byte => 2,
        TType::I16 => 3,
        TType::I32 => 4,
        TType::I64 => 5,
        TType::Double => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::idl;

    /// Every field id this module and the client write or read, by IDL struct and field name.
    const USED: &[(&str, &str, i16)] = &[
        ("THandleIdentifier", "guid", 1),
        ("THandleIdentifier", "secret", 2),
        ("TSessionHandle", "sessionId", 1),
        ("TOperationHandle", "operationId", 1),
        ("TOperationHandle", "operationType", 2),
        ("TOperationHandle", "hasResultSet", 3),
        ("TStatus", "statusCode", 1),
        ("TStatus", "errorMessage", 5),
        ("TRowSet", "startRowOffset", 1),
        ("TRowSet", "rows", 2),
        ("TRowSet", "columns", 3),
        ("TI64Column", "values", 1),
        ("TI64Column", "nulls", 2),
        ("TColumn", "boolVal", 1),
        ("TColumn", "i32Val", 4),
        ("TColumn", "i64Val", 5),
        ("TColumn", "stringVal", 7),
        ("TOpenSessionReq", "client_protocol", 1),
        ("TOpenSessionReq", "username", 2),
        ("TOpenSessionReq", "configuration", 4),
        ("TOpenSessionResp", "serverProtocolVersion", 2),
        ("TOpenSessionResp", "sessionHandle", 3),
        ("TOpenSessionResp", "configuration", 4),
        ("TExecuteStatementReq", "statement", 2),
        ("TExecuteStatementReq", "confOverlay", 3),
        ("TExecuteStatementReq", "runAsync", 4),
        ("TExecuteStatementResp", "operationHandle", 2),
        ("TGetInfoReq", "infoType", 2),
        ("TGetInfoResp", "infoValue", 2),
        ("TGetInfoValue", "stringValue", 1),
        ("TGetOperationStatusResp", "operationState", 2),
        ("TGetOperationStatusResp", "errorMessage", 5),
        ("TGetOperationStatusResp", "hasResultSet", 9),
        ("TFetchResultsReq", "orientation", 2),
        ("TFetchResultsReq", "maxRows", 3),
        ("TFetchResultsReq", "fetchType", 4),
        ("TFetchResultsResp", "hasMoreRows", 2),
        ("TFetchResultsResp", "results", 3),
        ("TGetResultSetMetadataResp", "schema", 2),
        ("TTableSchema", "columns", 1),
        ("TColumnDesc", "columnName", 1),
        ("TColumnDesc", "typeDesc", 2),
        ("TColumnDesc", "position", 3),
        ("TTypeDesc", "types", 1),
        ("TTypeEntry", "primitiveEntry", 1),
        ("TPrimitiveTypeEntry", "type", 1),
        ("TGetLogResp", "log", 2),
        ("TGetExecSummaryReq", "sessionHandle", 2),
        ("TGetRuntimeProfileReq", "sessionHandle", 2),
        ("TGetRuntimeProfileResp", "profile", 2),
        ("TPingImpalaHS2ServiceResp", "version", 2),
        ("TPingImpalaHS2ServiceResp", "webserver_address", 3),
        ("TPingImpalaHS2ServiceResp", "timestamp", 4),
        ("TGetBackendConfigResp", "backend_config", 2),
        ("TGetExecutorMembershipResp", "executor_membership", 2),
        ("TUpdateExecutorMembershipRequest", "hostnames", 1),
        ("TUpdateExecutorMembershipRequest", "ip_addresses", 2),
    ];

    #[test]
    fn field_ids_match_the_idl() {
        for (name, field, id) in USED {
            let spec = idl::struct_spec(name).unwrap_or_else(|| panic!("IDL has no struct {name}"));
            let f = spec.fields.iter().find(|f| f.name == *field).unwrap_or_else(|| panic!("{name}.{field}"));
            assert_eq!(f.id, *id, "{name}.{field}");
        }
        let v6 = idl::enum_value("TProtocolVersion", "HIVE_CLI_SERVICE_PROTOCOL_V6");
        assert_eq!(v6, Some(PROTOCOL_V6));
        assert_eq!(idl::enum_value("TOperationState", "FINISHED_STATE"), Some(op_state::FINISHED_STATE));
        assert_eq!(idl::enum_value("TOperationType", "GET_FUNCTIONS"), Some(op_type::GET_FUNCTIONS));
        assert_eq!(idl::enum_value("TGetInfoType", "CLI_DBMS_VER"), Some(info_type::CLI_DBMS_VER));
        assert_eq!(idl::enum_value("TTypeId", "STRING_TYPE"), Some(type_id::STRING_TYPE));
    }

    #[test]
    fn handles_round_trip() {
        let op = OpHandle { id: HandleId::random(), has_result_set: true, op_type: op_type::GET_TABLES };
        let Value::Struct(s) = operation_handle_value(&op) else { panic!("not a struct") };
        assert_eq!(read_op_handle(&s), Some(op));
        let Value::Struct(s) = requests::session_handle(&op.id) else { panic!("not a struct") };
        assert_eq!(read_handle(&s), Some(op.id));
        let short = Struct::new().with(1, Struct::new().with(1, Value::Bytes(vec![1; 15])).into_value());
        assert_eq!(read_handle(&short), None);
    }

    #[test]
    fn columns_and_nulls_read_back() {
        let col = |arm: i16, t: TType, v: Vec<Value>, nulls: Vec<u8>| {
            let typed = Struct::new().with(1, Value::List(t, v)).with(2, Value::Bytes(nulls));
            Struct::new().with(arm, typed.into_value()).into_value()
        };
        let rowset = Struct::new().with(1, Value::I64(0)).with(2, Value::List(TType::Struct, vec![])).with(
            3,
            Value::List(
                TType::Struct,
                vec![
                    col(5, TType::I64, vec![Value::I64(1), Value::I64(2)], vec![0b10]),
                    col(7, TType::String, vec![Value::string("a"), Value::string("b")], vec![]),
                ],
            ),
        );
        let cols = read_columns(rowset).unwrap();
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0].values, vec![Value::I64(1), Value::I64(2)]);
        assert!(!cols[0].is_null(0) && cols[0].is_null(1) && !cols[1].is_null(1));
        assert_eq!(column_arm(TType::String), 7);
        assert_eq!(read_columns(Struct::new()), Some(vec![]));
    }
}
