// hs2-proxy: our own description of Impala's HiveServer2 extension service
// (ImpalaHiveServer2Service), which adds methods on top of TCLIService.
// Request/response structs are complete; Impala-internal payload types that the
// proxy never decodes are declared as empty (opaque) structs: their bytes are
// skipped/forwarded as-is. Those the mock impalad answers with (TExecSummary,
// TDmlResult) are declared, for Apache Thrift's generated code (idl/README.md).

// Where Apache Thrift's Rust generator puts the code (src/hs2/generated).
namespace rs hs2.generated

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


// Opaque to the proxy: thrift form of a query profile (RuntimeProfile.thrift).
struct TRuntimeProfileTree {
}

// DML row counts returned by CloseImpalaOperation (impala-shell needs them after a DML statement), per
// partition ("" when unpartitioned). Impala's optional row-error and per-partition stats fields are left out.
struct TDmlResult {
  1: required map<string, i64> rows_modified,
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

// ---------------------------------------------------------------- exec summary (ExecStats.thrift)
// The proxy never decodes these; they are declared so that the mock impalad can answer GetExecSummary
// with Apache Thrift's generated types (impala-shell prints them for `summary` and live progress).
// Fields Impala leaves at the default requiredness are `optional` here (same wire behaviour).

// A query's state in its exec summary.
enum TExecState {
  REGISTERED = 0,
  PLANNING = 1,
  QUEUED = 2,
  RUNNING = 3,
  FINISHED = 4,
  CANCELLED = 5,
  FAILED = 6,
}

// Impala's own status (Status.thrift TStatus; renamed here so as not to shadow hs2.TStatus).
struct TImpalaStatus {
  1: required i32 status_code,   // ErrorCodes.thrift TErrorCode
  2: optional list<string> error_msgs,
}

struct TExecStats {
  1: optional i64 latency_ns,
  2: optional i64 cpu_time_ns,
  3: optional i64 cardinality,
  4: optional i64 memory_used,
}

struct TPlanNodeExecSummary {
  1: required i32 node_id,
  2: required i32 fragment_idx,
  3: required string label,
  4: optional string label_detail,
  5: required i32 num_children,
  6: optional TExecStats estimated_stats,
  7: optional list<TExecStats> exec_stats,
  8: optional bool is_broadcast,
  9: optional i32 num_hosts,
}

struct TExecProgress {
  1: optional i64 total_scan_ranges,
  2: optional i64 num_completed_scan_ranges,
  3: optional i64 total_fragment_instances,
  4: optional i64 num_completed_fragment_instances,
}

// Per-operator execution summary of a query.
struct TExecSummary {
  1: required TExecState state,
  2: optional TImpalaStatus status,
  3: optional list<TPlanNodeExecSummary> nodes,
  4: optional map<i32, i32> exch_to_sender_map,
  5: optional list<string> error_logs,
  6: optional TExecProgress progress,
  7: optional bool is_queued,
  8: optional string queued_reason,
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
