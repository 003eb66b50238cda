//! HS2 shapes shared by the client and the mock impalad: handles, statuses and row sets, built and read
//! with [`crate::thrift::value`]. No I/O.
//!
//! Field ids come from `idl/*.thrift`; a test checks each one used here against the generated schema, so
//! the two cannot drift apart.

use crate::hs2::handle::{Guid, HandleId, Secret, ID_BYTES};
use crate::hs2::requests;
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

/// `TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V6`: the newest Impala speaks, the first with columnar rows.
pub const PROTOCOL_V6: i32 = 5;

/// `TOperationState` values.
pub mod op_state {
    pub const INITIALIZED: i32 = 0;
    pub const RUNNING: i32 = 1;
    pub const FINISHED: i32 = 2;
    pub const CANCELED: i32 = 3;
    pub const CLOSED: i32 = 4;
    pub const ERROR: i32 = 5;
    pub const UNKNOWN: i32 = 6;
    pub const PENDING: i32 = 7;
    pub const TIMEDOUT: i32 = 8;

    /// True for a state an operation never leaves.
    pub fn is_terminal(state: i32) -> bool {
        matches!(state, FINISHED | CANCELED | CLOSED | ERROR | UNKNOWN | TIMEDOUT)
    }
}

/// `TOperationType` values.
pub mod op_type {
    pub const EXECUTE_STATEMENT: i32 = 0;
    pub const GET_TYPE_INFO: i32 = 1;
    pub const GET_CATALOGS: i32 = 2;
    pub const GET_SCHEMAS: i32 = 3;
    pub const GET_TABLES: i32 = 4;
    pub const GET_TABLE_TYPES: i32 = 5;
    pub const GET_COLUMNS: i32 = 6;
    pub const GET_FUNCTIONS: i32 = 7;
    pub const UNKNOWN: i32 = 8;
}

/// `TGetInfoType` values that every server answers (the cheap probes).
pub mod info_type {
    pub const SERVER_NAME: i32 = 13;
    pub const DBMS_NAME: i32 = 17;
    pub const DBMS_VER: i32 = 18;
}

/// `TTypeId` values of the column types the mock produces.
pub mod type_id {
    pub const BOOLEAN: i32 = 0;
    pub const INT: i32 = 3;
    pub const BIGINT: i32 = 4;
    pub const STRING: i32 = 7;
}

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
    /// `TStatusCode` (see [`crate::hs2::call::status`]).
    pub code: i64,
    /// `errorMessage`, or empty.
    pub message: String,
}

impl Status {
    /// SUCCESS or SUCCESS_WITH_INFO (or STILL_EXECUTING, which is not a failure).
    pub fn is_success(&self) -> bool {
        use crate::hs2::call::status::{STILL_EXECUTING, SUCCESS, SUCCESS_WITH_INFO};
        matches!(self.code, SUCCESS | SUCCESS_WITH_INFO | STILL_EXECUTING)
    }
}

/// A `TOperationHandle {1: operationId, 2: operationType, 3: hasResultSet}` with the type the client knows.
/// (Session handles: [`requests::session_handle`].)
pub fn operation_handle_value(op: &OpHandle) -> Value {
    Struct::new()
        .with(1, requests::handle_identifier(&op.id))
        .with(2, Value::I32(op.op_type))
        .with(3, Value::Bool(op.has_result_set))
        .into_value()
}

/// Reads a `THandleIdentifier`; `None` unless guid and secret are 16 bytes each.
pub fn read_handle_id(id: &Struct) -> Option<HandleId> {
    let guid: [u8; ID_BYTES] = id.get_bytes(1)?.try_into().ok()?;
    let secret: [u8; ID_BYTES] = id.get_bytes(2)?.try_into().ok()?;
    Some(HandleId { guid: Guid(guid), secret: Secret(secret) })
}

/// Reads the id of a `TSessionHandle` or `TOperationHandle` (both keep it in field 1).
pub fn read_handle(handle: &Struct) -> Option<HandleId> {
    read_handle_id(handle.get_struct(1)?)
}

/// Reads a `TOperationHandle`.
pub fn read_op_handle(handle: &Struct) -> Option<OpHandle> {
    Some(OpHandle {
        id: read_handle(handle)?,
        op_type: handle.get_i64(2).unwrap_or(op_type::UNKNOWN as i64) as i32,
        has_result_set: handle.get_bool(3).unwrap_or(false),
    })
}

/// Reads field 1 (`TStatus`) of a response; `None` when it is missing or has no code.
pub fn read_status(resp: &Struct) -> Option<Status> {
    let status = resp.get_struct(1)?;
    Some(Status { code: status.get_i64(1)?, message: status.get_str(5).unwrap_or_default().to_string() })
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
        assert_eq!(idl::enum_value("TOperationState", "FINISHED_STATE"), Some(op_state::FINISHED));
        assert_eq!(idl::enum_value("TOperationType", "GET_FUNCTIONS"), Some(op_type::GET_FUNCTIONS));
        assert_eq!(idl::enum_value("TGetInfoType", "CLI_DBMS_VER"), Some(info_type::DBMS_VER));
        assert_eq!(idl::enum_value("TTypeId", "STRING_TYPE"), Some(type_id::STRING));
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
