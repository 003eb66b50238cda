//! Real Kerberos clients through the proxy to a Kerberized mock impalad: impyla (SASL GSSAPI and HTTP
//! Negotiate), impala-shell `-k -b`, curl `--negotiate`. The proxy accepts `impala/localhost` and
//! `HTTP/localhost`, authenticates upstream as `hs2proxy` and delegates each session's user; the impalad
//! sees the proxy, the queries run as the client. Also what a client sees when its ticket is wrong and what
//! the binary says when its keytab lacks a key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hs2_proxy::config::{BackendConfig, Config, FileConfig};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::idl::names;
use hs2_proxy::hs2::requests;
use hs2_proxy::hs2::rpc::{self, hs2::TGetInfoResp, hs2::TOpenSessionResp, Reply};
use hs2_proxy::hs2client::open_session_req;
use hs2_proxy::kerberos::testkdc::{self, TestKdc};
use hs2_proxy::server::{self, ProxyHandle};
use hs2_proxy::thrift::Limits;

use super::clients::{as_user, repo, run, venv_bin, Ran};
use super::kerberized_mock;

/// The proxy's config for Kerberos on both sides: it accepts `service` (and any other key of its keytab
/// for SPNEGO), authenticates to `backend_principal` as hs2proxy. `extra` is appended to `[kerberos]`.
pub fn proxy_config(accept_keytab: &Path, service: &str, backend_principal: &str, extra: &str) -> Config {
    let kdc = testkdc::shared();
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[health]\ninterval = \"1h\"\n\
         [backend_auth]\ntransport = \"gssapi\"\n\
         [kerberos]\nkeytab = {:?}\nservice_principal = {service:?}\nclient_principal = \"hs2proxy\"\n\
         client_keytab = {:?}\nbackend_principal = {backend_principal:?}\n{extra}\n",
        accept_keytab.display().to_string(),
        kdc.keytab("hs2proxy").display().to_string(),
    );
    FileConfig::parse(&text).and_then(FileConfig::validate).expect("the Kerberos config validates")
}

/// The proxy's acceptor keytab: `impala/localhost` + `HTTP/localhost`, as an operator merges them.
pub fn accept_keytab() -> std::path::PathBuf {
    testkdc::shared().merged_keytab(&["impala/localhost", "HTTP/localhost"], "proxy-accept.keytab").unwrap()
}

pub async fn start_proxy(backend: std::net::SocketAddr, mut config: Config) -> ProxyHandle {
    config.backends = vec![BackendConfig::new(&backend.to_string())];
    server::start(config).await.expect("the proxy acquires its credentials and starts")
}

/// tests/kerberos/impyla.py `args` as `user` (a kinit'd ccache).
async fn impyla(user: &str, args: &[&str]) -> Ran {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(repo().join("tests/kerberos/impyla.py")).args(args);
    run(as_user(cmd, user)).await
}

fn lines(ran: &Ran) -> Vec<&str> {
    ran.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// GET `path` from the admin listener: the JSON text.
async fn admin_get(proxy: &ProxyHandle, path: &str) -> String {
    use http_body_util::BodyExt;
    let addr = proxy.admin_addr.expect("admin listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path).header("host", "localhost").body(http_body_util::Empty::<bytes::Bytes>::new());
    let resp = sender.send_request(req.unwrap()).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// impyla as alice: the session runs as alice (the impalad sees hs2proxy delegating), is reused from new
/// connections and new processes (Hue's pattern), and bob cannot use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and impyla (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impyla_gssapi_through_the_proxy_runs_as_the_client() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy =
        start_proxy(mock.local_addr(), proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", ""))
            .await;
    let port = proxy.local_addr.port().to_string();
    let opened = impyla("alice", &["open", &port]).await;
    let out = lines(&opened);
    assert!(out.len() == 3 && out[..2] == ["alice", "alice"], "impyla open + reuse:\n{}", opened.both());
    let (guid, secret) = out[2].split_once(' ').expect("guid secret");
    let g: [u8; 16] = (0..16)
        .map(|i| u8::from_str_radix(&guid[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let guid_handle = hs2_proxy::hs2::handle::Guid(g);
    assert_eq!(mock.session_user(&guid_handle).as_deref(), Some("hs2proxy"), "the impalad sees the proxy");
    assert_eq!(mock.session_effective_user(&guid_handle).as_deref(), Some("alice"));

    // Bob's ticket is valid, alice's session is not his: the proxy answers as impalad would.
    let bob = impyla("bob", &["use", &port, guid, secret]).await;
    assert!(bob.stdout.starts_with("ERR ") && bob.stdout.contains("Invalid session id"), "bob:\n{}", bob.both());
    // Alice, from another process and connection, still can.
    let again = impyla("alice", &["use", &port, guid, secret]).await;
    assert_eq!(lines(&again), ["alice"], "{}", again.both());

    let sessions = admin_get(&proxy, "/api/sessions").await;
    println!("GET /api/sessions: {sessions}");
    assert!(
        sessions.contains("\"owner\":\"alice\"") && sessions.contains("\"effective_user\":\"alice\""),
        "{sessions}"
    );
    let closed = impyla("alice", &["close", &port, guid, secret]).await;
    assert_eq!(lines(&closed), ["closed"], "{}", closed.both());
    assert!(mock.sessions().is_empty());
    let stats = proxy.proxy.backends()[0].pool.stats();
    println!(
        "impyla through the proxy: open+reuse {:.1}s, bob refused, reuse {:.1}s; {} upstream connections opened for 4 \
         client connections of 2 users",
        opened.took.as_secs_f64(),
        again.took.as_secs_f64(),
        stats.opened
    );
    assert!(stats.opened <= 2, "the proxy's own connections carry every user: {stats:?}");
}

/// Hue's way: the client (`hue`) delegates itself with `impala.doas.user`; allowed by `hue = "*"` in
/// `[kerberos.proxy_users]`, refused for bob with Impala's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and impyla (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impyla_delegation_needs_a_proxy_users_rule() {
    let kdc = testkdc::shared();
    if !kdc.keytab("hue").exists() {
        kdc.add_principal("hue", None).unwrap();
    }
    let mock = kerberized_mock("hs2proxy=*").await;
    let cfg =
        proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", "[kerberos.proxy_users]\nhue = \"*\"");
    let proxy = start_proxy(mock.local_addr(), cfg).await;
    let port = proxy.local_addr.port().to_string();
    let hue = impyla("hue", &["doas", &port, "alice"]).await;
    assert_eq!(lines(&hue), ["alice"], "hue delegating to alice:\n{}", hue.both());
    let bob = impyla("bob", &["doas", &port, "alice"]).await;
    assert!(
        bob.stdout.contains("User 'bob' is not authorized to delegate to 'alice'."),
        "bob delegating:\n{}",
        bob.both()
    );
    assert_eq!(mock.sessions().len(), 0, "hue's session closed, bob's never opened");
}

/// impala-shell `-k -b localhost` (the load balancer's host for the principal) runs its interactive
/// script through the proxy: Impala's own RPCs, summary and profile, as alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and impala-shell (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impala_shell_k_through_the_proxy() {
    const SCRIPT: &str = "use default;\nset mem_limit=1g;\nselect id from range(3);\nsummary;\nprofile;\n\
                          select current_user();\nquit;\n";
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy =
        start_proxy(mock.local_addr(), proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", ""))
            .await;
    let mut cmd = Command::new(venv_bin("impala-shell"));
    let home = testkdc::shared().dir().join("home-alice");
    cmd.args(["-i", &format!("127.0.0.1:{}", proxy.local_addr.port()), "--protocol=hs2", "-k", "-b", "localhost"]);
    cmd.arg(format!("--history_file={}", home.join("impala-history").display()));
    let mut cmd = as_user(cmd, "alice");
    let script = home.join("script.sql");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(&script, SCRIPT).unwrap();
    cmd.stdin(std::fs::File::open(&script).unwrap());
    let ran = run_with_stdin(cmd).await;
    for needle in ["Fetched 3 row(s)", "| 0  |", "| 2  |", "MEM_LIMIT set to 1g", "Goodbye"] {
        assert!(ran.both().contains(needle), "missing {needle:?}:\n{}", ran.both());
    }
    assert!(ran.stdout.contains("| alice            |") || ran.stdout.contains("| alice "), "{}", ran.both());
    assert!(ran.stdout.contains("| Operator ") && ran.stdout.contains("Query Runtime Profile:"), "{}", ran.both());
    for bad in ["ERROR", "Error", "Traceback"] {
        assert!(!ran.both().contains(bad), "printed {bad:?}:\n{}", ran.both());
    }
    assert!(ran.ok, "{}", ran.both());
    for m in ["PingImpalaHS2Service", "CloseImpalaOperation", "GetExecSummary", "GetRuntimeProfile"] {
        assert!(mock.calls(m) > 0, "the impalad never got {m}");
    }
    assert!(mock.sessions().is_empty(), "quit closes the session");
    println!("impala-shell -k -b localhost through the proxy: ok in {:.1}s", ran.took.as_secs_f64());

    // Over HTTP: impala-shell's Negotiate for impala/localhost, then the proxy's cookie.
    let mut cmd = Command::new(venv_bin("impala-shell"));
    cmd.args(["-i", &format!("127.0.0.1:{}", proxy.local_addr.port()), "--protocol=hs2-http", "-k", "-b", "localhost"]);
    cmd.args(["-B", "-q", "select current_user()"]);
    let ran = run(as_user(cmd, "alice")).await;
    assert!(ran.ok && ran.stdout.trim() == "alice", "impala-shell --protocol=hs2-http -k:\n{}", ran.both());
    println!(
        "impala-shell --protocol=hs2-http -k -b localhost through the proxy: ok in {:.1}s",
        ran.took.as_secs_f64()
    );
}

/// `run` with the stdin the command already has.
async fn run_with_stdin(mut cmd: Command) -> Ran {
    let t0 = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("starts");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// curl `--negotiate -u :` POSTs OpenSession to the proxy's HTTP transport (401 Negotiate, then the
/// SPNEGO token for HTTP/localhost); the proxy's cookie alone then serves GetInfo on that session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn curl_negotiate_then_the_cookie_through_the_proxy() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy =
        start_proxy(mock.local_addr(), proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", ""))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (open, jar, reply) = (dir.path().join("open.bin"), dir.path().join("jar"), dir.path().join("reply.bin"));
    std::fs::write(&open, rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap()).unwrap();
    let url = format!("http://localhost:{}/cliservice", proxy.local_addr.port());
    let curl = |body: &Path, negotiate: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-4", "-f", "-H", "Content-Type: application/x-thrift", "--data-binary"]);
        cmd.arg(format!("@{}", body.display())).arg("-o").arg(&reply).arg("-c").arg(&jar).arg("-b").arg(&jar);
        if negotiate {
            cmd.args(["--negotiate", "-u", ":"]);
        }
        cmd.arg(&url);
        cmd
    };
    let ran = run(as_user(curl(&open, true), "alice")).await;
    assert!(ran.ok, "curl --negotiate OpenSession:\n{}", ran.both());
    let body = std::fs::read(&reply).unwrap();
    let Ok(Reply::Ok(opened)) = rpc::decode_reply::<TOpenSessionResp>(&body, names::OPEN_SESSION, 1, &Limits::REPLY)
    else {
        panic!("an OpenSession reply")
    };
    let session = HandleId::try_from(&opened.session_handle.expect("a session handle").session_id).unwrap();
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("alice"));
    let jar_text = std::fs::read_to_string(&jar).unwrap();
    assert!(jar_text.contains("impala.auth"), "the proxy's cookie: {jar_text}");

    // No Negotiate now, and no ticket at all: the cookie alone.
    let info = dir.path().join("info.bin");
    std::fs::write(&info, requests::get_info(&session, 18, 2)).unwrap();
    let mut cmd = curl(&info, false);
    cmd.env("KRB5CCNAME", "FILE:/nonexistent");
    let ran = run(cmd).await;
    assert!(ran.ok, "curl with the cookie:\n{}", ran.both());
    let answer = rpc::decode_reply::<TGetInfoResp>(&std::fs::read(&reply).unwrap(), names::GET_INFO, 2, &Limits::REPLY);
    let Ok(Reply::Ok(answer)) = answer else { panic!("a GetInfo reply: {answer:?}") };
    assert!(rpc::is_success(&answer.status), "GetInfo on alice's session, by cookie: {answer:?}");
    // Without the cookie nor a ticket: 401 asking for Negotiate.
    std::fs::remove_file(&jar).unwrap();
    let ran = run(curl(&info, false)).await;
    assert!(!ran.ok && ran.stderr.contains("401"), "{}", ran.both());
}

/// impyla over HTTP with `auth_mechanism='GSSAPI'`: Negotiate on the first request, then the proxy's
/// `impala.auth` cookie, which impyla sends instead of new tokens (its ccache is deleted after the first
/// query: any new token would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and impyla (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impyla_http_negotiate_then_the_cookie() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy =
        start_proxy(mock.local_addr(), proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", ""))
            .await;
    let port = proxy.local_addr.port().to_string();
    // impyla asks for <service>@<host>: HTTP/localhost as curl does, and impala/localhost as for Impala's
    // own hs2-http port; the proxy's HTTP acceptor takes any key of its keytab.
    for service in ["HTTP", "impala"] {
        let ran = impyla("alice", &["http", &port, service]).await;
        assert_eq!(lines(&ran), ["alice"; 5], "impyla http {service}:\n{}", ran.both());
        println!(
            "impyla HTTP + GSSAPI ({service}/localhost): 5 queries, 1 Negotiate, ok in {:.1}s",
            ran.took.as_secs_f64()
        );
    }
    assert!(mock.sessions().is_empty());
}

/// What a client sees when its ticket cannot be accepted: the reason, through the SASL failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and impyla (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn bad_tickets_are_refused_with_the_reason() {
    let kdc = testkdc::shared();
    let mock = kerberized_mock("hs2proxy=*").await;
    // A proxy whose keytab is out of date: the KDC issued a new key for impala/stale.test since.
    let stale = "impala/stale.test";
    let keytab = kdc.add_principal(stale, None).unwrap();
    let old = kdc.dir().join("keytabs").join("stale-old.keytab");
    std::fs::copy(&keytab, &old).unwrap();
    rekey(kdc, stale);
    let proxy = start_proxy(mock.local_addr(), proxy_config(&old, stale, "impala/localhost", "")).await;
    let port = proxy.local_addr.port().to_string();
    let ran = impyla("alice", &["service", &port, "impala", "stale.test"]).await;
    println!("stale keytab: {}", ran.stdout.trim());
    assert!(ran.stdout.starts_with("ERR ") && ran.stdout.contains("impala/stale.test@EXAMPLE.TEST"), "{}", ran.both());
    assert!(ran.stdout.contains("kvno"), "the reason names the key version: {}", ran.both());

    // A wrong service name: a ticket for hive/localhost sent to the proxy (which is impala/localhost).
    let proxy =
        start_proxy(mock.local_addr(), proxy_config(&accept_keytab(), "impala/localhost", "impala/localhost", ""))
            .await;
    let port = proxy.local_addr.port().to_string();
    let ran = impyla("alice", &["service", &port, "hive"]).await;
    println!("wrong service: {}", ran.stdout.trim());
    assert!(ran.stdout.starts_with("ERR ") && ran.stdout.contains("hive/localhost@EXAMPLE.TEST"), "{}", ran.both());
    // The same mistake from Java (beeline with principal=hive/localhost): the proxy's reason, through JDBC.
    let url = format!("jdbc:hive2://localhost:{port}/default;principal=hive/localhost@EXAMPLE.TEST");
    let ran = run(super::clients::beeline(&url, "select 1")).await;
    let line = ran.both().lines().find(|l| l.contains("Peer indicated failure")).unwrap_or_default().to_string();
    println!("beeline, wrong service: {}", line.trim());
    assert!(!ran.ok && line.contains("hive/localhost@EXAMPLE.TEST"), "{}", ran.both());
    // A service the KDC does not know: the client's own library says so before the proxy sees anything.
    let ran = impyla("alice", &["service", &port, "nosuch"]).await;
    println!("unknown service: {}", ran.stdout.trim());
    assert!(ran.stdout.starts_with("ERR ") && ran.stdout.contains("not found in Kerberos database"), "{}", ran.both());
    // An expired ticket: the user's TGT outlived its life; the client cannot even ask for a service ticket.
    let short = "carol-short";
    if !kdc.keytab(short).exists() {
        kdc.add_principal(short, Some(Duration::from_secs(2))).unwrap();
    }
    let ccache = kdc.kinit(short).unwrap();
    // Waiting for the ticket's end time (real time at the KDC): there is no event to await.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(repo().join("tests/kerberos/impyla.py")).args(["service", &port, "impala"]);
    let mut cmd = as_user(cmd, "alice");
    cmd.env("KRB5CCNAME", &ccache);
    let ran = run(cmd).await;
    println!("expired ticket: {}", ran.stdout.trim());
    assert!(ran.stdout.starts_with("ERR ") && ran.stdout.to_lowercase().contains("expired"), "{}", ran.both());
    assert!(mock.sessions().is_empty());
}

/// A new random key for `principal` (kvno + 1), written to a throw-away keytab: older keytabs are stale.
fn rekey(kdc: &TestKdc, principal: &str) {
    let scratch = kdc.dir().join("keytabs").join("rekeyed.keytab");
    let out = Command::new("kadmin.local")
        .envs(kdc.env())
        .args(["-q", &format!("ktadd -k {} {principal}", scratch.display())])
        .output()
        .expect("kadmin.local");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The binary with a keytab that exists but lacks the key it needs: exit 2, one line naming the key.
#[test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
fn a_keytab_without_the_key_stops_the_start_naming_the_key() {
    let kdc = testkdc::shared();
    let only_http = kdc.keytab("HTTP/localhost");
    let proxy_kt = kdc.keytab("hs2proxy");
    let base = "listen = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"off\"\n";
    for (section, key, says) in [
        (
            format!("[kerberos]\nkeytab = {:?}\nservice_principal = \"impala/localhost\"\n", only_http.display().to_string()),
            "kerberos.service_principal",
            "impala/localhost@EXAMPLE.TEST",
        ),
        (
            format!(
                "[backend_auth]\ntransport = \"gssapi\"\n[kerberos]\nclient_principal = \"alice\"\nclient_keytab = {:?}\n",
                proxy_kt.display().to_string()
            ),
            "kerberos.client_principal",
            "alice",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hs2-proxy.toml");
        std::fs::write(&file, format!("{base}{section}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
            .arg("--config")
            .arg(&file)
            .env_remove("HS2_PROXY_CONFIG")
            .envs(kdc.env())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{key}: exit {:?}: {}", out.status.code(), stderr.trim());
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let line = stderr.lines().next().unwrap_or_default();
        assert!(line.starts_with(&format!("hs2-proxy: configuration error: {key}: ")) && line.contains(says), "{stderr}");
    }
}
