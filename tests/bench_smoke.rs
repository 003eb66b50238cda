//! The benchmark keeps building and running: a seconds-long `scripts/bench.sh --smoke` against mock
//! impalads, HAProxy and hs2-proxy must produce every figure. It asserts that figures exist, never how
//! fast they are (speed targets live in docs/benchmarks.md, measured by the full run).

use std::process::Command;

#[test]
#[ignore = "real peer (HAProxy): run by scripts/test.sh"]
fn bench_smoke_run_produces_every_figure() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let status = Command::new("bash")
        .arg(format!("{repo}/scripts/bench.sh"))
        .arg("--smoke")
        .env("BENCH_SMOKE_OUT", out.path())
        .current_dir(repo)
        .status()
        .expect("bash runs");
    assert!(status.success(), "scripts/bench.sh --smoke failed");
    let report = std::fs::read_to_string(out.path()).expect("the report is written");
    println!("{report}");
    for section in [
        "## Small RPC",
        "## Query loop",
        "## TLS on the client side",
        "## Bulk FetchResults",
        "## Idle connections",
        "## Pooled client",
        "## Spread over rounds",
    ] {
        assert!(report.contains(section), "missing {section}");
    }
    // Every target produced numbers in every table row.
    for row in
        report.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| target |") && !l.starts_with("| clients |"))
    {
        if row.contains("not measured") || row.starts_with("| ---") {
            continue;
        }
        let is_target_row = ["direct", "haproxy", "hs2-proxy", "haproxy-tls", "hs2-proxy-tls"]
            .iter()
            .any(|t| row.contains(&format!("| {t} |")));
        if is_target_row {
            assert!(!row.contains("n/a |"), "a figure is missing: {row}");
        }
    }
    assert!(!report.contains("not measured"), "every target check was measured:\n{report}");
    // The smoke run has one round: every comparison shows it.
    let spread = report.split("## Spread over rounds").nth(1).unwrap_or_default();
    let rows: Vec<&str> = spread.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| comparison")).collect();
    assert!(rows.len() >= 8, "the spread table has a row per comparison:\n{spread}");
    for row in rows {
        assert!(row.ends_with(" of 1 |"), "a comparison without its round: {row}");
    }
}
