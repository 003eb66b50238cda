//! The text runtime profile (GetRuntimeProfile, format STRING) of a mock query, in the shape of Impala's:
//! the `Query (id=...)` line that tools parse, the Summary block, the plan, the exec summary table, the
//! timeline and the server counters. No I/O.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::plan::{Plan, PlanNode};
use super::sql::Statement;
use super::state::{OpState, Operation};
use super::MOCK_VERSION;

/// The profile of `op`, run on the impalad called `host`.
pub fn text(op: &mut Operation, host: &str) -> String {
    let (state, status) = match op.state() {
        OpState::Running { .. } => ("RUNNING", "OK".to_string()),
        OpState::Finished => ("FINISHED", "OK".to_string()),
        OpState::Canceled => ("EXCEPTION", "Cancelled".to_string()),
        OpState::Failed(e) => ("EXCEPTION", e.clone()),
    };
    let plan = op.parsed.as_ref().and_then(Plan::for_statement);
    let elapsed = op.elapsed();
    let end = op.closed_after.map(|d| timestamp(op.submitted + d)).unwrap_or_default();
    let options = op.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let query_id = op.id.impala_id();
    let mut p = format!("Query (id={query_id}):\n  Summary:\n");
    let summary = [
        ("Session ID", op.session.impala_id()),
        ("Session Type", "HIVESERVER2".to_string()),
        ("HiveServer2 Protocol Version", "V6".to_string()),
        ("Start Time", timestamp(op.submitted)),
        ("End Time", end),
        ("Duration", pretty_time(elapsed.as_nanos() as i64)),
        ("Query Type", query_type(op.parsed.as_ref()).to_string()),
        ("Query State", state.to_string()),
        ("Query Status", status),
        ("Impala Version", format!("impalad version {MOCK_VERSION} RELEASE (build mock)")),
        ("User", op.effective_user.clone()),
        ("Connected User", op.user.clone()),
        ("Default Db", op.database.clone()),
        ("Sql Statement", op.statement.clone()),
        ("Coordinator", format!("{host}:27000")),
        ("Query Options (set by configuration)", options),
    ];
    for (k, v) in summary {
        let _ = writeln!(p, "    {k}: {v}");
    }
    if let Some(plan) = &plan {
        let _ = writeln!(p, "    Plan: \n----------------\n{}----------------", plan_text(plan));
        let _ = writeln!(p, "    ExecSummary: \n{}", summary_table(plan, matches!(op.state, OpState::Finished)));
    }
    let _ = writeln!(p, "    Query Timeline: {}", pretty_time(elapsed.as_nanos() as i64));
    for (i, event) in ["Query submitted", "Planning finished", "Rows available", "Last row fetched"].iter().enumerate()
    {
        let at = elapsed.as_nanos() as i64 * i as i64 / 4;
        let _ = writeln!(p, "       - {event}: {} ({at})", pretty_time(at));
    }
    let _ = write!(
        p,
        "  ImpalaServer:\n     - ClientFetchWaitTimer: 0ns\n     - NumRowsFetched: {rows} ({rows})\n",
        rows = op.rows_fetched
    );
    let _ = writeln!(
        p,
        "  Execution Profile {query_id}:(Total: {}, non-child: 0ns, % non-child: 0.00%)",
        pretty_time(elapsed.as_nanos() as i64)
    );
    p
}

fn query_type(stmt: Option<&Statement>) -> &'static str {
    match stmt {
        Some(Statement::Dml { .. }) => "DML",
        Some(Statement::SetOption { .. } | Statement::ShowOptions) => "SET",
        Some(Statement::Ddl | Statement::Use(_) | Statement::ShowDatabases) | None => "DDL",
        Some(_) => "QUERY",
    }
}

/// The plan as the profile's `Plan:` section lists it: operators top-down with their cardinality.
fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for n in &plan.nodes {
        if n.is_sink() {
            // A sink's label names its fragment: `F01:ROOT`.
            let (fragment, sink) = n.label.split_once(':').unwrap_or(("F00", &n.label));
            let _ = writeln!(out, "{fragment}:PLAN FRAGMENT hosts=1 instances=1");
            let _ = writeln!(out, "{}\n|", if sink == "ROOT" { "PLAN-ROOT SINK" } else { sink });
        } else {
            let detail = if n.detail.is_empty() { String::new() } else { format!(" [{}]", n.detail) };
            let _ = writeln!(out, "{}{detail}\n   row-size=8B cardinality={}\n|", n.label, pretty_units(n.rows));
        }
    }
    out
}

/// The exec summary table of the profile (the same rows as impala-shell's `summary`, tree prefixes left out).
fn summary_table(plan: &Plan, finished: bool) -> String {
    let header = [
        "Operator",
        "#Hosts",
        "#Inst",
        "Avg Time",
        "Max Time",
        "#Rows",
        "Est. #Rows",
        "Peak Mem",
        "Est. Peak Mem",
        "Detail",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    rows.extend(plan.nodes.iter().map(|n| summary_row(n, finished)));
    let widths: Vec<usize> = (0..header.len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        }
    }
    out
}

fn summary_row(n: &PlanNode, finished: bool) -> Vec<String> {
    let (latency, rows) = if finished { (n.latency_ns, n.rows) } else { (0, 0) };
    let (rows, est) =
        if n.is_sink() { (String::new(), String::new()) } else { (pretty_units(rows), pretty_units(n.rows)) };
    vec![
        n.label.clone(),
        "1".into(),
        "1".into(),
        pretty_time(latency),
        pretty_time(latency),
        rows,
        est,
        pretty_bytes(n.peak_mem),
        pretty_bytes(n.est_mem),
        n.detail.clone(),
    ]
}

/// impala-shell's pretty printing: the first unit without decimals, the others with two.
fn pretty(value: i64, units: &[&str], divisor: f64) -> String {
    let mut v = value as f64;
    for (i, unit) in units.iter().enumerate() {
        if v < divisor || i == units.len() - 1 {
            return if i == 0 { format!("{value}{unit}") } else { format!("{v:.2}{unit}") };
        }
        v /= divisor;
    }
    unreachable!("units is never empty")
}

pub fn pretty_time(ns: i64) -> String {
    pretty(ns, &["ns", "us", "ms", "s"], 1000.0)
}

pub fn pretty_bytes(bytes: i64) -> String {
    pretty(bytes, &[" B", " KB", " MB", " GB", " TB"], 1024.0)
}

pub fn pretty_units(n: i64) -> String {
    pretty(n, &["", "K", "M", "B"], 1000.0)
}

/// `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` in UTC, as Impala prints its profile times.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:09}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_impala_shell() {
        assert_eq!(pretty_time(999), "999ns");
        assert_eq!(pretty_time(1_500_000), "1.50ms");
        assert_eq!(pretty_bytes(16384), "16.00 KB");
        assert_eq!(pretty_units(3), "3");
        assert_eq!(pretty_units(25_000), "25.00K");
    }

    #[test]
    fn timestamps_are_civil_utc() {
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(timestamp(t), "2024-02-29 12:34:56.000000005");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000000000");
    }
}
