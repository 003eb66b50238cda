// hs2-proxy: our own description of Impala's HiveServer2 extension service
// (ImpalaHiveServer2Service), which adds methods on top of TCLIService.
// Request/response structs are complete; Impala-internal payload types that the
// proxy never decodes are declared as empty (opaque) structs: their bytes are
// skipped/forwarded as-is.

namespace rs impala

include "hs2.thrift"

// ---------------------------------------------------------------- enums

// Format asked for in GetRuntimeProfile.
enum TRuntimeProfileFormat {
  STRING = 0,
  BASE64 = 1,
  THRIFT = 2,
  JSON = 3,
}

// ---------------------------------------------------------------- opaque Impala-internal types

// Opaque to the proxy: per-operator execution summary (ExecStats.thrift).
struct TExecSummary {
}

// Opaque to the proxy: thrift form of a query profile (RuntimeProfile.thrift).
struct TRuntimeProfileTree {
}

// Opaque to the proxy: DML row counts returned by CloseImpalaOperation.
struct TDmlResult {
}

// Opaque to the proxy: externally planned query (Frontend.thrift).
struct TExecRequest {
}

// Opaque to the proxy: backend flag dump (BackendGflags.thrift). NOTE: the real struct
// has many REQUIRED fields, so an empty one fails strict (Java) validation.
struct TBackendGflags {
}

// Opaque to the proxy: executor group set description (Frontend.thrift).
struct TExecutorGroupSet {
}

// Opaque to the proxy: query context (Query.thrift). NOTE: the real struct has
// REQUIRED fields, so an empty one fails strict (Java) validation.
struct TQueryCtx {
}

// Executor membership snapshot (Frontend.thrift). Small enough to declare: its two
// REQUIRED sets must be written when a reply carrying it is synthesized.
struct TUpdateExecutorMembershipRequest {
  1: required set<string> hostnames,
  2: required set<string> ip_addresses,
  3: optional list<TExecutorGroupSet> exec_group_sets,   // default requiredness
}

// ---------------------------------------------------------------- GetLog
// Impala keeps this old method on its own copy of TCLIService; newest Hive dropped it.

struct TGetLogReq {
  1: required hs2.TOperationHandle operationHandle,
}

struct TGetLogResp {
  1: required hs2.TStatus status,
  2: required string log,   // required even on error
}

// ---------------------------------------------------------------- GetExecSummary

// Hue sends both handles.
struct TGetExecSummaryReq {
  1: optional hs2.TOperationHandle operationHandle,
  2: optional hs2.TSessionHandle sessionHandle,
  3: optional bool include_query_attempts = false,
}

struct TGetExecSummaryResp {
  1: required hs2.TStatus status,
  2: optional TExecSummary summary,
  3: optional list<TExecSummary> failed_summaries,
}

// ---------------------------------------------------------------- GetRuntimeProfile

struct TGetRuntimeProfileReq {
  1: optional hs2.TOperationHandle operationHandle,
  2: optional hs2.TSessionHandle sessionHandle,
  3: optional TRuntimeProfileFormat format = 0,   // default STRING
  4: optional bool include_query_attempts = false,
}

struct TGetRuntimeProfileResp {
  1: required hs2.TStatus status,
  2: optional string profile,                                   // STRING/BASE64/JSON
  3: optional TRuntimeProfileTree thrift_profile,               // THRIFT
  4: optional list<string> failed_profiles,
  5: optional list<TRuntimeProfileTree> failed_thrift_profiles,
}

// ---------------------------------------------------------------- PingImpalaHS2Service

struct TPingImpalaHS2ServiceReq {
  1: required hs2.TSessionHandle sessionHandle,
}

struct TPingImpalaHS2ServiceResp {
  1: required hs2.TStatus status,
  2: optional string version,
  3: optional string webserver_address,
  4: optional i64 timestamp,   // impalad monotonic clock
}

// ---------------------------------------------------------------- CloseImpalaOperation

struct TCloseImpalaOperationReq {
  1: required hs2.TOperationHandle operationHandle,
}

struct TCloseImpalaOperationResp {
  1: required hs2.TStatus status,
  2: optional TDmlResult dml_result,
}

// ---------------------------------------------------------------- "external frontend" calls

struct TExecutePlannedStatementReq {
  1: required hs2.TExecuteStatementReq statementReq,   // session handle at 1.1
  2: required TExecRequest plan,
}

struct TGetBackendConfigReq {
  1: required hs2.TSessionHandle sessionHandle,
}

struct TGetBackendConfigResp {
  1: required hs2.TStatus status,
  2: required TBackendGflags backend_config,   // required; opaque (see note on TBackendGflags)
}

struct TGetExecutorMembershipReq {
  1: required hs2.TSessionHandle sessionHandle,
}

struct TGetExecutorMembershipResp {
  1: required hs2.TStatus status,
  2: required TUpdateExecutorMembershipRequest executor_membership,
}

// Reply of InitQueryContext (see the service below).
struct TInitQueryContextResp {
  1: required hs2.TStatus status,
  2: required TQueryCtx query_ctx,   // required; opaque (see note on TQueryCtx)
}

// ---------------------------------------------------------------- the service

service ImpalaHiveServer2Service extends hs2.TCLIService {
  TGetLogResp GetLog(1: TGetLogReq req),
  TGetExecSummaryResp GetExecSummary(1: TGetExecSummaryReq req),
  TGetRuntimeProfileResp GetRuntimeProfile(1: TGetRuntimeProfileReq req),
  TPingImpalaHS2ServiceResp PingImpalaHS2Service(1: TPingImpalaHS2ServiceReq req),
  TCloseImpalaOperationResp CloseImpalaOperation(1: TCloseImpalaOperationReq req)
    (hs2proxy.effect = "closes_operation"),
  hs2.TExecuteStatementResp ExecutePlannedStatement(1: TExecutePlannedStatementReq req),
  TGetBackendConfigResp GetBackendConfig(1: TGetBackendConfigReq req),
  TGetExecutorMembershipResp GetExecutorMembership(1: TGetExecutorMembershipReq req),
  // Also on this service, but outside our method grammar because it takes NO argument
  // (its args struct is empty): TInitQueryContextResp InitQueryContext()
}
