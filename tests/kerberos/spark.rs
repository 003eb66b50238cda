//! Our client side against a real Kerberized HiveServer2 (Spark Thrift Server): the proxy's principal
//! (`hs2proxy`, from its keytab) authenticates with `sasl::client_handshake_gssapi` and delegates with
//! `hive.server2.proxy.user`, authorised by `hadoop.proxyuser.hs2proxy.*`.
//!
//! One server per test binary, started by the first test that needs it (~15-25 s) and stopped when the
//! process exits: `tests/interop/stop-peers-on-eof.sh` watches a pipe only this process writes to, and an
//! `atexit` handler closes it and waits, so no JVM outlives `cargo test`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hs2_proxy::hs2client::ClientError;
use hs2_proxy::kerberos::testkdc;
use hs2_proxy::kerberos::Credential;

use super::{connect_gssapi, proxy_initiator, query_string, user_initiator};

const HIVE: &str = "hive/localhost@EXAMPLE.TEST";
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Spark {
    pub addr: SocketAddr,
    pub ready_after: Duration,
}

static SPARK: OnceLock<Result<Spark, String>> = OnceLock::new();
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Kerberized Spark Thrift Server, started once.
pub async fn spark() -> &'static Spark {
    testkdc::shared();
    let started = tokio::task::spawn_blocking(|| SPARK.get_or_init(start)).await.expect("start thread");
    match started {
        Ok(s) => s,
        Err(e) => panic!("the Kerberized Spark Thrift Server did not start: {e}"),
    }
}

fn start() -> Result<Spark, String> {
    let t0 = Instant::now();
    let kdc = testkdc::shared();
    let root = std::env::temp_dir().join(format!("hs2-kerberos-spark-{}", std::process::id()));
    let dir = root.join("kerberos-0");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    start_watchdog(&root)?;
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut cmd = Command::new(repo().join("scripts/spark-thrift-server.sh"));
    cmd.args(["start", "--port", &port.to_string(), "--mode", "kerberos", "--dir"]).arg(&dir);
    cmd.arg("--keytab").arg(kdc.keytab("hive/localhost")).args(["--principal", HIVE]);
    cmd.arg("--krb5-conf").arg(kdc.krb5_conf()).args(["--proxyuser", "hs2proxy"]);
    cmd.envs(kdc.env()).env("SPARK_TS_TIMEOUT", "150");
    let out = cmd.output().map_err(|e| format!("cannot run scripts/spark-thrift-server.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "(run scripts/setup-spark.sh first; scripts/test.sh does)\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(addr).map_err(|e| {
        format!("{addr} never answered OpenSession over Kerberos: {e} (log {})", dir.join("server.log").display())
    })?;
    Ok(Spark { addr, ready_after: t0.elapsed() })
}

/// Accepting TCP is not yet serving: retry a Kerberos OpenSession until it works.
fn wait_ready(addr: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let initiator = proxy_initiator();
    rt.block_on(async {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let attempt = async {
                let mut c = connect_gssapi(addr, &initiator, HIVE).await.map_err(|e| e.to_string())?;
                let s = c.open_session(None, &[]).await.map_err(|e| e.to_string())?;
                c.close_session(&s).await.map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    })
}

fn start_watchdog(root: &std::path::Path) -> Result<(), String> {
    let child = Command::new(repo().join("tests/interop/stop-peers-on-eof.sh"))
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tests/interop/stop-peers-on-eof.sh: {e}"))?;
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }
    // SAFETY: registers a plain `extern "C" fn`, called once at process exit.
    if unsafe { atexit(stop_at_exit) } != 0 {
        return Err("atexit() refused the clean-up handler".into());
    }
    Ok(())
}

extern "C" fn stop_at_exit() {
    let child = WATCHDOG.lock().ok().and_then(|mut w| w.take());
    if let Some(mut child) = child {
        drop(child.stdin.take());
        let _ = child.wait();
    }
}

async fn session_user(initiator: &Credential, conf: &[(&str, &str)]) -> Result<String, ClientError> {
    let spark = spark().await;
    let mut c = connect_gssapi(spark.addr, initiator, HIVE).await.expect("Kerberos handshake with Spark");
    let session = c.open_session(Some("ignored-with-kerberos"), conf).await?;
    let user = query_string(&mut c, &session, "select current_user()").await;
    c.close_session(&session).await?;
    Ok(user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos and pyspark (scripts/setup-kerberos.sh, setup-spark.sh); run by scripts/test.sh"]
async fn the_proxy_authenticates_to_spark_and_delegates() {
    let t0 = Instant::now();
    let proxy = proxy_initiator();
    let delegated = session_user(&proxy, &[("hive.server2.proxy.user", "alice")]).await.unwrap();
    assert_eq!(delegated, "alice", "hive.server2.proxy.user makes the session alice's");
    assert_eq!(session_user(&proxy, &[]).await.unwrap(), "hs2proxy", "without delegation: the proxy's short name");
    // Spark ignores Impala's key: no delegation, and no error either.
    assert_eq!(session_user(&proxy, &[("impala.doas.user", "alice")]).await.unwrap(), "hs2proxy");
    // A user without a proxyuser rule cannot delegate.
    let refused = session_user(&user_initiator("bob"), &[("hive.server2.proxy.user", "alice")]).await;
    match refused {
        Err(ClientError::Status { message, .. }) => {
            assert!(message.contains("Failed to validate proxy privilege of bob for alice"), "{message}")
        }
        other => panic!("bob delegating to alice: expected Spark's refusal, got {other:?}"),
    }
    println!(
        "Kerberized Spark Thrift Server ready after {:.1}s; delegation checks took {:.1}s",
        spark().await.ready_after.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
