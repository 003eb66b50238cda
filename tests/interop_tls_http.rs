//! impyla (a real HS2 client nobody here wrote) through the proxy over TLS and over HTTP, against mock
//! impalads on binary transports. `#[ignore]`d: `scripts/test.sh` installs impyla and runs these.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::pki::{write_pki, Pki};
use common::*;
use hs2_proxy::config::{BackendTransport, TlsListenConfig};
use hs2_proxy::mock::MockAuth;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    p
}

/// Runs a command to completion off the async runtime; returns whether it succeeded and its output.
async fn run(mut cmd: Command) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("command starts");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

struct Peer<'a> {
    port: u16,
    auth: &'a str,
    password: &'a str,
    tls: Option<&'a Pki>,
    http: bool,
    expect_refused: bool,
}

fn impyla(p: &Peer) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/interop/impyla_tls_http.py"));
    if let Some(pki) = p.tls {
        cmd.arg("--ssl").arg("--ca-cert").arg(&pki.ca);
    }
    if p.http {
        cmd.args(["--http", "--http-path", "cliservice"]);
    }
    if p.expect_refused {
        cmd.arg("--expect-refused");
    }
    cmd.args(["--host", "127.0.0.1", "--port", &p.port.to_string(), "--auth", p.auth]);
    if p.auth == "PLAIN" {
        cmd.args(["--user", "alice", "--password", p.password]);
    }
    cmd
}

async fn check(peer: Peer<'_>) {
    let (ok, out) = run(impyla(&peer)).await;
    println!("{out}");
    assert!(ok && out.contains(" passed, 0 failed"), "{out}");
}

fn peer(port: u16, auth: &str) -> Peer<'_> {
    Peer { port, auth, password: "secret", tls: None, http: false, expect_refused: false }
}

fn alice() -> MockAuth {
    MockAuth::Plain { users: Some(vec![("alice".into(), "secret".into())]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_use_ssl_binary_nosasl_and_plain() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let tls = |c: &mut hs2_proxy::config::Config| {
        c.tls = Some(TlsListenConfig { cert_file: pki.cert.clone(), key_file: pki.key.clone(), allow_plaintext: false })
    };
    let open = mocks(2, MockAuth::NoSasl).await;
    let p = proxy(&open, BackendTransport::Nosasl, tls).await;
    check(Peer { tls: Some(&pki), ..peer(p.local_addr.port(), "NOSASL") }).await;

    let ldap = mocks(2, alice()).await;
    let p = proxy(&ldap, BackendTransport::Sasl, tls).await;
    check(Peer { tls: Some(&pki), ..peer(p.local_addr.port(), "PLAIN") }).await;
    for m in &ldap {
        for s in m.sessions() {
            assert_eq!(m.session_user(&s).as_deref(), Some("alice"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_use_http_transport_against_binary_mocks() {
    let ldap = mocks(2, alice()).await;
    let p = proxy(&ldap, BackendTransport::Sasl, |_| {}).await;
    let port = p.local_addr.port();
    check(Peer { http: true, ..peer(port, "PLAIN") }).await;
    assert!(ldap.iter().filter(|m| m.calls("OpenSession") > 0).count() >= 2, "sessions spread over impalads");
    check(Peer { http: true, password: "wrong", expect_refused: true, ..peer(port, "PLAIN") }).await;

    let open = mocks(1, MockAuth::NoSasl).await;
    let p = proxy(&open, BackendTransport::Nosasl, |_| {}).await;
    check(Peer { http: true, ..peer(p.local_addr.port(), "NOSASL") }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (impyla): run by scripts/test.sh"]
async fn impyla_https_on_the_extra_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let mocks = mocks(1, alice()).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |c| {
        c.tls =
            Some(TlsListenConfig { cert_file: pki.cert.clone(), key_file: pki.key.clone(), allow_plaintext: false });
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let port = proxy.http_addr.expect("http.listen is bound").port();
    check(Peer { http: true, tls: Some(&pki), ..peer(port, "PLAIN") }).await;
}
