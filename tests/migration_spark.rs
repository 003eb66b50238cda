//! Sessions that outlive their server (issue 14), against real Spark Thrift Servers: a rolling restart
//! through hs2-proxy (evacuate, restart, undrain, each server in turn) and the same through HAProxy as the
//! baseline, with impyla, beeline and the Hue pattern running queries throughout; a `kill -9`; sessions
//! that must not move (a temporary view) and moves whose replay fails (a database the target lacks).
//!
//! `#[ignore]`d so that `cargo test` stays fast; `scripts/test.sh` installs the peers and runs these with
//! `--ignored --test-threads=1`. Every test fails loudly when a peer is missing. The figures go to stderr at
//! the end (the last test, `zz_report`), outside libtest's capture.
//!
//! - `migration_spark/servers.rs`: three Spark servers (SASL PLAIN), restartable, shared by the tests.
//! - `migration_spark/sessions.rs`: sessions with state, and asking a server directly about a handle.
//! - `migration_spark/load.rs`: impyla, beeline and the Hue pattern in a loop, counting errors.
//! - `migration_spark/haproxy.rs`: HAProxy with health checks and its runtime API (drain).
//! - `migration_spark/rolling.rs`: the rolling restarts.

mod common;
#[path = "migration_spark/haproxy.rs"]
mod haproxy;
#[allow(dead_code)]
#[path = "interop_spark/hue.rs"]
mod hue;
#[path = "migration_spark/load.rs"]
mod load;
#[path = "migration_spark/rolling.rs"]
mod rolling;
#[path = "migration_spark/servers.rs"]
mod servers;
#[path = "migration_spark/sessions.rs"]
mod sessions;

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hs2_proxy::admin::api::{BackendJson, BackendsJson, SessionsJson};
use hs2_proxy::config::{BackendConfig, BackendTransport};
use hs2_proxy::server::{self, ProxyHandle};
use tokio::sync::OnceCell;

use servers::Servers;
use sessions::{holds_session, on_server, row};

/// Sessions of the rolling restart: `HS2_MIGRATION_SESSIONS` (default 30, as issue 14 asks).
pub fn session_count() -> usize {
    std::env::var("HS2_MIGRATION_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(30)
}

/// The servers, with every database the tests use created on each of them (each has its own metastore).
async fn prepared() -> &'static Servers {
    static DATABASES: OnceCell<()> = OnceCell::const_new();
    let s = servers::servers().await;
    DATABASES
        .get_or_init(|| async {
            let t0 = Instant::now();
            let mut names: Vec<String> = (1..=session_count()).map(sessions::database).collect();
            names.extend(load::DATABASES.iter().map(|d| d.to_string()));
            let statements: Vec<String> = names.iter().map(|d| format!("create database if not exists {d}")).collect();
            let all: Vec<_> =
                s.servers.iter().map(|srv| tokio::spawn(on_server_owned(srv.addr, statements.clone()))).collect();
            for t in all {
                t.await.expect("database set-up");
            }
            note(format!(
                "{} databases created on each of {} servers in {:.1}s",
                names.len(),
                s.servers.len(),
                t0.elapsed().as_secs_f64()
            ));
        })
        .await;
    s
}

async fn on_server_owned(addr: std::net::SocketAddr, statements: Vec<String>) {
    on_server(addr, &statements).await
}

/// hs2-proxy in front of the servers, configured by address only (the proxy detects Spark's kind).
pub async fn proxy_for(servers: &Servers) -> ProxyHandle {
    let filter = std::env::var("HS2_PROXY_LOG").unwrap_or_else(|_| "hs2_proxy=info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let mut c = common::base_config();
    c.backend_auth.transport = BackendTransport::Sasl;
    c.backends = servers.servers.iter().map(|s| BackendConfig::new(&s.addr.to_string())).collect();
    server::start(c).await.expect("proxy starts")
}

pub async fn admin(proxy: &ProxyHandle, method: &str, path: &str) -> (u16, String) {
    let addr = proxy.admin_addr.expect("admin listener").to_string();
    hs2_proxy::cli_admin::http(&addr, method, path, None).await.expect("admin API answers")
}

pub async fn backend_view(proxy: &ProxyHandle, addr: &str) -> BackendJson {
    let (_, body) = admin(proxy, "GET", "/api/backends").await;
    let all: BackendsJson = serde_json::from_str(&body).expect("backends JSON");
    all.backends.into_iter().find(|b| b.address == addr).expect("the backend is listed")
}

pub async fn sessions_view(proxy: &ProxyHandle) -> SessionsJson {
    let (_, body) = admin(proxy, "GET", "/api/sessions").await;
    serde_json::from_str(&body).expect("sessions JSON")
}

/// Runs the `hs2-proxy` binary's admin subcommand against this proxy, as an operator would.
pub fn cli(proxy: &ProxyHandle, args: &[&str]) -> String {
    let admin = proxy.admin_addr.expect("admin listener").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .args(args)
        .args(["--admin", &admin])
        .output()
        .expect("the hs2-proxy binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hs2-proxy {args:?}: {text}");
    text
}

/// Waits until the evacuation of `addr` has ended (any state but `running`).
pub async fn evacuation_end(proxy: &ProxyHandle, addr: &str, within: Duration) -> BackendJson {
    let deadline = Instant::now() + within;
    loop {
        let b = backend_view(proxy, addr).await;
        if b.evacuation.as_ref().is_some_and(|e| e.state != "running") {
            return b;
        }
        assert!(Instant::now() < deadline, "the evacuation of {addr} still runs after {within:?}: {:?}", b.evacuation);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the proxy sees `addr` in `observed` state.
pub async fn observed(proxy: &ProxyHandle, addr: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = backend_view(proxy, addr).await;
        if b.observed == state {
            return;
        }
        assert!(Instant::now() < deadline, "the proxy never saw {addr} {state}: {} ({})", b.observed, b.reason);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines for the end-of-run report.
static REPORT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints `line` (captured, shown with --nocapture) and keeps it for the final report.
pub fn note(line: String) {
    println!("{line}");
    REPORT.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Notes a test's wall time when it ends (also when it panics).
pub struct Timed(&'static str, Instant);

impl Timed {
    pub fn start(name: &'static str) -> Timed {
        Timed(name, Instant::now())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let failed = if std::thread::panicking() { " (FAILED)" } else { "" };
        note(format!("time {:>6.1}s  {}{failed}", self.1.elapsed().as_secs_f64(), self.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peers (Spark Thrift Server, impyla, beeline, HAProxy): run by scripts/test.sh"]
async fn rolling_restart_through_hs2_proxy_and_haproxy() {
    let _t = Timed::start("rolling_restart_through_hs2_proxy_and_haproxy");
    let servers = prepared().await;
    rolling::through_hs2_proxy(servers).await;
    rolling::through_haproxy(servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn a_session_with_a_temporary_view_is_not_moved_and_says_why() {
    let _t = Timed::start("a_session_with_a_temporary_view_is_not_moved_and_says_why");
    let servers = prepared().await;
    let proxy = proxy_for(servers).await;
    let mut c = hue::connect(proxy.local_addr, &servers::auth("app")).await.expect("connect");
    let s = c.open_session(Some("app"), &[]).await.expect("OpenSession");
    row(&mut c, &s, "create temporary view tv as select 42 as answer").await.expect("temporary view");
    let addr = proxy.proxy.session_backend(&s.guid).expect("routed");
    cli(&proxy, &["evacuate", &addr, "--deadline", "2s"]);
    let e = evacuation_end(&proxy, &addr, Duration::from_secs(30)).await.evacuation.expect("progress");
    assert_eq!((e.state.as_str(), e.left), ("deadline", 1), "{e:?}");
    assert!(e.unmovable.iter().any(|u| u.contains("temporary")), "the evacuation says why: {e:?}");
    let view = sessions_view(&proxy).await;
    let listed = view.sessions.iter().find(|x| x.id == s.guid.impala_id()).expect("listed");
    let why = listed.unmovable.clone().unwrap_or_default();
    assert!(why.contains("temporary"), "the session says why: {why:?}");
    // It stayed, and its view with it.
    assert_eq!(proxy.proxy.session_backend(&s.guid), Some(addr.clone()));
    assert_eq!(row(&mut c, &s, "select answer from tv").await.map(|r| r.len()), Ok(1));
    note(format!("a session with a temporary view stays on {addr}: {why}"));
    cli(&proxy, &["undrain", &addr]);
    c.close_session(&s).await.expect("CloseSession");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn a_move_whose_replay_fails_leaves_the_session_in_place() {
    let _t = Timed::start("a_move_whose_replay_fails_leaves_the_session_in_place");
    let servers = prepared().await;
    let proxy = proxy_for(servers).await;
    let mut c = hue::connect(proxy.local_addr, &servers::auth("app")).await.expect("connect");
    let s = c.open_session(Some("app"), &[]).await.expect("OpenSession");
    let addr = proxy.proxy.session_backend(&s.guid).expect("routed");
    // Each server has its own metastore: this database exists on the session's server only.
    let db = format!("only_here_{}", std::process::id());
    row(&mut c, &s, &format!("create database {db}")).await.expect("create database");
    row(&mut c, &s, &format!("use {db}")).await.expect("use");
    cli(&proxy, &["evacuate", &addr, "--deadline", "2s"]);
    let e = evacuation_end(&proxy, &addr, Duration::from_secs(30)).await.evacuation.expect("progress");
    assert!(e.state == "deadline" && e.left == 1 && e.failed >= 1, "{e:?}");
    assert_eq!(proxy.proxy.session_backend(&s.guid), Some(addr.clone()), "it stays");
    assert_eq!(row(&mut c, &s, "select current_database()").await, Ok(vec![db.clone()]), "with its state");
    let server = servers.by_addr(&addr);
    let mut direct = hue::connect(server.addr, &servers::auth("probe")).await.expect("connect directly");
    assert_eq!(holds_session(&mut direct, &s).await, Ok(true), "on its server, under its own handle");
    let text = metrics(&proxy);
    let failed =
        text.lines().filter(|l| l.starts_with("hs2_proxy_session_moves_total") && l.contains("result=\"failed\""));
    assert!(failed.count() >= 1, "{text}");
    note(format!("a move whose replay fails (`use {db}`: no such database on the targets) leaves it on {addr}"));
    cli(&proxy, &["undrain", &addr]);
    row(&mut c, &s, "use default").await.expect("use default");
    row(&mut c, &s, &format!("drop database {db}")).await.expect("drop database");
    c.close_session(&s).await.expect("CloseSession");
    proxy.shutdown();
}

/// A target that refuses a replayed statement is skipped for the next: the database exists on the
/// session's server and on one other; the least-loaded target lacks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn a_move_tries_the_next_target_when_one_cannot_replay() {
    let _t = Timed::start("a_move_tries_the_next_target_when_one_cannot_replay");
    let servers = prepared().await;
    let proxy = proxy_for(servers).await;
    let mut c = hue::connect(proxy.local_addr, &servers::auth("app")).await.expect("connect");
    // One session on the first server, two on the third, none on the second: the second is preferred.
    let (a, b, target) = (&servers.servers[0], &servers.servers[1], &servers.servers[2]);
    let (mut session, mut fillers, mut others) = (None, Vec::new(), Vec::new());
    while session.is_none() || fillers.len() < 2 {
        let s = c.open_session(Some("app"), &[]).await.expect("OpenSession");
        let on = proxy.proxy.session_backend(&s.guid).expect("routed");
        match on {
            _ if on == a.addr.to_string() && session.is_none() => session = Some(s),
            _ if on == target.addr.to_string() && fillers.len() < 2 => fillers.push(s),
            _ => others.push(s),
        }
        assert!(others.len() < 20, "sessions do not spread");
    }
    for s in &others {
        c.close_session(s).await.expect("CloseSession");
    }
    let s = session.expect("a session on the first server");
    let db = format!("on_a_and_c_{}", std::process::id());
    for server in [a, target] {
        on_server(server.addr, &[format!("create database {db}")]).await;
    }
    row(&mut c, &s, &format!("use {db}")).await.expect("use");
    cli(&proxy, &["evacuate", &a.addr.to_string(), "--deadline", "10s"]);
    let e = evacuation_end(&proxy, &a.addr.to_string(), Duration::from_secs(30)).await.evacuation.expect("progress");
    assert_eq!((e.state.as_str(), e.moved), ("done", 1), "{e:?}");
    assert_eq!(proxy.proxy.session_backend(&s.guid), Some(target.addr.to_string()), "not {}", b.addr);
    assert_eq!(row(&mut c, &s, "select current_database()").await, Ok(vec![db.clone()]));
    note(format!("a move skipped {} (no database {db} there) for {}", b.addr, target.addr));
    cli(&proxy, &["undrain", &a.addr.to_string()]);
    for s in fillers.iter().chain([&s]) {
        c.close_session(s).await.expect("CloseSession");
    }
    for server in [a, target] {
        on_server(server.addr, &[format!("drop database {db}")]).await;
    }
    proxy.shutdown();
}

/// Spark runs every statement asynchronously: `USE nosuchdb` is accepted, and its operation then fails.
/// It is not the session's state: the session moves with the database it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn a_statement_that_failed_is_not_replayed() {
    let _t = Timed::start("a_statement_that_failed_is_not_replayed");
    let servers = prepared().await;
    let proxy = proxy_for(servers).await;
    let mut c = hue::connect(proxy.local_addr, &servers::auth("app")).await.expect("connect");
    let s = c.open_session(Some("app"), &[]).await.expect("OpenSession");
    row(&mut c, &s, "use db_1").await.expect("use db_1");
    let failed = row(&mut c, &s, "use no_such_db").await;
    assert!(failed.as_ref().is_err_and(|e| e.contains("SCHEMA_NOT_FOUND")), "{failed:?}");
    row(&mut c, &s, "set spark.sql.shuffle.partitions=9").await.expect("set");
    let failed = row(&mut c, &s, "set spark.sql.shuffle.partitions=nine").await;
    assert!(failed.is_err(), "Spark refuses a setting of the wrong type: {failed:?}");
    let addr = proxy.proxy.session_backend(&s.guid).expect("routed");
    cli(&proxy, &["evacuate", &addr, "--deadline", "10s"]);
    let e = evacuation_end(&proxy, &addr, Duration::from_secs(30)).await.evacuation.expect("progress");
    assert_eq!((e.state.as_str(), e.moved), ("done", 1), "{e:?}");
    assert_ne!(proxy.proxy.session_backend(&s.guid), Some(addr.clone()), "it moved");
    assert_eq!(row(&mut c, &s, "select current_database()").await, Ok(vec!["db_1".to_string()]));
    let setting = row(&mut c, &s, "SET spark.sql.shuffle.partitions").await;
    assert_eq!(setting, Ok(vec!["spark.sql.shuffle.partitions".to_string(), "9".into()]));
    note(
        "failed statements (`use no_such_db`, a setting of the wrong type) are not replayed: the session moved".into(),
    );
    cli(&proxy, &["undrain", &addr]);
    c.close_session(&s).await.expect("CloseSession");
    proxy.shutdown();
}

/// `kill -9` of a server whose sessions are idle: each session's next call finds the server gone, the
/// session opens again elsewhere with its state, and the call goes on there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn sigkill_of_a_server_moves_its_idle_sessions_on_their_next_call() {
    let _t = Timed::start("sigkill_of_a_server_moves_its_idle_sessions_on_their_next_call");
    let servers = prepared().await;
    let proxy = proxy_for(servers).await;
    let mut all = Vec::new();
    for i in 1..=6 {
        all.push(sessions::Tracked::open(proxy.local_addr, i).await);
    }
    let victim = proxy.proxy.session_backend(&all[0].handle.guid).expect("routed");
    let on_victim: Vec<usize> = all
        .iter()
        .filter(|s| proxy.proxy.session_backend(&s.handle.guid).as_deref() == Some(victim.as_str()))
        .map(|s| s.i)
        .collect();
    servers.by_addr(&victim).kill9().await;
    let t0 = Instant::now();
    let mut waits = Vec::new();
    for s in &mut all {
        let t = Instant::now();
        s.check().await.unwrap_or_else(|e| panic!("session {} after kill -9 of {victim}: {e}", s.i));
        waits.push(t.elapsed().as_millis());
    }
    let text = metrics(&proxy);
    let moved: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("hs2_proxy_session_moves_total{") && l.contains("reason=\"failure\",result=\"moved\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(moved as usize, on_victim.len(), "one move per session of the killed server:\n{text}");
    for s in &all {
        assert_ne!(proxy.proxy.session_backend(&s.handle.guid), Some(victim.clone()), "session {} moved", s.i);
    }
    note(format!(
        "kill -9 of {victim}: its {} idle sessions {on_victim:?} answered their next call with their state \
         (each check's wall time, ms: {waits:?}; all in {:.1}s)",
        on_victim.len(),
        t0.elapsed().as_secs_f64()
    ));
    proxy.shutdown();
}

pub fn metrics(proxy: &ProxyHandle) -> String {
    proxy.proxy.metrics().encode(&proxy.proxy.figures()).expect("metrics encode")
}

/// Last in name order (libtest sorts; the suite runs with --test-threads=1): timings and memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn zz_report() {
    let Some(servers) = servers::started() else { return };
    let mut lines = REPORT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lines.push(format!(
        "{} Spark Thrift Servers started in parallel in {:.1}s",
        servers.servers.len(),
        servers.startup.as_secs_f64()
    ));
    let restarts = servers.restarts();
    let total: f64 = restarts.iter().map(Duration::as_secs_f64).sum();
    lines.push(format!("{} server restarts, {total:.1}s in all", restarts.len()));
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n==== migration_spark report ====");
    for l in &lines {
        let _ = writeln!(err, "  {l}");
    }
    let _ = writeln!(err, "================================");
}
