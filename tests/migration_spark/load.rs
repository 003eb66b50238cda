//! Clients that run queries in a loop while the servers behind an endpoint restart, each on one session
//! with its own state (a database and `spark.sql.shuffle.partitions`), counting every error it sees:
//! - impyla (DB-API, one connection and cursor: `tests/interop/impyla_loop.py`);
//! - beeline (Hive JDBC 2.3, one connection, statements fed through its stdin);
//! - the Hue pattern (our client: one session, every call on a new connection).
//!
//! Each query shows the session's state (`select current_database(), '${spark.sql.shuffle.partitions}'`:
//! Spark substitutes the session's value), so a session that was silently re-created elsewhere counts as
//! an error too. A client whose connection broke connects again (a new session, its state set again), as
//! an application's retry would, and goes on.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::ColumnExt;

use super::hue::{heals_hue, on_new};
use super::servers::{auth, repo};

/// Pause between two queries of one client (its think time: the window in which a session is idle).
const THINK_TIME: Duration = Duration::from_millis(200);
/// Longest one beeline statement may take before the driver calls it lost.
const BEELINE_STATEMENT: Duration = Duration::from_secs(120);

/// The databases the load's sessions use; they must exist on every server.
pub const DATABASES: [&str; 3] = ["impyla_db", "beeline_db", "hue_db"];

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub client: &'static str,
    pub queries: u64,
    /// Each failed query (or one that showed the wrong state), with its text.
    pub errors: Vec<String>,
    /// Queries that answered with another database or setting than the session's.
    pub state_lost: u64,
    /// New sessions the client had to open after an error.
    pub reconnects: u64,
}

impl Tally {
    pub fn line(&self) -> String {
        format!(
            "{:<8} {:>4} queries, {:>3} errors ({} state lost), {} new sessions",
            self.client,
            self.queries,
            self.errors.len(),
            self.state_lost,
            self.reconnects
        )
    }
}

/// The three clients, running.
pub struct Load {
    impyla: (Child, std::thread::JoinHandle<Vec<String>>),
    beeline: std::thread::JoinHandle<Tally>,
    hue: tokio::task::JoinHandle<Tally>,
    stop: Arc<AtomicBool>,
    stop_file: PathBuf,
}

impl Load {
    /// Starts the three clients against `addr`; returns once each has opened its session and set its state.
    pub async fn start(addr: SocketAddr, dir: &std::path::Path) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_file = dir.join(format!("stop-load-{}", addr.port()));
        let _ = std::fs::remove_file(&stop_file);
        // Both wait (blocking) until their client has set its state: off the runtime, which serves the proxy.
        let file = stop_file.clone();
        let impyla = tokio::task::spawn_blocking(move || start_impyla(addr, &file));
        let flag = stop.clone();
        let beeline = tokio::task::spawn_blocking(move || start_beeline(addr, flag));
        let hue = tokio::spawn(hue_loop(addr, stop.clone()));
        let (impyla, beeline) = (impyla.await.expect("join"), beeline.await.expect("join"));
        Load { impyla, beeline, hue, stop, stop_file }
    }

    /// Stops the clients and returns what each saw.
    pub async fn stop(self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        std::fs::write(&self.stop_file, "").expect("write the stop file");
        let (mut child, lines) = self.impyla;
        let impyla = tokio::task::spawn_blocking(move || {
            let _ = child.wait();
            impyla_tally(&lines.join().expect("impyla reader"))
        });
        let beeline = tokio::task::spawn_blocking(move || self.beeline.join().expect("beeline driver"));
        vec![impyla.await.expect("join"), beeline.await.expect("join"), self.hue.await.expect("hue loop")]
    }
}

/// The tick query and the row it must answer with.
fn tick(i: u64) -> String {
    format!("select current_database(), '${{spark.sql.shuffle.partitions}}', 'tick-{i}'")
}

fn start_impyla(addr: SocketAddr, stop_file: &std::path::Path) -> (Child, std::thread::JoinHandle<Vec<String>>) {
    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", python.display());
    let mut child = Command::new(python)
        .arg(repo().join("tests/interop/impyla_loop.py"))
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string(), "--db", DATABASES[0], "--partitions", "3"])
        .arg("--stop")
        .arg(stop_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("impyla_loop.py starts");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in out.lines().map_while(Result::ok) {
            if line == "impyla_loop: ready" {
                let _ = ready_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("impyla opened its session");
    (child, reader)
}

fn impyla_tally(lines: &[String]) -> Tally {
    let mut t = Tally { client: "impyla", ..Tally::default() };
    let summary = lines.iter().find_map(|l| l.strip_prefix("impyla_loop: queries="));
    let summary = summary.unwrap_or_else(|| panic!("impyla_loop.py ended without its summary:\n{}", lines.join("\n")));
    let field = |key: &str| {
        summary.split_whitespace().find_map(|kv| kv.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    t.queries = summary.split_whitespace().next().and_then(|q| q.parse().ok()).unwrap_or(0);
    t.state_lost = field("state_lost=");
    t.reconnects = field("reconnects=");
    t.errors = lines.iter().filter_map(|l| l.strip_prefix("error: ")).map(str::to_string).collect();
    t
}

/// What beeline printed, line by line, from either stream.
enum Out {
    Row(String),
    Error(String),
}

fn start_beeline(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Tally> {
    let url = format!("jdbc:hive2://{addr}/{}", DATABASES[1]);
    let mut child = Command::new(repo().join("scripts/beeline.sh"))
        .args(["-u", &url, "-n", "beeline", "-p", "pw"])
        .args(["--silent=true", "--force=true", "--outputformat=tsv2", "--showHeader=false"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/beeline.sh starts");
    let (tx, rx) = mpsc::channel();
    let rows = BufReader::new(child.stdout.take().expect("stdout"));
    let tx_rows = tx.clone();
    std::thread::spawn(move || {
        for line in rows.lines().map_while(Result::ok) {
            // beeline puts its prompt before the row it prints next.
            let row = line.rsplit_once("> ").map_or(line.as_str(), |(_, r)| r).to_string();
            let _ = tx_rows.send(Out::Row(row));
        }
    });
    let errors = BufReader::new(child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in errors.lines().map_while(Result::ok) {
            if let Some(at) = line.find("Error: ") {
                let _ = tx.send(Out::Error(line[at..].chars().take(300).collect()));
            }
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let (ready_tx, ready_rx) = mpsc::channel();
    let driver = std::thread::spawn(move || {
        let mut t = Tally { client: "beeline", ..Tally::default() };
        let setting = "set spark.sql.shuffle.partitions=5;\n";
        writeln!(stdin, "{setting}").expect("beeline stdin");
        expect_row(&rx, "spark.sql.shuffle.partitions\t5").expect("beeline set its state");
        let _ = ready_tx.send(());
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            t.queries += 1;
            writeln!(stdin, "{};", tick(i)).expect("beeline stdin");
            let want = format!("{}\t5\ttick-{i}", DATABASES[1]);
            match expect_row(&rx, &format!("tick-{i}")) {
                Ok(row) if row == want => {}
                Ok(row) => {
                    t.state_lost += 1;
                    t.errors.push(format!("{i} state lost: {row}"));
                }
                Err(e) => {
                    t.errors.push(format!("{i} {e}"));
                    // A broken connection stays broken in beeline: connect again, set the state again.
                    writeln!(stdin, "!reconnect\n{setting}").expect("beeline stdin");
                    t.reconnects += 1;
                    if let Err(e) = expect_row(&rx, "spark.sql.shuffle.partitions\t5") {
                        t.errors.push(format!("{i} reconnecting: {e}"));
                    }
                }
            }
            std::thread::sleep(THINK_TIME);
        }
        writeln!(stdin, "!quit").expect("beeline stdin");
        drop(stdin);
        let _ = child.wait();
        t
    });
    ready_rx.recv_timeout(Duration::from_secs(90)).expect("beeline opened its session");
    driver
}

/// Waits for a row containing `marker`; an error line first fails it.
fn expect_row(rx: &mpsc::Receiver<Out>, marker: &str) -> Result<String, String> {
    loop {
        match rx.recv_timeout(BEELINE_STATEMENT) {
            Ok(Out::Row(row)) if row.contains(marker) => return Ok(row),
            Ok(Out::Row(_)) => {}
            Ok(Out::Error(e)) => return Err(e),
            Err(_) => return Err(format!("no answer within {BEELINE_STATEMENT:?}")),
        }
    }
}

/// Hue's way: one session, stored; every call on a new connection; on a text Hue heals from, a new session.
/// Through an endpoint that cannot carry a session across connections (HAProxy), even setting the
/// session's state fails: each attempt counts as an error and the next query tries again.
async fn hue_loop(addr: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let mut t = Tally { client: "hue", ..Tally::default() };
    let mut session = None;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        t.queries += 1;
        let s = match session {
            Some(s) => s,
            None => match hue_session(addr).await {
                Ok(s) => {
                    t.reconnects += u64::from(i > 1);
                    *session.insert(s)
                }
                Err(e) => {
                    t.errors.push(format!("{i} opening a session with its state: {}", short(&e)));
                    tokio::time::sleep(THINK_TIME).await;
                    continue;
                }
            },
        };
        match hue_query(addr, &s, i).await {
            Ok(row) if row == [DATABASES[2].to_string(), "4".into(), format!("tick-{i}")] => {}
            Ok(row) => {
                t.state_lost += 1;
                t.errors.push(format!("{i} state lost: {row:?}"));
            }
            Err(e) => {
                t.errors.push(format!("{i} {}", short(&e)));
                if heals_hue(&e) {
                    session = None;
                }
            }
        }
        tokio::time::sleep(THINK_TIME).await;
    }
    if let Some(s) = session {
        let _ = on_new(addr, &auth("hue"), |c| Box::pin(async move { c.close_session(&s).await })).await;
    }
    t
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

async fn hue_session(addr: SocketAddr) -> Result<HandleId, String> {
    let s = on_new(addr, &auth("hue"), |c| Box::pin(async move { c.open_session(Some("hue"), &[]).await })).await?;
    for statement in [format!("use {}", DATABASES[2]), "set spark.sql.shuffle.partitions=4".into()] {
        hue_statement(addr, &s, &statement).await?;
    }
    Ok(s)
}

async fn hue_statement(addr: SocketAddr, s: &HandleId, statement: &str) -> Result<(), String> {
    let (s, statement) = (*s, statement.to_string());
    let op = on_new(addr, &auth("hue"), |c| Box::pin(async move { c.execute(&s, &statement).await })).await?;
    on_new(addr, &auth("hue"), |c| Box::pin(async move { c.wait_finished(&op).await })).await?;
    on_new(addr, &auth("hue"), |c| Box::pin(async move { c.close_operation(&op).await })).await
}

/// One query: executed, polled, fetched and closed, each on a new connection; returns its one row.
async fn hue_query(addr: SocketAddr, s: &HandleId, i: u64) -> Result<Vec<String>, String> {
    let (s, a) = (*s, auth("hue"));
    let op = on_new(addr, &a, |c| Box::pin(async move { c.execute(&s, &tick(i)).await })).await?;
    let state = on_new(addr, &a, |c| Box::pin(async move { c.wait_finished(&op).await })).await?;
    if state != hs2_proxy::hs2::rpc::hs2::TOperationState::FINISHED_STATE {
        return Err(format!("the query ended in state {state:?}"));
    }
    let (cols, _) = on_new(addr, &a, |c| Box::pin(async move { c.fetch(&op, 10).await })).await?;
    on_new(addr, &a, |c| Box::pin(async move { c.close_operation(&op).await })).await?;
    Ok(cols
        .iter()
        .map(|c| c.as_strs().and_then(|v| v.first().map(|s| s.to_string())).unwrap_or_else(|| "?".into()))
        .collect())
}
