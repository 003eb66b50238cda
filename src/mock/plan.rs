//! A query's plan as an impalad would report it: the operators of each statement of the mock's dialect, and
//! the `TExecSummary` that GetExecSummary returns (what impala-shell's `summary` and live progress print).
//! No I/O.
//!
//! The summary is built with Apache Thrift's generated types for `idl/impala.thrift`, which declares
//! `TExecSummary` and its parts as apache/impala's `common/thrift/ExecStats.thrift` has them.

use super::rowset::CRASH_ROWS;
use super::sql::Statement;
use super::state::OpState;
use crate::hs2::rpc::impala::{
    TExecProgress, TExecState, TExecStats, TExecSummary, TImpalaStatus, TPlanNodeExecSummary,
};
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
pub fn exec_summary(plan: Option<&Plan>, state: &OpState) -> TExecSummary {
    let (code, done) = match state {
        OpState::Running { .. } => (TExecState::RUNNING, false),
        OpState::Finished => (TExecState::FINISHED, true),
        OpState::Canceled => (TExecState::CANCELLED, true),
        OpState::Failed(_) => (TExecState::FAILED, true),
    };
    let failure = match state {
        OpState::Failed(text) => Some(vec![text.clone()]),
        _ => None,
    };
    let status = failure.clone().map(|texts| TImpalaStatus::new(ERROR_CODE_GENERAL, texts));
    let mut summary = TExecSummary::new(code, status, None, None, None, None, None, None);
    let Some(plan) = plan else { return summary };
    let finished = matches!(state, OpState::Finished);
    summary.nodes = Some(plan.nodes.iter().map(|n| node_summary(n, finished)).collect());
    summary.exch_to_sender_map = Some(plan.exch_to_sender.iter().copied().collect());
    summary.error_logs = failure;
    summary.progress = Some(TExecProgress::new(
        plan.scan_ranges,
        if done { plan.scan_ranges } else { 0 },
        plan.fragments,
        if done { plan.fragments } else { 0 },
    ));
    summary.is_queued = Some(false);
    summary
}

fn stats(latency_ns: i64, rows: i64, memory: i64) -> TExecStats {
    TExecStats::new(latency_ns, latency_ns / 2, rows, memory)
}

/// One `TPlanNodeExecSummary`, with one instance on one host; a running node has produced nothing yet.
fn node_summary(n: &PlanNode, finished: bool) -> TPlanNodeExecSummary {
    let (latency, rows) = if finished { (n.latency_ns, n.rows) } else { (0, 0) };
    TPlanNodeExecSummary::new(
        n.node_id,
        n.fragment,
        n.label.clone(),
        n.detail.clone(),
        n.children,
        stats(0, n.rows, n.est_mem),
        vec![stats(latency, rows, n.peak_mem)],
        false,
        1,
    )
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
        let done = exec_summary(plan.as_ref(), &OpState::Finished);
        assert_eq!(done.state, TExecState::FINISHED);
        assert_eq!(done.nodes.as_ref().map(Vec::len), Some(4));
        assert_eq!(done.progress.and_then(|p| p.num_completed_fragment_instances), Some(2));
        let failed = exec_summary(None, &OpState::Failed("boom".into()));
        assert_eq!(failed.state, TExecState::FAILED);
        assert!(failed.nodes.is_none(), "no nodes: the shell prints 'Summary not available'");
        assert_eq!(failed.status.and_then(|s| s.error_msgs).map(|m| m.len()), Some(1));
    }
}
