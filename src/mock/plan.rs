//! A query's plan as an impalad would report it: the operators of each statement of the mock's dialect, and
//! the `TExecSummary` that GetExecSummary returns (what impala-shell's `summary` and live progress print).
//! No I/O.
//!
//! Field ids follow apache/impala `common/thrift/ExecStats.thrift` (our IDL keeps `TExecSummary` opaque):
//! `TExecSummary {1: required TExecState state, 2: Status.TStatus status, 3: list<TPlanNodeExecSummary> nodes,
//! 4: map<i32, i32> exch_to_sender_map, 5: list<string> error_logs, 6: TExecProgress progress, 7: bool is_queued,
//! 8: string queued_reason}`; `TPlanNodeExecSummary {1: required node_id, 2: required fragment_idx,
//! 3: required label, 4: label_detail, 5: required num_children, 6: estimated_stats, 7: list exec_stats,
//! 8: is_broadcast, 9: num_hosts}`; `TExecStats {1: latency_ns, 2: cpu_time_ns, 3: cardinality,
//! 4: memory_used}` (all i64); `TExecProgress {1: total_scan_ranges, 2: num_completed_scan_ranges,
//! 3: total_fragment_instances, 4: num_completed_fragment_instances}`.

use super::rowset::CRASH_ROWS;
use super::sql::Statement;
use super::state::OpState;
use crate::thrift::value::{Struct, Value};
use crate::thrift::TType;

/// `TExecState` values.
mod exec_state {
    pub const RUNNING: i32 = 3;
    pub const FINISHED: i32 = 4;
    pub const CANCELLED: i32 = 5;
    pub const FAILED: i32 = 6;
}
/// `TErrorCode.GENERAL` (ErrorCodes.thrift), the code of a failed query's status.
const ERROR_CODE_GENERAL: i32 = 2;
/// The row size of the mock's tables (one BIGINT), for memory figures.
const ROW_BYTES: i64 = 8;

/// One row of the exec summary: a plan node, or a fragment's sink (`node_id` -1, printed without rows).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanNode {
    pub node_id: i32,
    pub fragment: i32,
    /// `00:SCAN HDFS`, `F01:ROOT`, ...
    pub label: String,
    pub detail: String,
    pub children: i32,
    /// Rows the node produces; the planner's estimate is the same.
    pub rows: i64,
    pub peak_mem: i64,
    pub est_mem: i64,
    /// Time the node takes once the query has finished.
    pub latency_ns: i64,
}

impl PlanNode {
    pub fn is_sink(&self) -> bool {
        self.node_id < 0
    }
}

/// The operators of a query, in Impala's order: each fragment's sink, then its nodes; an exchange's sender
/// fragment follows, found through `exch_to_sender` (indexes into `nodes`).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub nodes: Vec<PlanNode>,
    pub exch_to_sender: Vec<(i32, i32)>,
    pub fragments: i64,
    pub scan_ranges: i64,
}

fn node(node_id: i32, fragment: i32, label: &str, detail: &str, children: i32, rows: i64) -> PlanNode {
    let (peak_mem, est_mem, latency_ns) = if node_id < 0 { (4096, 0, 0) } else { (16384, 16384, 50_000) };
    PlanNode {
        node_id,
        fragment,
        label: label.to_string(),
        detail: detail.to_string(),
        children,
        rows,
        peak_mem,
        est_mem,
        latency_ns,
    }
}

/// A scan of `table` producing `rows`, under an exchange to the coordinator, under `root`.
fn scan_plan(root: &str, table: &str, rows: i64) -> Plan {
    let mut scan = node(0, 1, "00:SCAN HDFS", table, 0, rows);
    scan.peak_mem = 32 * 1024 + rows.saturating_mul(ROW_BYTES).min(64 << 20);
    scan.est_mem = 32 << 20;
    scan.latency_ns = 1_000_000 + rows.saturating_mul(5);
    let mut exchange = node(1, 0, "01:EXCHANGE", "UNPARTITIONED", 0, rows);
    exchange.latency_ns = 100_000 + rows;
    Plan {
        nodes: vec![
            node(-1, 0, &format!("F01:{root}"), "", 1, rows),
            exchange,
            node(-1, 1, "F00:EXCHANGE SENDER", "", 1, rows),
            scan,
        ],
        exch_to_sender: vec![(1, 2)],
        fragments: 2,
        scan_ranges: 1,
    }
}

/// Constant rows, evaluated on the coordinator: one fragment, no scan.
fn union_plan(root: &str, rows: i64) -> Plan {
    Plan {
        nodes: vec![
            node(-1, 0, &format!("F00:{root}"), "", 1, rows),
            node(0, 0, "00:UNION", &format!("constant-operands={rows}"), 0, rows),
        ],
        exch_to_sender: vec![],
        fragments: 1,
        scan_ranges: 0,
    }
}

impl Plan {
    /// The plan of a statement; `None` for statements Impala runs without a coordinator (DDL, SET, USE, SHOW).
    pub fn for_statement(stmt: &Statement) -> Option<Plan> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Some(match stmt {
            // A failed query's nodes show no rows: only a finished one reports them.
            Statement::Literal { .. }
            | Statement::Sleep(_)
            | Statement::Fail
            | Statement::User { .. }
            | Statement::CurrentDatabase => union_plan("ROOT", 1),
            Statement::Range(n) => scan_plan("ROOT", "default.range", count(*n)),
            Statement::Blobs { rows, .. } => scan_plan("ROOT", "default.blobs", count(*rows)),
            Statement::Crash => scan_plan("ROOT", "default.range", count(CRASH_ROWS)),
            Statement::Dml { rows } => union_plan("HDFS WRITER", count(*rows)),
            Statement::ShowOptions
            | Statement::SetOption { .. }
            | Statement::Use(_)
            | Statement::Ddl
            | Statement::ShowDatabases => return None,
        })
    }
}

/// The `TExecSummary` of a query in `state` run with `plan` (`None`: a summary without nodes).
pub fn exec_summary(plan: Option<&Plan>, state: &OpState) -> Value {
    let (code, done) = match state {
        OpState::Running { .. } => (exec_state::RUNNING, false),
        OpState::Finished => (exec_state::FINISHED, true),
        OpState::Canceled => (exec_state::CANCELLED, true),
        OpState::Failed(_) => (exec_state::FAILED, true),
    };
    let mut summary = Struct::new().with(1, Value::I32(code));
    if let OpState::Failed(text) = state {
        let status = Struct::new()
            .with(1, Value::I32(ERROR_CODE_GENERAL))
            .with(2, Value::List(TType::String, vec![Value::string(text)]));
        summary = summary.with(2, status.into_value());
    }
    let Some(plan) = plan else { return summary.into_value() };
    let finished = matches!(state, OpState::Finished);
    let nodes = plan.nodes.iter().map(|n| node_value(n, finished)).collect();
    let exch = plan.exch_to_sender.iter().map(|(e, s)| (Value::I32(*e), Value::I32(*s))).collect();
    let progress = Struct::new()
        .with(1, Value::I64(plan.scan_ranges))
        .with(2, Value::I64(if done { plan.scan_ranges } else { 0 }))
        .with(3, Value::I64(plan.fragments))
        .with(4, Value::I64(if done { plan.fragments } else { 0 }));
    let error_logs = match state {
        OpState::Failed(text) => Some(Value::List(TType::String, vec![Value::string(text)])),
        _ => None,
    };
    summary
        .with(3, Value::List(TType::Struct, nodes))
        .with(4, Value::Map(TType::I32, TType::I32, exch))
        .with_opt(5, error_logs)
        .with(6, progress.into_value())
        .with(7, Value::Bool(false))
        .into_value()
}

fn stats(latency_ns: i64, rows: i64, memory: i64) -> Value {
    Struct::new()
        .with(1, Value::I64(latency_ns))
        .with(2, Value::I64(latency_ns / 2))
        .with(3, Value::I64(rows))
        .with(4, Value::I64(memory))
        .into_value()
}

/// One `TPlanNodeExecSummary`, with one instance on one host; a running node has produced nothing yet.
fn node_value(n: &PlanNode, finished: bool) -> Value {
    let (latency, rows) = if finished { (n.latency_ns, n.rows) } else { (0, 0) };
    Struct::new()
        .with(1, Value::I32(n.node_id))
        .with(2, Value::I32(n.fragment))
        .with(3, Value::string(&n.label))
        .with(4, Value::string(&n.detail))
        .with(5, Value::I32(n.children))
        .with(6, stats(0, n.rows, n.est_mem))
        .with(7, Value::List(TType::Struct, vec![stats(latency, rows, n.peak_mem)]))
        .with(8, Value::Bool(false))
        .with(9, Value::I32(1))
        .into_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_statement() {
        let scan = Plan::for_statement(&Statement::Range(3)).unwrap();
        let labels: Vec<_> = scan.nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(labels, ["F01:ROOT", "01:EXCHANGE", "F00:EXCHANGE SENDER", "00:SCAN HDFS"]);
        assert_eq!(scan.exch_to_sender, vec![(1, 2)]);
        assert_eq!(Plan::for_statement(&Statement::Dml { rows: 2 }).unwrap().nodes[0].label, "F00:HDFS WRITER");
        assert_eq!(Plan::for_statement(&Statement::Ddl), None);
    }

    #[test]
    fn a_summary_carries_nodes_progress_and_failures() {
        let plan = Plan::for_statement(&Statement::Range(3));
        let Value::Struct(done) = exec_summary(plan.as_ref(), &OpState::Finished) else { panic!() };
        assert_eq!(done.get_i64(1), Some(exec_state::FINISHED as i64));
        assert_eq!(done.at(&[3]).and_then(Value::as_list).map(<[_]>::len), Some(4));
        assert_eq!(done.at(&[6, 4]).and_then(Value::as_i64), Some(2));
        let Value::Struct(failed) = exec_summary(None, &OpState::Failed("boom".into())) else { panic!() };
        assert_eq!(failed.get_i64(1), Some(exec_state::FAILED as i64));
        assert!(failed.get(3).is_none(), "no nodes: the shell prints 'Summary not available'");
        assert_eq!(failed.at(&[2, 2]).and_then(Value::as_list).map(<[_]>::len), Some(1));
    }
}
