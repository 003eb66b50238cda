//! The operator view through real sockets: the admin API, the status page, `/metrics` and the CLI
//! against a running proxy and mock impalads. After opens, closes, a dead backend and drains, every view
//! must agree with what the mock impalads really hold.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hs2_proxy::admin::api::{BackendJson, BackendsJson, HistoryJson, SessionsJson};
use hs2_proxy::cli_admin::http;
use hs2_proxy::config::{AdminToken, BackendTransport, Config};
use hs2_proxy::hs2::rpc::hs2::{TGetInfoType, TOperationState as op_state};
use hs2_proxy::hs2client::ClientAuth;
use hs2_proxy::metrics::{backend_series, sample};
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;
use serde::de::DeserializeOwned;

fn fast_health(c: &mut Config) {
    c.health.interval = Duration::from_millis(50);
    c.health.timeout = Duration::from_millis(300);
    c.health.fall = 2;
}

fn admin(proxy: &ProxyHandle) -> String {
    proxy.admin_addr.expect("the admin listener runs").to_string()
}

/// A request with the proxy's own token, if it has one.
async fn call(proxy: &ProxyHandle, method: &str, path: &str) -> (u16, String) {
    let token = proxy.proxy.config().admin.token.as_ref().map(|t| t.0.as_str());
    http(&admin(proxy), method, path, token).await.expect("the admin API answers")
}

async fn get<T: DeserializeOwned>(proxy: &ProxyHandle, path: &str) -> T {
    let (status, body) = call(proxy, "GET", path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

async fn backend(proxy: &ProxyHandle, addr: &str) -> BackendJson {
    let all: BackendsJson = get(proxy, "/api/backends").await;
    all.backends.into_iter().find(|b| b.address == addr).expect("listed")
}

async fn wait_state(proxy: &ProxyHandle, addr: &str, state: &str) {
    for _ in 0..200 {
        if backend(proxy, addr).await.state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never became {state}");
}

/// The history once its samples have counted `calls` calls (a sample is taken every interval).
async fn history_with(proxy: &ProxyHandle, calls: u64) -> HistoryJson {
    for _ in 0..400 {
        let h: HistoryJson = get(proxy, "/api/history").await;
        if h.samples.iter().map(|s| s.calls).sum::<u64>() >= calls {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let h: HistoryJson = get(proxy, "/api/history").await;
    let counted: u64 = h.samples.iter().map(|s| s.calls).sum();
    panic!(
        "the history counted {counted} calls, not {calls}: {:?}",
        h.samples.iter().filter(|s| s.calls > 0).collect::<Vec<_>>()
    );
}

fn ids(mock: &MockImpalad) -> BTreeSet<String> {
    mock.sessions().iter().map(|g| g.impala_id()).collect()
}

/// The API, the filtered API, `/metrics` and the page all say what each mock holds.
async fn assert_views_agree(proxy: &ProxyHandle, mocks: &[MockImpalad]) {
    let backends: BackendsJson = get(proxy, "/api/backends").await;
    let sessions: SessionsJson = get(proxy, "/api/sessions").await;
    let metrics = call(proxy, "GET", "/metrics").await.1;
    let page = call(proxy, "GET", "/").await.1;
    let listed_total: usize = mocks.iter().map(|m| m.sessions().len()).sum();
    assert_eq!(sessions.sessions.len(), listed_total, "no session is listed that no impalad holds");
    for m in mocks {
        let addr = m.local_addr().to_string();
        let held = ids(m);
        let ops = m.open_operations();
        let b = backends.backends.iter().find(|b| b.address == addr).expect("every backend is listed");
        assert_eq!((b.sessions as usize, b.operations as usize), (held.len(), ops), "{addr} counts");
        let mine: Vec<_> = sessions.sessions.iter().filter(|s| s.backend == addr).collect();
        assert_eq!(mine.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>(), held, "{addr} sessions");
        assert_eq!(mine.iter().map(|s| s.open_operations).sum::<usize>(), ops, "{addr} operations");
        let filtered: SessionsJson = get(proxy, &format!("/api/sessions?backend={addr}")).await;
        assert_eq!(filtered.sessions.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>(), held);

        let series = |name: &str| sample(&metrics, &backend_series(name, &addr));
        assert_eq!(series("backend_sessions"), Some(held.len() as f64), "{metrics}");
        assert_eq!(series("backend_operations"), Some(ops as f64));
        let state = format!("hs2_proxy_backend_state{{backend=\"{addr}\",state=\"{}\"}}", b.state);
        assert_eq!(sample(&metrics, &state), Some(1.0), "{state}");

        let row = format!(
            "data-backend=\"{addr}\" data-state=\"{}\" data-sessions=\"{}\" data-operations=\"{ops}\"",
            b.state,
            held.len()
        );
        assert!(page.contains(&row), "the page shows {row}");
        for id in &held {
            assert!(page.contains(&format!("data-session=\"{id}\"")), "the page lists session {id}");
        }
    }
    assert_eq!(sample(&metrics, "hs2_proxy_sessions"), Some(listed_total as f64));
    assert!(!sessions.sessions.is_empty() || listed_total == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_page_and_metrics_agree_with_the_backends_after_opens_closes_failures_and_drains() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    // Sessions of a dead backend are forgotten at once here (they move on their next call otherwise,
    // which tests/migration.rs covers), so that every view agrees with what the mocks hold.
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        fast_health(c);
        c.sessions.move_on_failure = false;
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut sessions = Vec::new();
    for _ in 0..9 {
        sessions.push(c.open_session(None, &[]).await.unwrap());
    }
    let running = c.execute(&sessions[0], "select sleep(60000)").await.unwrap();
    let done = c.execute(&sessions[1], "select id from range(3)").await.unwrap();
    c.execute(&sessions[2], "select 1").await.unwrap();
    c.close_operation(&done).await.unwrap();
    c.close_session(&sessions[3]).await.unwrap();
    assert_views_agree(&proxy, &mocks).await;

    // What one session looks like: impalad's id, the client's address, the running statement.
    let all: SessionsJson = get(&proxy, "/api/sessions").await;
    let first = all.sessions.iter().find(|s| s.id == sessions[0].guid.impala_id()).expect("listed");
    assert_eq!(first.running_statement.as_deref(), Some("select sleep(60000)"));
    assert_eq!(first.operations, vec![running.id.guid.impala_id()]);
    assert!(first.clients.iter().all(|a| a.starts_with("127.0.0.1:")) && first.clients.len() == 1, "{first:?}");
    assert!(first.user.is_none());
    let body = call(&proxy, "GET", "/api/sessions").await.1;
    assert!(!body.contains("secret"), "never the secret");

    // A backend dies: its sessions are gone everywhere.
    let dead = mocks[2].local_addr().to_string();
    mocks[2].stop().await;
    wait_state(&proxy, &dead, "down").await;
    let lost = sessions.iter().find(|s| !mocks[..2].iter().any(|m| m.has_session(&s.guid))).unwrap();
    let text = error_text(c.execute(lost, "select 1").await);
    assert!(text.starts_with("Invalid session id"), "{text}");
    assert_views_agree(&proxy, &mocks).await;

    // The operator drains one backend: new sessions go elsewhere, the views show it.
    let drained = mocks[1].local_addr().to_string();
    let (status, body) = call(&proxy, "POST", &format!("/api/backends/{drained}/drain")).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        let s = c.open_session(None, &[]).await.unwrap();
        assert!(mocks[0].has_session(&s.guid));
    }
    assert_eq!(backend(&proxy, &drained).await.state, "drain");
    assert_views_agree(&proxy, &mocks).await;

    let metrics = call(&proxy, "GET", "/metrics").await.1;
    let exec = sample(
        &metrics,
        &format!("hs2_proxy_rpcs_total{{method=\"ExecuteStatement\",backend=\"{}\"}}", mocks[0].local_addr()),
    );
    assert!(exec.is_some(), "calls are counted per method and backend");
    let unroutable = "hs2_proxy_rpc_errors_total{method=\"ExecuteStatement\",backend=\"none\",kind=\"unroutable\"}";
    assert_eq!(sample(&metrics, unroutable), Some(1.0), "the call on a lost session is an error");
    assert!(metrics.contains("hs2_proxy_rpc_duration_seconds_bucket{"), "latency histograms");
    assert!(metrics.contains("hs2_proxy_health_probe_duration_seconds_bucket{"), "probe latency");
    assert!(metrics.contains("hs2_proxy_upstream_connections{backend="), "pool usage");
    assert!(
        sample(&metrics, &backend_series("bytes_out_total", &mocks[0].local_addr().to_string())).unwrap_or(0.0) > 0.0
    );
    assert!(metrics.ends_with("# EOF\n"));
    for s in &sessions {
        assert!(!metrics.contains(&s.guid.impala_id()), "no session id is a label");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_closes_sessions_and_cancels_queries_on_the_impalad() {
    let mocks = mocks(2, MockAuth::Plain { users: None }).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let mut alice = connect(&proxy, &plain("alice", "pw")).await;
    let mut bob = connect(&proxy, &plain("bob", "pw")).await;
    let a = alice.open_session(None, &[]).await.unwrap();
    let b = bob.open_session(None, &[]).await.unwrap();
    let query = alice.execute(&a, "select sleep(60000)").await.unwrap();

    let only: SessionsJson = get(&proxy, "/api/sessions?user=alice").await;
    assert_eq!(only.sessions.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![a.guid.impala_id()]);
    assert_eq!(only.sessions[0].user.as_deref(), Some("alice"));

    let (status, body) = call(&proxy, "POST", &format!("/api/operations/{}/cancel", query.id.guid.impala_id())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice.operation_status(&query).await.unwrap().0, op_state::CANCELED_STATE);

    let owner = mocks.iter().find(|m| m.has_session(&b.guid)).unwrap();
    let (status, body) = call(&proxy, "POST", &format!("/api/sessions/{}/close", b.guid.impala_id())).await;
    assert_eq!(status, 200, "{body}");
    assert!(!owner.has_session(&b.guid), "CloseSession reached the impalad");
    assert!(error_text(bob.execute(&b, "select 1").await).starts_with("Invalid session id"));
    assert_views_agree(&proxy, &mocks).await;

    // Mistakes get clear answers.
    assert_eq!(call(&proxy, "POST", &format!("/api/sessions/{}/close", b.guid.impala_id())).await.0, 404);
    assert_eq!(call(&proxy, "POST", "/api/sessions/not-an-id/close").await.0, 400);
    assert_eq!(call(&proxy, "POST", "/api/backends/nohost:1/drain").await.0, 404);
    assert_eq!(call(&proxy, "POST", &format!("/api/backends/{}/explode", mocks[0].local_addr())).await.0, 404);
    assert_eq!(call(&proxy, "GET", "/api/backends/x/drain").await.0, 405);
}

#[tokio::test]
async fn the_token_is_enforced_and_health_checks_stay_open() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let token = "t0ken-for-tests";
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| c.admin.token = Some(AdminToken(token.into()))).await;
    let addr = admin(&proxy);
    let backend = mocks[0].local_addr().to_string();
    for path in ["/api/backends", "/api/sessions", "/metrics", "/fragment"] {
        assert_eq!(http(&addr, "GET", path, None).await.unwrap().0, 401, "{path} without a token");
        assert_eq!(http(&addr, "GET", path, Some("wrong")).await.unwrap().0, 401, "{path} with a wrong token");
        assert_eq!(http(&addr, "GET", path, Some(token)).await.unwrap().0, 200, "{path} with the token");
    }
    let drain = format!("/api/backends/{backend}/drain");
    assert_eq!(http(&addr, "POST", &drain, None).await.unwrap().0, 401);
    assert_eq!(backend_state(&proxy, &backend), "active", "a refused action changes nothing");
    let (status, page) = http(&addr, "GET", "/", None).await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Admin token required") && !page.contains(&backend), "the shell shows no data");
    let (_, page) = http(&addr, "GET", "/", Some(token)).await.unwrap();
    assert!(page.contains(&backend));

    assert_eq!(http(&addr, "GET", "/healthz", None).await.unwrap(), (200, "ok\n".into()));
    assert_eq!(http(&addr, "GET", "/readyz", None).await.unwrap().0, 200);
    assert_eq!(http(&addr, "POST", &format!("/api/backends/{backend}/maintenance"), Some(token)).await.unwrap().0, 200);
    assert_eq!(http(&addr, "GET", "/readyz", None).await.unwrap().0, 503, "no backend takes new sessions");
}

fn backend_state(proxy: &ProxyHandle, addr: &str) -> String {
    proxy.proxy.find_backend(addr).expect("backend").health().admin.to_string()
}

/// Runs the built binary with `args`; returns (exit code, stdout, stderr).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
            .args(&args)
            .env_remove("HS2_PROXY_CONFIG")
            .env_remove("HS2_PROXY_ADMIN")
            .env_remove("HS2_PROXY_ADMIN_TOKEN_FILE")
            .output()
            .expect("the binary runs");
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
    })
    .await
    .expect("joined")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_drains_and_closes_against_a_running_proxy() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "cli-token\n").unwrap();
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| c.admin.token = Some(AdminToken("cli-token".into()))).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(c.open_session(None, &[]).await.unwrap());
    }
    c.execute(&sessions[0], "select sleep(60000)").await.unwrap();
    let flags = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--admin".into(), admin(&proxy), "--admin-token-file".into(), token_file.display().to_string()]);
        v
    };
    let a0 = mocks[0].local_addr().to_string();

    let (code, out, err) = cli(flags(&["backends"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ADDRESS") && out.contains(&a0), "{out}");
    let (code, out, _) = cli(flags(&["backends", "--json"])).await;
    assert_eq!(code, 0);
    let parsed: BackendsJson = serde_json::from_str(&out).expect("--json prints the API's JSON");
    for m in &mocks {
        let b = parsed.backends.iter().find(|b| b.address == m.local_addr().to_string()).unwrap();
        assert_eq!(b.sessions as usize, m.sessions().len());
    }

    let (code, out, _) = cli(flags(&["sessions", "--backend", &a0, "--json"])).await;
    assert_eq!(code, 0);
    let listed: SessionsJson = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.sessions.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>(), ids(&mocks[0]));
    let (code, out, _) = cli(flags(&["sessions"])).await;
    assert_eq!(code, 0);
    assert!(out.contains("[running] select sleep(60000)") && out.ends_with("4 sessions\n"), "{out}");

    for (action, state) in [("drain", "drain"), ("maintenance", "maintenance"), ("undrain", "active")] {
        let (code, out, err) = cli(flags(&[action, &a0])).await;
        assert_eq!(code, 0, "{action}: {err}");
        assert!(out.contains(&a0), "{out}");
        assert_eq!(backend_state(&proxy, &a0), state);
    }

    let victim = sessions[1];
    let owner = mocks.iter().find(|m| m.has_session(&victim.guid)).unwrap();
    let (code, out, err) = cli(flags(&["close-session", &victim.guid.impala_id()])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("closed"), "{out}");
    assert!(!owner.has_session(&victim.guid));

    let (code, _, err) = cli(flags(&["drain", "nohost:1"])).await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("nohost:1"), "{err}");
    let no_token = vec!["backends".to_string(), "--admin".into(), admin(&proxy)];
    let (code, _, err) = cli(no_token).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let closed_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (code, _, err) = cli(vec!["backends".into(), "--admin".into(), closed_port.to_string()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    assert_views_agree(&proxy, &mocks).await;
}

#[tokio::test]
async fn the_admin_listener_can_be_turned_off_and_a_taken_port_is_an_error() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let off = proxy(&mocks, BackendTransport::Nosasl, |c| c.admin.listen = None).await;
    assert_eq!(off.admin_addr, None);
    let taken: SocketAddr = admin(&proxy(&mocks, BackendTransport::Nosasl, |_| {}).await).parse().unwrap();
    let mut c = base_config();
    c.admin.listen = Some(taken);
    // With SO_REUSEPORT (the default) a second instance shares the port: that is the upgrade path.
    c.reuse_port = false;
    let err = hs2_proxy::server::start(c).await.err().expect("the admin port is taken");
    assert!(err.to_string().contains("admin.listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_found_after_a_restart_counts_its_connection_once() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let first = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let s = connect(&first, &ClientAuth::NoSasl).await.open_session(None, &[]).await.unwrap();
    first.shutdown();
    let second = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&second, &ClientAuth::NoSasl).await;
    c.execute(&s, "select 1").await.unwrap();
    let listed: SessionsJson = get(&second, "/api/sessions").await;
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!((listed.sessions[0].connections, listed.sessions[0].clients.len()), (1, 1));
    drop(c);
    for _ in 0..200 {
        let listed: SessionsJson = get(&second, "/api/sessions").await;
        if listed.sessions[0].connections == 0 {
            assert!(listed.sessions[0].clients.is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the session stayed attached after its only client left: it would never be cleaned up");
}

/// The chromium binary: `$CHROMIUM`, else `chromium` on the PATH (scripts/setup-browser.sh installs it).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless chromium on `url` with `extra` flags and a fresh profile; returns stdout. Killed after
/// a minute so that a hung browser cannot hang the suite.
async fn browse(url: String, extra: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = std::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                "--virtual-time-budget=6000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&extra)
            .arg(&url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium runs (scripts/setup-browser.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish within a minute");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("joined")
}

/// Known traffic, then the history: every call and error counted once, slow calls in the p99, the
/// sessions each backend holds.
#[tokio::test]
async fn the_history_counts_the_traffic_it_saw() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy =
        proxy(&mocks, BackendTransport::Nosasl, |c| c.admin.history_interval = Duration::from_millis(100)).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(c.open_session(None, &[]).await.unwrap());
    }
    for i in 0..20 {
        c.get_info(&sessions[i % 3], TGetInfoType::CLI_SERVER_NAME).await.unwrap();
    }
    for _ in 0..4 {
        assert!(c.execute(&sessions[0], "select * from nowhere").await.is_err(), "an analysis error");
    }
    // Every fast call sampled before the slow ones start.
    let before = history_with(&proxy, 3 + 20 + 4).await;
    let fast = before.samples.iter().filter_map(|s| s.p99_ms).fold(0.0, f64::max);
    let slow = Duration::from_millis(40);
    assert!(fast < slow.as_millis() as f64, "the fast calls' p99: {fast} ms");
    mocks.iter().for_each(|m| m.set_delay(slow));
    for i in 0..5 {
        c.get_info(&sessions[i % 3], TGetInfoType::CLI_SERVER_NAME).await.unwrap();
    }
    mocks.iter().for_each(|m| m.set_delay(Duration::ZERO));

    let h = history_with(&proxy, 3 + 20 + 4 + 5).await;
    assert_eq!(h.interval_seconds, 0.1);
    assert_eq!(h.samples.iter().map(|s| s.calls).sum::<u64>(), 32, "each call counted once: {:?}", h.samples);
    assert_eq!(h.samples.iter().map(|s| s.errors).sum::<u64>(), 4, "the four failed statements");
    let p99 = h.samples.iter().filter_map(|s| s.p99_ms).fold(0.0, f64::max);
    assert!((slow.as_millis() as f64..200.0).contains(&p99), "the slow calls' p99: {p99} ms");
    let newest = h.samples.last().expect("samples");
    for m in &mocks {
        let held = newest.sessions.iter().find(|(a, _)| *a == m.local_addr().to_string()).map(|(_, n)| *n);
        assert_eq!(held, Some(m.sessions().len() as u64), "sessions on {}", m.local_addr());
    }
    assert_eq!(newest.sessions.iter().map(|(_, n)| n).sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (chromium): run by scripts/test.sh"]
async fn the_status_page_shows_what_the_backends_hold_in_a_real_browser() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let token = "browser-token";
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        fast_health(c);
        c.admin.token = Some(AdminToken(token.into()));
        c.sessions.move_on_failure = false;
        c.admin.history_interval = Duration::from_millis(200);
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut sessions = Vec::new();
    for _ in 0..7 {
        sessions.push(c.open_session(None, &[]).await.unwrap());
    }
    c.execute(&sessions[0], "select sleep(600000)").await.unwrap();
    c.execute(&sessions[3], "create table `<b>not bold</b>` (id int)").await.unwrap();
    c.execute(&sessions[1], "select id from range(100)").await.unwrap();
    c.close_session(&sessions[2]).await.unwrap();
    mocks[2].stop().await;
    wait_state(&proxy, &mocks[2].local_addr().to_string(), "down").await;
    call(&proxy, "POST", &format!("/api/backends/{}/maintenance", mocks[1].local_addr())).await;
    // Traffic for the charts: calls spread over a few samples, some of them failing.
    for i in 0..30 {
        c.get_info(&sessions[i % 2], TGetInfoType::CLI_SERVER_NAME).await.unwrap();
        if i % 10 == 0 {
            assert!(c.execute(&sessions[1], "select * from nowhere").await.is_err());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let history = history_with(&proxy, 7 + 4 + 30 + 3).await;
    let sessions_now: u64 = history.samples.last().map(|s| s.sessions.iter().map(|(_, n)| n).sum()).unwrap_or(0);

    // The server sends only the empty shell without the token: whatever data the DOM holds, the page's
    // own script fetched it with the token it took from the URL fragment.
    let url = format!("http://{}/#token={token}", admin(&proxy));
    let dom = browse(url.clone(), vec!["--dump-dom".into()]).await;
    let refreshes = dom.split("data-refreshes=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("0");
    assert!(refreshes.parse::<u32>().unwrap_or(0) >= 1, "the script refreshed the page: {dom}");
    assert!(!dom.contains("Admin token required"), "the token from the fragment was used");
    for m in &mocks {
        let addr = m.local_addr().to_string();
        let b = backend(&proxy, &addr).await;
        let row = format!(
            "data-backend=\"{addr}\" data-state=\"{}\" data-sessions=\"{}\" data-operations=\"{}\"",
            b.state,
            m.sessions().len(),
            m.open_operations()
        );
        assert!(dom.contains(&row), "the page shows {row}");
        for id in ids(m) {
            assert!(dom.contains(&format!("data-session=\"{id}\"")), "the page lists session {id}");
        }
    }
    assert!(dom.contains("data-state=\"down\"") && dom.contains("data-state=\"maintenance\""));
    assert!(dom.contains("&lt;b&gt;not bold&lt;/b&gt;"), "statements are escaped");
    for chart in ["sessions", "calls", "p99", "errors"] {
        let attrs = dom.split(&format!("data-chart=\"{chart}\" ")).nth(1).unwrap_or_else(|| panic!("no {chart} chart"));
        let points: usize =
            attrs.split("data-points=\"").nth(1).and_then(|p| p.split('"').next()?.parse().ok()).unwrap();
        assert!(points >= history.samples.len().min(3), "the {chart} chart draws the samples ({points})");
    }
    let sessions_last = dom.split("data-chart=\"sessions\"").nth(1).and_then(|a| a.split("data-last=\"").nth(1));
    let sessions_last = sessions_last.and_then(|l| l.split('"').next()).unwrap_or_default();
    assert_eq!(sessions_last, sessions_now.to_string(), "the sessions chart ends at the sessions held");
    assert!(dom.contains("<polyline"), "lines are drawn");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("admin-status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(url, vec![format!("--screenshot={}", shot.display()), "--window-size=1400,1500".into()]).await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture ({} bytes)", png.len());
    println!("status page screenshot: {}", shot.display());
}
