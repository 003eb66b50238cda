//! hs2-proxy (`backend_auth.transport = "sasl"`) in front of the LDAP-checking Spark Thrift Server: the
//! directory refuses a wrong password behind the backend and every client sees why; the right one works on
//! pooled connections; with `backend_auth.delegate` a service account carries every checked user.

use std::process::Command;
use std::time::{Duration, Instant};

use hs2_proxy::config::{BackendConfig, BackendTransport, Config, ServiceCredentials};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::OpenSession;
use hs2_proxy::hs2client::{ClientAuth, ClientError, ColumnExt, Hs2Client};
use hs2_proxy::sasl::SaslError;
use hs2_proxy::server::{self, ProxyHandle};

use super::{password, peers, repo};

/// The text a refused PLAIN login shows: Hive's PlainSaslServer, after the directory said "Invalid
/// credentials (49)" (the LDAP error itself stays in the server's log).
const REFUSED: &str = "Error validating the login";

async fn proxy(tweak: impl FnOnce(&mut Config)) -> ProxyHandle {
    let spark = peers().await.spark;
    let mut c = super::common::base_config();
    c.backends = vec![BackendConfig::new(&spark.to_string())];
    c.backend_auth.transport = BackendTransport::Sasl;
    // The tests look at the pool's own counters: no probe connections in them.
    c.health.interval = Duration::from_secs(3600);
    tweak(&mut c);
    server::start(c).await.expect("the proxy starts")
}

fn plain(user: &str, password: &str) -> ClientAuth {
    ClientAuth::Plain { user: user.into(), password: password.into() }
}

async fn query_string(c: &mut Hs2Client, session: &HandleId, statement: &str) -> String {
    let op = c.execute(session, statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    c.wait_finished(&op).await.expect("finished");
    let (columns, _) = c.fetch(&op, 10).await.expect("fetch");
    let value = columns.first().and_then(|col| col.as_strs()).and_then(|v| v.first().map(|s| s.to_string()));
    c.close_operation(&op).await.expect("close operation");
    value.unwrap_or_else(|| panic!("{statement} returned no string: {columns:?}"))
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

async fn run(mut cmd: Command) -> Ran {
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("starts");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// impyla `auth_mechanism='LDAP'` through the proxy; the password through the environment.
async fn impyla(port: u16, user: &str, password: &str, delegate_to: Option<&str>) -> Ran {
    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup-python.sh", python.display());
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/ldap/impyla_ldap.py")).arg(port.to_string()).arg(user);
    cmd.args(delegate_to).env("IMPYLA_PASSWORD", password);
    run(cmd).await
}

/// beeline `-n user -w <password file>` through the proxy.
async fn beeline(port: u16, user: &str, password: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, password).unwrap();
    let mut cmd = Command::new(repo().join("scripts/beeline.sh"));
    cmd.env("HOME", dir.path()).arg("-u").arg(format!("jdbc:hive2://127.0.0.1:{port}/default"));
    cmd.args(["-n", user, "-w"]).arg(&file);
    cmd.args(["--silent=true", "--outputformat=tsv2", "--showHeader=false", "-e", "select current_user()"]);
    let ran = run(cmd).await;
    drop(dir);
    ran
}

/// beeline 2.3's rows, without the prompt it prints before the first one.
fn rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| !l.contains(" main WARN "))
        .map(|l| l.rsplit_once("> ").map_or(l, |(_, r)| r))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs slapd, pyspark and impyla (scripts/setup-ldap.sh, setup-spark.sh, setup-python.sh); run by scripts/test.sh"]
async fn a_wrong_password_is_refused_by_the_directory_behind_the_backend() {
    let proxy = proxy(|_| {}).await;
    let port = proxy.local_addr.port();
    // Our client: the SASL failure carries the backend's text.
    for (user, pw, what) in
        [("alice", "wrong", "wrong password"), ("mallory", "alice-pw", "unknown user"), ("alice", "", "empty password")]
    {
        match Hs2Client::connect(proxy.local_addr, &plain(user, pw)).await {
            Err(ClientError::Sasl(SaslError::Refused(text))) => {
                println!("our client, {user} ({what}): SASL refused: {text}");
                assert!(text.contains(REFUSED), "{text}");
            }
            other => panic!("{user} with a wrong password: {:?}", other.map(|_| ())),
        }
    }
    let ran = impyla(port, "alice", "wrong", None).await;
    println!("impyla LDAP, wrong password: {}", ran.stdout.trim());
    assert!(ran.stdout.starts_with("ERR ") && ran.stdout.contains(REFUSED), "{}", ran.both());
    let ran = beeline(port, "alice", "wrong").await;
    let said = ran.both();
    let line = said.lines().find(|l| l.contains(REFUSED)).unwrap_or_default().to_string();
    println!("beeline, wrong password: {}", line.trim());
    assert!(!ran.ok && !line.is_empty(), "{said}");
    // HTTP Basic: 401 with the reason (curl reads the credentials from a config file, not argv).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("curl.cfg");
    std::fs::write(&cfg, "user = \"alice:wrong\"\n").unwrap();
    let open = dir.path().join("open.bin");
    let body =
        hs2_proxy::hs2::rpc::encode_call::<OpenSession>(1, &hs2_proxy::hs2client::open_session_req(None, &[])).unwrap();
    std::fs::write(&open, body).unwrap();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-4", "-w", "\\n%{http_code}", "-K"])
        .arg(&cfg)
        .arg("--data-binary")
        .arg(format!("@{}", open.display()));
    curl.arg(format!("http://127.0.0.1:{port}/cliservice"));
    let ran = run(curl).await;
    println!("curl Basic, wrong password: {}", ran.stdout.replace('\n', " | "));
    assert!(ran.stdout.ends_with("401") && ran.stdout.contains(REFUSED), "{}", ran.both());
    // Refused logins are the client's, not evidence against the backend.
    assert!(proxy.proxy.backends()[0].serving(), "the backend stays in service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs slapd, pyspark and impyla (scripts/setup-ldap.sh, setup-spark.sh, setup-python.sh); run by scripts/test.sh"]
async fn the_right_password_works_on_pooled_connections() {
    let proxy = proxy(|_| {}).await;
    let t0 = Instant::now();
    let mut calls = 0;
    // Ten client connections of two users, one after another; each opens a session, runs two queries and
    // closes it.
    for round in 0..5 {
        for user in ["alice", "bob"] {
            let mut c = Hs2Client::connect(proxy.local_addr, &plain(user, password(user))).await.unwrap();
            let s = c.open_session(None, &[]).await.unwrap();
            assert_eq!(query_string(&mut c, &s, "select current_user()").await, user, "round {round}");
            assert_eq!(query_string(&mut c, &s, "select 'x'").await, "x");
            c.close_session(&s).await.unwrap();
            calls += 2 + 2 * 5;
        }
    }
    let stats = proxy.proxy.backends()[0].pool.stats();
    println!(
        "10 client connections (alice, bob), ~{calls} calls in {:.1}s: {} upstream connections opened, {} open",
        t0.elapsed().as_secs_f64(),
        stats.opened,
        stats.total
    );
    assert!(stats.opened <= 4, "connections are reused per user, not opened per client connection: {stats:?}");
    let opened = stats.opened;
    let ran = impyla(proxy.local_addr.port(), "alice", password("alice"), None).await;
    assert_eq!(ran.stdout.trim(), "alice", "impyla LDAP:\n{}", ran.both());
    let ran = beeline(proxy.local_addr.port(), "bob", password("bob")).await;
    assert!(ran.ok && rows(&ran.stdout) == ["bob"], "beeline:\n{}", ran.both());
    let after = proxy.proxy.backends()[0].pool.stats();
    println!("then impyla (alice) and beeline (bob): {} upstream connections opened in all", after.opened);
    assert!(after.opened <= opened + 1, "{after:?}");
}

/// `backend_auth.delegate`: the proxy checks each user's own password in the directory, then runs the
/// session on the service account's connections with `hive.server2.proxy.user` (Spark authorises it by
/// `hadoop.proxyuser.svc.*`). A user cannot delegate through the proxy on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs slapd, pyspark and impyla (scripts/setup-ldap.sh, setup-spark.sh, setup-python.sh); run by scripts/test.sh"]
async fn a_service_account_carries_checked_users() {
    let proxy = proxy(|c| {
        c.backend_auth.delegate = true;
        c.backend_auth.service = ServiceCredentials { user: "svc".into(), password: password("svc").into() };
    })
    .await;
    for user in ["alice", "bob", "alice", "bob"] {
        let mut c = Hs2Client::connect(proxy.local_addr, &plain(user, password(user))).await.unwrap();
        let s = c.open_session(None, &[]).await.unwrap();
        assert_eq!(query_string(&mut c, &s, "select current_user()").await, user);
        c.close_session(&s).await.unwrap();
    }
    match Hs2Client::connect(proxy.local_addr, &plain("alice", "wrong")).await {
        Err(ClientError::Sasl(SaslError::Refused(text))) => assert!(text.contains(REFUSED), "{text}"),
        other => panic!("a wrong password with delegate: {:?}", other.map(|_| ())),
    }
    // bob asking to be alice: the proxy's own rule ([kerberos.proxy_users], empty) refuses it.
    let ran = impyla(proxy.local_addr.port(), "bob", password("bob"), Some("alice")).await;
    println!("bob delegating to alice through the proxy: {}", ran.stdout.trim());
    assert!(ran.stdout.contains("User 'bob' is not authorized to delegate to 'alice'."), "{}", ran.both());
    let stats = proxy.proxy.backends()[0].pool.stats();
    let view = proxy.proxy.sessions();
    println!("delegate: 4 sessions of 2 users, {} upstream connections opened (password checks + svc)", stats.opened);
    assert!(view.is_empty(), "{view:?}");
    assert!(stats.opened <= 4, "{stats:?}");
}
