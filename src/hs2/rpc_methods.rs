//! The typed method table of [`super::rpc`] (every method of `idl/`'s two services) and each response's
//! failed form. A test checks the table against the IDL's method table (`crate::hs2::idl`). No I/O.

use std::collections::BTreeSet;

use super::hs2::*;
use super::impala::*;
use super::{Method, Response};

macro_rules! methods {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "(", stringify!($req), ") -> ", stringify!($resp), "`")]
            pub struct $name;
            impl Method for $name {
                const NAME: &'static str = stringify!($name);
                type Req = $req;
                type Resp = $resp;
            }
        )*
        /// Every method in the table: name, request type, response type.
        pub const METHODS: &[(&str, &str, &str)] = &[$((stringify!($name), stringify!($req), stringify!($resp))),*];
    };
}

methods! {
    OpenSession(TOpenSessionReq) -> TOpenSessionResp;
    CloseSession(TCloseSessionReq) -> TCloseSessionResp;
    GetInfo(TGetInfoReq) -> TGetInfoResp;
    ExecuteStatement(TExecuteStatementReq) -> TExecuteStatementResp;
    GetTypeInfo(TGetTypeInfoReq) -> TGetTypeInfoResp;
    GetCatalogs(TGetCatalogsReq) -> TGetCatalogsResp;
    GetSchemas(TGetSchemasReq) -> TGetSchemasResp;
    GetTables(TGetTablesReq) -> TGetTablesResp;
    GetTableTypes(TGetTableTypesReq) -> TGetTableTypesResp;
    GetColumns(TGetColumnsReq) -> TGetColumnsResp;
    GetFunctions(TGetFunctionsReq) -> TGetFunctionsResp;
    GetPrimaryKeys(TGetPrimaryKeysReq) -> TGetPrimaryKeysResp;
    GetCrossReference(TGetCrossReferenceReq) -> TGetCrossReferenceResp;
    GetOperationStatus(TGetOperationStatusReq) -> TGetOperationStatusResp;
    CancelOperation(TCancelOperationReq) -> TCancelOperationResp;
    CloseOperation(TCloseOperationReq) -> TCloseOperationResp;
    GetResultSetMetadata(TGetResultSetMetadataReq) -> TGetResultSetMetadataResp;
    FetchResults(TFetchResultsReq) -> TFetchResultsResp;
    GetDelegationToken(TGetDelegationTokenReq) -> TGetDelegationTokenResp;
    CancelDelegationToken(TCancelDelegationTokenReq) -> TCancelDelegationTokenResp;
    RenewDelegationToken(TRenewDelegationTokenReq) -> TRenewDelegationTokenResp;
    GetQueryId(TGetQueryIdReq) -> TGetQueryIdResp;
    SetClientInfo(TSetClientInfoReq) -> TSetClientInfoResp;
    UploadData(TUploadDataReq) -> TUploadDataResp;
    DownloadData(TDownloadDataReq) -> TDownloadDataResp;
    GetLog(TGetLogReq) -> TGetLogResp;
    GetExecSummary(TGetExecSummaryReq) -> TGetExecSummaryResp;
    GetRuntimeProfile(TGetRuntimeProfileReq) -> TGetRuntimeProfileResp;
    PingImpalaHS2Service(TPingImpalaHS2ServiceReq) -> TPingImpalaHS2ServiceResp;
    CloseImpalaOperation(TCloseImpalaOperationReq) -> TCloseImpalaOperationResp;
    ExecutePlannedStatement(TExecutePlannedStatementReq) -> TExecuteStatementResp;
    GetBackendConfig(TGetBackendConfigReq) -> TGetBackendConfigResp;
    GetExecutorMembership(TGetExecutorMembershipReq) -> TGetExecutorMembershipResp;
}

/// `Response` for types whose status is field `status`; the braces list every other field's failed value
/// (a struct literal, so that a field added to the IDL fails the build here until it is given one).
macro_rules! responses {
    ($($resp:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        $(impl Response for $resp {
            fn status(&self) -> Option<&TStatus> {
                Some(&self.status)
            }
            fn failed(status: TStatus) -> Option<Self> {
                Some($resp { status, $($field: $value),* })
            }
        })*
    };
}

/// The zero `TOperationHandle` that UploadData and DownloadData must carry even when they fail.
fn zero_operation() -> TOperationHandle {
    TOperationHandle::new(
        THandleIdentifier::new(Vec::new(), Vec::new()),
        TOperationType::EXECUTE_STATEMENT,
        false,
        None,
    )
}

responses! {
    TOpenSessionResp {
        server_protocol_version: TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V1,
        session_handle: None,
        configuration: None,
    }
    TCloseSessionResp {}
    TGetInfoResp { info_value: TGetInfoValue::StringValue(String::new()) }
    TExecuteStatementResp { operation_handle: None }
    TGetTypeInfoResp { operation_handle: None }
    TGetCatalogsResp { operation_handle: None }
    TGetSchemasResp { operation_handle: None }
    TGetTablesResp { operation_handle: None }
    TGetTableTypesResp { operation_handle: None }
    TGetColumnsResp { operation_handle: None }
    TGetFunctionsResp { operation_handle: None }
    TGetPrimaryKeysResp { operation_handle: None }
    TGetCrossReferenceResp { operation_handle: None }
    TGetOperationStatusResp {
        operation_state: None,
        sql_state: None,
        error_code: None,
        error_message: None,
        task_status: None,
        operation_started: None,
        operation_completed: None,
        has_result_set: None,
        progress_update_response: None,
        num_modified_rows: None,
    }
    TCancelOperationResp {}
    TCloseOperationResp {}
    TGetResultSetMetadataResp { schema: None }
    TFetchResultsResp { has_more_rows: None, results: None }
    TGetDelegationTokenResp { delegation_token: None }
    TCancelDelegationTokenResp {}
    TRenewDelegationTokenResp {}
    TSetClientInfoResp {}
    TUploadDataResp { operation_handle: zero_operation() }
    TDownloadDataResp { operation_handle: zero_operation() }
    TGetLogResp { log: String::new() }
    TGetExecSummaryResp { summary: None, failed_summaries: None }
    TGetRuntimeProfileResp { profile: None, thrift_profile: None, failed_profiles: None, failed_thrift_profiles: None }
    TPingImpalaHS2ServiceResp { version: None, webserver_address: None, timestamp: None }
    TCloseImpalaOperationResp { dml_result: None }
    TGetBackendConfigResp { backend_config: TBackendGflags {} }
    TGetExecutorMembershipResp {
        executor_membership: TUpdateExecutorMembershipRequest {
            hostnames: BTreeSet::new(),
            ip_addresses: BTreeSet::new(),
            exec_group_sets: None,
        },
    }
}

/// GetQueryId's response has no status: a failed GetQueryId is an exception.
impl Response for TGetQueryIdResp {
    fn status(&self) -> Option<&TStatus> {
        None
    }
    fn failed(_: TStatus) -> Option<Self> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::idl;

    #[test]
    fn the_table_is_the_idls() {
        for (name, req, resp) in METHODS {
            let spec = idl::method(name).unwrap_or_else(|| panic!("the IDL has no method {name}"));
            assert_eq!((spec.request, spec.response), (*req, *resp), "{name}");
        }
        assert_eq!(METHODS.len(), idl::METHODS.len(), "every IDL method is in the table");
    }
}
