//! impala-shell (4.6, the official Impala client) on a session whose impalad dies in the middle of its
//! script (issue 14): the shell holds one session for the whole script; between two statements the mock
//! impalad holding it is stopped like a `kill -9` (connections dropped, sessions lost), and the script goes
//! on: the proxy moves the session on its next call with its `use` state, and `summary` and `profile`
//! (GetExecSummary, GetRuntimeProfile: Impala's own calls, which carry the session handle the proxy
//! rewrites) work on the moved session.
//!
//! `#[ignore]`d like every real-peer suite: `scripts/test.sh` installs impala-shell (scripts/setup-python.sh)
//! and runs this with `--ignored`. A missing impala-shell fails loudly.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::mock::MockAuth;

/// The SASL user the mocks accept.
const USER: (&str, &str) = ("alice", "secret");
/// Longest the shell may run.
const SHELL_DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn impala_shell() -> PathBuf {
    let p = repo().join(".venv/bin/impala-shell");
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    p
}

/// The script: state, a query and its summary, a pause at the gate (the impalad dies there), then more
/// statements on the same session.
fn script(ready: &Path, go: &Path) -> String {
    let gate = repo().join("tests/interop/gate.sh");
    format!(
        "use db_shell;\nset mem_limit=2g;\nselect id from range(3);\nsummary;\n\
         shell {} {} {};\n\
         select current_database();\nselect id from range(5);\nsummary;\nprofile;\nquit;\n",
        gate.display(),
        ready.display(),
        go.display()
    )
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Starts the shell on `port` with `stdin`; the returned thread yields its outcome.
fn start_shell(port: u16, sasl: bool, home: &Path, stdin: String) -> std::thread::JoinHandle<Ran> {
    let mut cmd = Command::new(impala_shell());
    // A private HOME: no ~/.impalarc of the machine's user, and a history file per run.
    cmd.env("HOME", home).env_remove("IMPALA_HISTFILE");
    cmd.args(["-i", &format!("127.0.0.1:{port}"), "--protocol=hs2"]);
    if sasl {
        let password_cmd = format!("printf {}", USER.1);
        cmd.args(["-l", "--auth_creds_ok_in_clear", "-u", USER.0, "--ldap_password_cmd", &password_cmd]);
    }
    cmd.arg(format!("--history_file={}", home.join("history").display()));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("impala-shell starts");
    let mut input = child.stdin.take().expect("stdin");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
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
        let mut ran = Ran {
            ok: status.is_some_and(|s| s.success()),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        if status.is_none() {
            ran.stderr += &format!("\n(killed after {SHELL_DEADLINE:?})");
        }
        ran
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn impala_shell_goes_on_after_its_impalad_dies_between_statements() {
    shell_survives_its_impalad(false).await;
}

/// The same over SASL PLAIN: the session is opened again with the user's own credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impala-shell): run by scripts/test.sh"]
async fn impala_shell_goes_on_after_its_impalad_dies_between_statements_sasl_plain() {
    shell_survives_its_impalad(true).await;
}

async fn shell_survives_its_impalad(sasl: bool) {
    let (auth, transport) = match sasl {
        true => (MockAuth::Plain { users: Some(vec![(USER.0.into(), USER.1.into())]) }, BackendTransport::Sasl),
        false => (MockAuth::NoSasl, BackendTransport::Nosasl),
    };
    let mocks = mocks(3, auth).await;
    let proxy = proxy(&mocks, transport, |_| {}).await;
    let home = tempfile::tempdir().expect("temp dir");
    let (ready, go) = (home.path().join("ready"), home.path().join("go"));
    let shell = start_shell(proxy.local_addr.port(), sasl, home.path(), script(&ready, &go));
    let deadline = Instant::now() + SHELL_DEADLINE;
    while !ready.exists() {
        assert!(Instant::now() < deadline && !shell.is_finished(), "impala-shell never reached the gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holders: Vec<usize> = (0..mocks.len()).filter(|&i| !mocks[i].sessions().is_empty()).collect();
    let [dead] = holders[..] else { panic!("one impalad holds the shell's session: {holders:?}") };
    mocks[dead].stop().await;
    std::fs::write(&go, "").expect("open the gate");
    let ran = tokio::task::spawn_blocking(move || shell.join().expect("shell thread")).await.expect("join");
    let both = format!("--- stdout\n{}\n--- stderr\n{}", ran.stdout, ran.stderr);
    println!("{both}");
    assert!(ran.ok, "impala-shell failed:\n{both}");
    for bad in ["ERROR", "Error", "Exception", "Traceback", "Invalid"] {
        assert!(!both.contains(bad), "impala-shell printed '{bad}':\n{both}");
    }
    // After the gate: the `use` state, a query, its summary and its profile, all on the moved session.
    let (_, after) = ran.stdout.split_once("| 2  |").unwrap_or_else(|| panic!("no first query:\n{both}"));
    for want in ["| db_shell ", "| 4  |", "| 00:SCAN HDFS ", "Sql Statement: select id from range(5)", "MEM_LIMIT=2g"] {
        assert!(after.contains(want), "missing {want:?} after the impalad died:\n{both}");
    }
    let (exec_summary, profile) = ("GetExecSummary", "GetRuntimeProfile");
    let alive: Vec<usize> = (0..mocks.len()).filter(|&i| i != dead && mocks[i].calls("OpenSession") > 0).collect();
    let [moved_to] = alive[..] else { panic!("the session moved to one other impalad: {alive:?}") };
    let m = &mocks[moved_to];
    assert!(m.calls(exec_summary) >= 1 && m.calls(profile) == 1, "summary and profile on the new impalad");
    if sasl {
        assert!(after.contains(&format!("User: {}\n", USER.0)), "the moved session is the user's:\n{both}");
    }
    assert!(m.sessions().is_empty(), "quit closed the moved session there");
    let metrics = proxy.proxy.metrics().encode(&proxy.proxy.figures()).expect("metrics");
    let series = format!(
        r#"hs2_proxy_session_moves_total{{from="{}",to="{}",reason="failure",result="moved"}}"#,
        mocks[dead].local_addr(),
        m.local_addr()
    );
    assert_eq!(hs2_proxy::metrics::sample(&metrics, &series), Some(1.0), "{metrics}");
}
