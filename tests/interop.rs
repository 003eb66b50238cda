//! Real peers that nobody here wrote, driving the proxy through real sockets. `#[ignore]`d so that
//! `cargo test` stays fast; `scripts/test.sh` (the README's test command) installs the peers and runs
//! these with `--ignored`. A missing peer fails loudly.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::mock::MockAuth;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    p
}

/// Runs a command to completion off the async runtime; panics with its output when it fails.
async fn run_ok(mut cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("command starts");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{shown} failed ({}):\n{text}", out.status);
    text
}

fn impyla_smoke(port: u16, auth: &str) -> Command {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(repo().join("tests/interop/impyla_smoke.py"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--auth", auth]);
    if auth == "PLAIN" {
        cmd.args(["--user", "alice", "--password", "secret"]);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_through_the_proxy_nosasl() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let out = run_ok(impyla_smoke(proxy.local_addr.port(), "NOSASL")).await;
    println!("{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(mocks.iter().filter(|m| m.calls("OpenSession") > 0).count() >= 2, "sessions spread over impalads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_through_the_proxy_sasl_plain() {
    let mocks = mocks(3, MockAuth::Plain { users: Some(vec![("alice".into(), "secret".into())]) }).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let out = run_ok(impyla_smoke(proxy.local_addr.port(), "PLAIN")).await;
    println!("{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    // Every session the backends hold belongs to the SASL user.
    for m in &mocks {
        for s in m.sessions() {
            assert_eq!(m.session_user(&s).as_deref(), Some("alice"));
        }
    }
}

/// The mock itself must satisfy impyla, or the tests above prove nothing about Impala.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_directly_against_the_mock() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let out = run_ok(impyla_smoke(mocks[0].local_addr().port(), "NOSASL")).await;
    assert!(out.contains(" passed, 0 failed"), "{out}");
}
