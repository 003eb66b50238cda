//! Hive JDBC 2.3 (beeline, from the pyspark wheel) through hs2-proxy: a strict Java client that validates
//! the required fields of every reply, so replies the proxy writes itself are checked for real.

use std::time::{Duration, Instant};

use super::peers::{self, note, peers, Mode};
use super::{connect, owner_of, proxy_for, Timed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server, beeline): run by scripts/test.sh"]
async fn select_1_through_the_proxy() {
    let _t = Timed::start("beeline::select_1_through_the_proxy");
    let peers = peers().await;
    for mode in [Mode::Sasl, Mode::NoSasl] {
        let proxy = proxy_for(peers, mode).await;
        let mut cmd = peers::beeline(proxy.local_addr, mode, "jdbc");
        cmd.args(["--silent=true", "--outputformat=tsv2", "--showHeader=false", "-e", "select 1 as one"]);
        let ran = peers::run(cmd).await;
        let rows: Vec<&str> = data_lines(&ran.stdout);
        assert!(
            ran.ok && rows == ["1"],
            "beeline {mode:?} select 1 through hs2-proxy gave {rows:?}:\n{}{}",
            ran.stdout,
            ran.stderr
        );
        note(format!("{} beeline select 1 through hs2-proxy: ok in {:.1}s", mode.name(), ran.took.as_secs_f64()));
        proxy.shutdown();
    }
}

/// Output lines of `beeline --outputformat=tsv2 --silent=true -e`, less the prompt beeline 2.3 prints first.
fn data_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().map(|l| l.rsplit_once("> ").map_or(l, |(_, r)| r)).filter(|l| !l.trim().is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server, beeline): run by scripts/test.sh"]
async fn rows_100k_through_the_proxy_and_directly() {
    let _t = Timed::start("beeline::rows_100k_through_the_proxy_and_directly");
    let peers = peers().await;
    let mode = Mode::Sasl;
    let proxy = proxy_for(peers, mode).await;
    let mut took = Vec::new();
    for (via, addr) in [("hs2-proxy", proxy.local_addr), ("direct", peers.of(mode)[0].addr)] {
        let mut cmd = peers::beeline(addr, mode, "jdbc");
        cmd.args(["--silent=true", "--outputformat=tsv2", "--showHeader=false", "-e", "select id from range(100000)"]);
        let ran = peers::run(cmd).await;
        assert!(ran.ok, "beeline 100k rows {via} failed:\n{}", ran.stderr);
        let rows = data_lines(&ran.stdout);
        let wrong = rows.iter().enumerate().find(|(i, r)| r.parse::<usize>() != Ok(*i));
        assert!(rows.len() == 100_000 && wrong.is_none(), "beeline {via}: {} rows, first wrong {wrong:?}", rows.len());
        took.push((via, ran.took));
    }
    let (p, d) = (took[0].1.as_secs_f64(), took[1].1.as_secs_f64());
    note(format!(
        "sasl beeline 100,000 rows (one GetOperationStatus per row): hs2-proxy {p:.1}s, direct {d:.1}s \
        (x{:.2})",
        p / d
    ));
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server, beeline): run by scripts/test.sh"]
async fn parses_the_unknown_session_reply() {
    let _t = Timed::start("beeline::parses_the_unknown_session_reply");
    let peers = peers().await;
    let mode = Mode::Sasl;
    let proxy = proxy_for(peers, mode).await;
    let dir = peers.root.join("beeline-unknown-session");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    // beeline runs a statement, then waits in `!sh` while its session is closed on the server behind its
    // back (as a server-side idle timeout or an administrator would), then goes on: `select 2` gets Spark's
    // own error (forwarded; the proxy forgets the session), `!tables` (GetTables), `select 3` and the final
    // CloseSession get replies the proxy writes itself, since no backend holds the session any more.
    let gate = peers::repo().join("tests/interop/gate.sh");
    let gate = format!("!sh {} {} {}", gate.display(), ready.display(), go.display());
    let mut cmd = peers::beeline(proxy.local_addr, mode, "jdbc");
    cmd.args(["--silent=true", "--force=true", "--outputformat=tsv2", "--showHeader=false"]);
    for statement in ["select 1 as before", &gate, "select 2 as spark_says", "!tables", "select 3 as proxy_says"] {
        cmd.args(["-e", statement]); // one -e each: --force goes on after an error only between -e's
    }
    let run = tokio::spawn(peers::run(cmd));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline && !run.is_finished(), "beeline never reached the gate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sessions = proxy.proxy.session_ids();
    assert_eq!(sessions.len(), 1, "beeline's one session");
    let session = proxy.proxy.with_session(&sessions[0], |e| e.handle(sessions[0])).expect("known");
    let mut direct = connect(owner_of(&proxy, &session), &mode.auth("jdbc")).await;
    direct.close_session(&session).await.expect("CloseSession directly on the server");
    std::fs::write(&go, "").expect("open the gate");
    let ran = run.await.expect("join");
    let out = format!("{}{}", ran.stdout, ran.stderr);
    println!("{out}");
    let synthesized = hs2_proxy::hs2::reply::invalid_session_text(&session.guid);
    assert_eq!(data_lines(&ran.stdout), ["1"], "only the first statement returns rows:\n{out}");
    assert!(out.contains("Error: Invalid SessionHandle"), "select 2 shows Spark's own text:\n{out}");
    assert!(out.matches(&synthesized).count() >= 2, "!tables and select 3 show '{synthesized}':\n{out}");
    assert!(out.contains("state=HY000"), "beeline shows the synthesized reply's SQLSTATE:\n{out}");
    // A reply Hive JDBC cannot parse shows as TProtocolException, TApplicationException or a
    // NullPointerException; a refused one as an error other than the two texts above.
    assert!(!out.contains("Exception"), "beeline shows a Java exception:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("Error:")).collect();
    let other = errors.iter().find(|l| !l.contains("Invalid SessionHandle") && !l.contains(&synthesized));
    assert!(other.is_none(), "unexpected beeline error {other:?}:\n{out}");
    note(format!("beeline (Hive JDBC 2.3) parsed, without a Java exception: {errors:?}"));
    proxy.shutdown();
}
