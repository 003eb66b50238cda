//! impala-shell 4.6, the official Impala client, through the proxy and directly against a mock impalad. It
//! uses Impala's own RPCs (PingImpalaHS2Service, CloseImpalaOperation, GetExecSummary, GetRuntimeProfile)
//! and checks their replies, so it proves the proxy Impala-aware and the mock Impala-like.
//!
//! `#[ignore]`d like every real-peer suite: `scripts/test.sh` installs impala-shell (scripts/setup-python.sh)
//! and runs these with `--ignored`. A missing impala-shell fails every test loudly.
//!
//! The shell is driven without a terminal: it reads commands from stdin (`-q` for one statement). Piped
//! stdin still counts as an interactive session, so the shell pings before every command and polls
//! GetExecSummary for its live progress.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::mock::{MockAuth, MockImpalad};

/// Longest a shell may run; each test stays well under it.
const SHELL_DEADLINE: Duration = Duration::from_secs(30);
/// Impala's own calls, which only an Impala-aware proxy routes by their handles.
const IMPALA_METHODS: [&str; 4] =
    ["PingImpalaHS2Service", "CloseImpalaOperation", "GetExecSummary", "GetRuntimeProfile"];
/// The SASL user the mocks accept.
const USER: (&str, &str) = ("alice", "secret");

/// The interactive script of issue 8: use, set, a query, summary, profile, a second query, quit.
const SCRIPT: &str =
    "use default;\nset mem_limit=1g;\nselect id from range(3);\nsummary;\nprofile;\nselect 42;\nquit;\n";

fn impala_shell() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/impala-shell");
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    p
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    None,
    Plain,
}

impl Auth {
    fn mock(self) -> MockAuth {
        match self {
            Auth::None => MockAuth::NoSasl,
            Auth::Plain => MockAuth::Plain { users: Some(vec![(USER.0.into(), USER.1.into())]) },
        }
    }

    fn backend(self) -> BackendTransport {
        match self {
            Auth::None => BackendTransport::Nosasl,
            Auth::Plain => BackendTransport::Sasl,
        }
    }
}

/// What one shell printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// The impalad web server the shell learned from PingImpalaHS2Service (`Coordinator: http://HOST:25000`).
    fn ping_coordinator(&self) -> String {
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains("(Coordinator: http://"))
            .unwrap_or_else(|| panic!("no 'Query submitted at: ... (Coordinator: ...)' line:\n{}", self.both()));
        let host = line.split("(Coordinator: http://").nth(1).and_then(|r| r.split(':').next());
        host.unwrap_or_default().to_string()
    }

    /// The coordinator host the runtime profile names (`Coordinator: HOST:27000`).
    fn profile_coordinator(&self) -> String {
        let line = self.stdout.lines().find(|l| l.trim_start().starts_with("Coordinator: "));
        let line = line.unwrap_or_else(|| panic!("no profile 'Coordinator:' line:\n{}", self.both()));
        line.trim().trim_start_matches("Coordinator: ").split(':').next().unwrap_or_default().to_string()
    }

    /// The query id of `statement`, from the shell's web UI link (`query_plan?query_id=...`).
    fn query_id(&self, statement: &str) -> String {
        let mut lines = self.stderr.lines().skip_while(|l| *l != format!("Query: {statement}"));
        let link = lines.find(|l| l.contains("query_id=")).unwrap_or_else(|| panic!("no link:\n{}", self.both()));
        link.split("query_id=").nth(1).unwrap_or_default().trim().to_string()
    }
}

/// Runs impala-shell against `port` with `args`, feeding it `stdin`; panics (with its output) when it fails,
/// prints an error, or outlives [`SHELL_DEADLINE`].
async fn shell(port: u16, auth: Auth, args: &[&str], stdin: &str) -> Run {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(impala_shell());
    // A private HOME: no ~/.impalarc of the machine's user, and a history file per run.
    cmd.env("HOME", home.path()).env_remove("IMPALA_HISTFILE");
    cmd.args(["-i", &format!("127.0.0.1:{port}"), "--protocol=hs2"]);
    cmd.arg(format!("--history_file={}", home.path().join("history").display()));
    if auth == Auth::Plain {
        let password_cmd = format!("printf {}", USER.1);
        cmd.args(["-l", "--auth_creds_ok_in_clear", "-u", USER.0, "--ldap_password_cmd", &password_cmd]);
    }
    cmd.args(args);
    let stdin = stdin.to_string();
    let shown = format!("{cmd:?}");
    let (status, run) = tokio::task::spawn_blocking(move || {
        let result = run_with_deadline(cmd, &stdin);
        drop(home);
        result
    })
    .await
    .expect("join");
    assert!(status, "{shown} failed:\n{}", run.both());
    for bad in ["ERROR", "Error", "Exception", "Traceback", "Unknown query option"] {
        assert!(!run.stderr.contains(bad) && !run.stdout.contains(bad), "{shown} printed '{bad}':\n{}", run.both());
    }
    run
}

/// Runs `cmd` to completion (killed after [`SHELL_DEADLINE`]); returns whether it exited 0, and its output.
fn run_with_deadline(mut cmd: Command, stdin: &str) -> (bool, Run) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("impala-shell starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if started.elapsed() > SHELL_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = writer.join();
    let mut run = Run { stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() };
    if status.is_none() {
        run.stderr += &format!("\n(killed after {SHELL_DEADLINE:?})");
    }
    (status.is_some_and(|s| s.success()), run)
}

fn assert_has(run: &Run, haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "missing {n:?}:\n{}", run.both());
    }
}

/// What the shell prints for [`SCRIPT`]: results, a summary table with the plan's operators, the profile of
/// the query it summarized (same query id, same impalad, the `set` option applied), and the second query.
fn assert_script_output(run: &Run, sasl_user: Option<&str>) {
    assert_has(run, &run.stderr, &["Connected to 127.0.0.1:", "Server version: impalad version", "Query: use default"]);
    assert_has(run, &run.stderr, &["MEM_LIMIT set to 1g", "Fetched 3 row(s)", "Fetched 1 row(s)", "Goodbye"]);
    assert_has(run, &run.stdout, &["| id |", "| 0  |", "| 2  |", "| 42 |"]);
    // `summary`: impala-shell's table, built from the TExecSummary nodes.
    assert_has(run, &run.stdout, &["| Operator ", "| #Rows ", "| F01:ROOT ", "| 01:EXCHANGE ", "| 00:SCAN HDFS "]);
    assert_has(run, &run.stdout, &["| default.range "]);
    // `profile`: the text profile of the summarized query.
    let id = run.query_id("select id from range(3)");
    let header = format!("Query Runtime Profile:\nQuery (id={id}):");
    assert_has(run, &run.stdout, &[&header, "Sql Statement: select id from range(3)", "Query State: FINISHED"]);
    assert_has(run, &run.stdout, &["MEM_LIMIT=1g", "CLIENT_IDENTIFIER=Impala Shell v4.6.0", "NumRowsFetched: 3 (3)"]);
    assert_has(run, &run.stdout, &["ExecSummary:"]);
    if let Some(user) = sasl_user {
        assert_has(run, &run.stdout, &[&format!("User: {user}\n")]);
    }
    assert_eq!(run.ping_coordinator(), run.profile_coordinator(), "profile from the impalad that answered Ping");
}

/// The mock holding the shell's session served all its Impala calls (each of `used` at least once); the
/// others saw none.
fn assert_one_impalad_served(mocks: &[MockImpalad], used: &[&str]) -> usize {
    let holders: Vec<usize> = (0..mocks.len()).filter(|&i| mocks[i].calls("OpenSession") > 0).collect();
    let [at] = holders[..] else { panic!("one impalad should hold the session, got {holders:?}") };
    for m in used {
        assert!(mocks[at].calls(m) > 0, "{} never got {m}", mocks[at].name());
    }
    for m in IMPALA_METHODS {
        for (i, other) in mocks.iter().enumerate().filter(|(i, _)| *i != at) {
            assert_eq!(other.calls(m), 0, "mock {i} got {m}, but the session is on mock {at}");
        }
    }
    at
}

async fn one_query(auth: Auth, through_proxy: bool) {
    let mocks = mocks(if through_proxy { 3 } else { 1 }, auth.mock()).await;
    let proxy = if through_proxy { Some(proxy(&mocks, auth.backend(), |_| {}).await) } else { None };
    let port = proxy.as_ref().map(|p| p.local_addr.port()).unwrap_or_else(|| mocks[0].local_addr().port());
    let run = shell(port, auth, &["-q", "select 1"], "").await;
    println!("{}", run.both());
    assert_has(&run, &run.stdout, &["+---+\n| 1 |\n+---+\n| 1 |\n+---+"]);
    assert_has(&run, &run.stderr, &["Query: select 1", "Fetched 1 row(s)"]);
    let at = assert_one_impalad_served(&mocks, &["PingImpalaHS2Service", "CloseImpalaOperation"]);
    // Connect: Ping, `SET ALL` closed with CloseImpalaOperation; then the query, closed the same way.
    assert_eq!(mocks[at].calls("ExecuteStatement"), 2, "SET ALL and the query");
    assert_eq!(mocks[at].calls("CloseImpalaOperation"), 2);
    assert_eq!(mocks[at].open_operations(), 0);
}

async fn interactive(auth: Auth, through_proxy: bool) {
    let mocks = mocks(if through_proxy { 3 } else { 1 }, auth.mock()).await;
    let proxy = if through_proxy { Some(proxy(&mocks, auth.backend(), |_| {}).await) } else { None };
    let port = proxy.as_ref().map(|p| p.local_addr.port()).unwrap_or_else(|| mocks[0].local_addr().port());
    let run = shell(port, auth, &[], SCRIPT).await;
    println!("{}", run.both());
    assert_script_output(&run, (auth == Auth::Plain).then_some(USER.0));
    let at = assert_one_impalad_served(&mocks, &IMPALA_METHODS);
    let m = &mocks[at];
    assert_eq!(run.ping_coordinator(), m.name());
    assert_eq!((m.calls("GetExecSummary"), m.calls("GetRuntimeProfile")), (1, 1), "summary; profile;");
    // The shell pings before every command (7 of them) and once at connect.
    assert!(m.calls("PingImpalaHS2Service") >= 7, "pings: {}", m.calls("PingImpalaHS2Service"));
    assert!(m.sessions().is_empty(), "quit closes the session");
}

/// Three shells at once, each with a long-running query watched through live progress and summary:
/// every shell lands on its own impalad, and all of its calls reach that impalad.
async fn many_shells(auth: Auth) {
    const SHELLS: usize = 3;
    let mocks = mocks(SHELLS, auth.mock()).await;
    let proxy = proxy(&mocks, auth.backend(), |_| {}).await;
    let script = format!(
        "{SCRIPT_HEAD}set live_summary=true;\nselect sleep(1500);\nsummary;\nprofile;\n\
         insert into t values (1), (2);\nselect 42;\nquit;\n",
        SCRIPT_HEAD = "use default;\nset mem_limit=1g;\nselect id from range(3);\nsummary;\n"
    );
    let port = proxy.local_addr.port();
    // Each shell blocks a thread of its own (spawn_blocking), not the runtime.
    let tasks: Vec<_> = (0..SHELLS)
        .map(|_| {
            let script = script.clone();
            tokio::spawn(async move { shell(port, auth, &[], &script).await })
        })
        .collect();
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await.expect("shell task"));
    }
    let mut coordinators = BTreeSet::new();
    for run in &runs {
        println!("{}", run.both());
        assert_has(run, &run.stderr, &["Fetched 3 row(s)", "Modified 2 row(s) in", "Fetched 1 row(s)", "Goodbye"]);
        assert_has(run, &run.stdout, &["| 00:SCAN HDFS ", "| 00:UNION ", "| constant-operands=1 ", "| 42 |"]);
        assert_has(run, &run.stdout, &["Sql Statement: select sleep(1500)", "Query State: FINISHED"]);
        // Live progress printed from GetExecSummary while the sleep ran.
        assert_has(run, &run.stderr, &["Query Progress:["]);
        assert_eq!(run.ping_coordinator(), run.profile_coordinator(), "profile from the impalad that answered Ping");
        coordinators.insert(run.ping_coordinator());
    }
    let names: BTreeSet<String> = mocks.iter().map(|m| m.name().to_string()).collect();
    assert_eq!(coordinators, names, "each shell on its own impalad");
    for m in &mocks {
        assert_eq!(m.calls("OpenSession"), 1, "{}", m.name());
        // `summary` twice, plus at least one live poll during the 1.5 s sleep.
        assert!(m.calls("GetExecSummary") >= 3, "{}: GetExecSummary {}", m.name(), m.calls("GetExecSummary"));
        assert_eq!(m.calls("GetRuntimeProfile"), 1, "{}", m.name());
        assert!(m.calls("PingImpalaHS2Service") >= 11, "{}: pings {}", m.name(), m.calls("PingImpalaHS2Service"));
        assert!(m.sessions().is_empty() && m.open_operations() == 0, "{} cleaned up", m.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn select_1_through_the_proxy() {
    one_query(Auth::None, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn select_1_through_the_proxy_sasl_plain() {
    one_query(Auth::Plain, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn select_1_directly_against_the_mock() {
    one_query(Auth::None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn interactive_session_through_the_proxy() {
    interactive(Auth::None, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn interactive_session_through_the_proxy_sasl_plain() {
    interactive(Auth::Plain, true).await;
}

/// The mock itself must satisfy impala-shell, or the tests through the proxy prove nothing about Impala.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn interactive_session_directly_against_the_mock() {
    interactive(Auth::None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn interactive_session_directly_against_the_mock_sasl_plain() {
    interactive(Auth::Plain, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn many_shells_at_once_land_on_different_impalads() {
    many_shells(Auth::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn many_shells_at_once_land_on_different_impalads_sasl_plain() {
    many_shells(Auth::Plain).await;
}

/// The proxy's own log names every method it forwards, Impala's included (`HS2_PROXY_LOG=debug`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn the_proxy_log_names_the_impala_methods() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into(), "--admin-listen".into(), "127.0.0.1:0".into()];
    for m in &mocks {
        args.extend(["--backend".to_string(), m.local_addr().to_string()]);
    }
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .args(&args)
        .env("HS2_PROXY_LOG", "hs2_proxy=debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hs2-proxy binary runs");
    let stderr = proxy.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        while let Some(Ok(line)) = lines.next() {
            if line.contains("hs2-proxy listening") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let listening = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy logs its address");
    let addr = listening.split("listen=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_default();
    let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the log");
    shell(port, Auth::None, &[], SCRIPT).await;
    let _ = proxy.kill();
    let _ = proxy.wait();
    let log = reader.join().expect("log reader");
    for method in IMPALA_METHODS.iter().chain(&["OpenSession", "ExecuteStatement", "FetchResults", "CloseSession"]) {
        assert!(log.contains(&format!("method=\"{method}\"")), "the proxy log never names {method}:\n{log}");
    }
}
