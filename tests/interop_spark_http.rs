//! Spark Thrift Server in HTTP mode (`hive.server2.transport.mode=http`) behind hs2-proxy: binary clients to an
//! HTTP backend, HTTP clients (ours and impyla) through the proxy's HTTP side, and impyla directly as the
//! baseline. One server of its own (the SASL/NOSASL suite in `interop_spark.rs` starts four); in HTTP mode it
//! binds every interface, so every test connects to 127.0.0.1 only. `#[ignore]`d: `scripts/test.sh` installs
//! Spark and impyla and runs it.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{client_via, creds, Via};
use hs2_proxy::config::{BackendConfig, BackendKind, BackendTransport, UpstreamConfig, UpstreamTransport};
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::server::{self, ProxyHandle};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Spark Thrift Server in HTTP mode, stopped when this is dropped (a panic too) or, if the test process
/// dies, by the suite's watchdog (`tests/interop/stop-peers-on-eof.sh`), which notices its pipe closing.
struct SparkHttp {
    addr: SocketAddr,
    watchdog: Child,
}

impl Drop for SparkHttp {
    fn drop(&mut self) {
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

fn start_spark_http() -> SparkHttp {
    use std::os::unix::process::CommandExt;
    let root = std::env::temp_dir().join(format!("hs2-interop-spark-http-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("temp dir");
    let watchdog = Command::new(repo().join("tests/interop/stop-peers-on-eof.sh"))
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("watchdog starts");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let spark = SparkHttp { addr: SocketAddr::from(([127, 0, 0, 1], port)), watchdog };
    let out = Command::new(repo().join("scripts/spark-thrift-server.sh"))
        .args(["start", "--port", &port.to_string(), "--mode", "http", "--dir"])
        .arg(root.join("http-0"))
        .env("SPARK_TS_TIMEOUT", "150")
        .output()
        .expect("scripts/spark-thrift-server.sh runs");
    assert!(
        out.status.success(),
        "Spark Thrift Server (http) did not start; run scripts/setup-spark.sh (scripts/test.sh does):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    spark
}

/// Accepting TCP is not yet serving: retry OpenSession over HTTP until it works.
async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let attempt = async {
            let via = Via { http: Some("/cliservice"), tls: None, creds: creds("probe", "probe-pw") };
            let mut c = client_via(&addr.to_string(), via).await?;
            let s = c.open_session(Some("probe"), &[]).await.map_err(|e| e.to_string())?;
            c.close_session(&s).await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("Spark (http) on {addr} never answered OpenSession: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// hs2-proxy with the Spark server as an HTTP backend; clients authenticate (Spark's HTTP mode needs Basic).
async fn proxy_for(spark: &SparkHttp) -> ProxyHandle {
    let mut c = common::base_config();
    c.backend_auth.transport = BackendTransport::Sasl;
    let upstream = UpstreamConfig { transport: UpstreamTransport::Http, ..UpstreamConfig::default() };
    c.backends =
        vec![BackendConfig { kind: Some(BackendKind::Hive), upstream, ..BackendConfig::new(&spark.addr.to_string()) }];
    server::start(c).await.expect("proxy starts")
}

async fn range_1000(c: &mut Hs2Client) {
    let s = c.open_session(Some("alice"), &[]).await.expect("OpenSession");
    let op = c.execute(&s, "SELECT id FROM range(1000)").await.expect("ExecuteStatement");
    c.wait_finished(&op).await.expect("the statement finishes");
    assert_eq!(c.fetch_all_i64(&op).await.expect("fetch"), (0..1000).collect::<Vec<i64>>());
    c.close_operation(&op).await.expect("CloseOperation");
    c.close_session(&s).await.expect("CloseSession");
}

async fn impyla_spark_http(port: u16, db: &str) -> String {
    let mut cmd = Command::new(repo().join(".venv/bin/python"));
    cmd.arg(repo().join("tests/interop/impyla_spark_http.py"));
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--auth", "PLAIN", "--db", db]);
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output()).await.expect("join");
    let out = out.expect("impyla runs (scripts/setup-python.sh)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains(" passed, 0 failed"), "impyla over HTTP on port {port}:\n{text}");
    text
}

fn assert_loopback(addr: SocketAddr) {
    assert!(addr.ip().is_loopback(), "tests stay on loopback: {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server in HTTP mode, impyla): run by scripts/test.sh"]
async fn spark_thrift_server_in_http_mode_behind_the_proxy() {
    let spark = tokio::task::spawn_blocking(start_spark_http).await.expect("start thread");
    assert_loopback(spark.addr);
    wait_ready(spark.addr).await;
    let proxy = proxy_for(&spark).await;

    // Binary SASL client -> proxy -> HTTP backend.
    let mut c =
        Hs2Client::connect(proxy.local_addr, &ClientAuth::Plain { user: "alice".into(), password: "pw".into() })
            .await
            .expect("SASL through the proxy");
    c.set_timeout(Some(Duration::from_secs(60)));
    range_1000(&mut c).await;

    // HTTP client -> proxy -> HTTP backend.
    let via = Via { http: Some("/cliservice"), tls: None, creds: creds("alice", "pw") };
    let mut h = client_via(&proxy.local_addr.to_string(), via).await.expect("HTTP through the proxy");
    range_1000(&mut h).await;

    // impyla over HTTP: directly (the baseline), then through the proxy.
    let direct = impyla_spark_http(spark.addr.port(), "impyla_http_direct").await;
    println!("{direct}");
    let proxied = impyla_spark_http(proxy.local_addr.port(), "impyla_http_proxied").await;
    println!("{proxied}");
    proxy.shutdown();
    drop(spark);
}
