//! LDAP for real: a private OpenLDAP directory (`ldap/slapd.rs`), a Spark Thrift Server that checks every
//! SASL PLAIN login against it (`hive.server2.authentication=LDAP`), and hs2-proxy in front with
//! `backend_auth.transport = "sasl"`: the proxy checks a client's password by authenticating upstream with
//! it, so the directory behind the backend decides. A wrong password is refused there and the client sees
//! the reason in its SASL failure (our client, impyla, beeline; HTTP Basic gets a 401); the right one runs
//! the user's calls on the proxy's pooled connections.
//!
//! `#[ignore]`d: `scripts/test.sh` installs slapd (scripts/setup-ldap.sh) and pyspark, and runs these with
//! `--ignored`. One directory and one Spark Thrift Server per test binary, started by the first test that
//! needs them and stopped when the process exits (`tests/interop/stop-peers-on-eof.sh` watches a pipe only
//! this process writes to; slapd has a watchdog of its own).

mod common;
#[path = "ldap/proxy.rs"]
mod proxy;
#[path = "ldap/slapd.rs"]
mod slapd;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use slapd::{Slapd, PEOPLE};

/// The directory's people (test passwords of a throw-away directory). `svc` is the service account
/// that may run sessions as anyone (`hadoop.proxyuser.svc.*`).
pub const USERS: &[(&str, &str)] = &[("alice", "alice-pw"), ("bob", "bob-pw"), ("svc", "svc-pw")];
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Peers {
    pub slapd: Slapd,
    pub spark: SocketAddr,
    pub ready_after: Duration,
}

static PEERS: OnceLock<Result<Peers, String>> = OnceLock::new();
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn password(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).expect("a directory user")
}

/// The directory and the LDAP-checking Spark Thrift Server, started once.
pub async fn peers() -> &'static Peers {
    let started = tokio::task::spawn_blocking(|| PEERS.get_or_init(start)).await.expect("start thread");
    match started {
        Ok(p) => p,
        Err(e) => panic!("the LDAP peers did not start: {e}"),
    }
}

fn start() -> Result<Peers, String> {
    let t0 = Instant::now();
    let slapd = Slapd::start(USERS);
    let root = std::env::temp_dir().join(format!("hs2-ldap-spark-{}", std::process::id()));
    let dir = root.join("ldap-0");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    start_watchdog(&root)?;
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut cmd = Command::new(repo().join("scripts/spark-thrift-server.sh"));
    cmd.args(["start", "--port", &port.to_string(), "--mode", "ldap", "--dir"]).arg(&dir);
    cmd.args(["--ldap-url", &slapd.url(), "--ldap-basedn", PEOPLE, "--proxyuser", "svc"]);
    let out = cmd.env("SPARK_TS_TIMEOUT", "150").output();
    let out = out.map_err(|e| format!("cannot run scripts/spark-thrift-server.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "(run scripts/setup-spark.sh first; scripts/test.sh does)\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let spark = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(spark)
        .map_err(|e| format!("{spark} never answered an LDAP login: {e} (log {})", dir.join("server.log").display()))?;
    Ok(Peers { slapd, spark, ready_after: t0.elapsed() })
}

/// Accepting TCP is not yet serving: retry alice's login and an OpenSession until they work.
fn wait_ready(addr: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let alice = ClientAuth::Plain { user: "alice".into(), password: password("alice").into() };
    rt.block_on(async {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let attempt = async {
                let mut c = Hs2Client::connect(addr, &alice).await.map_err(|e| e.to_string())?;
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

/// The directory alone: its own verdict on passwords, which everything below relies on.
#[test]
#[ignore = "needs slapd (scripts/setup-ldap.sh); run by scripts/test.sh"]
fn the_directory_decides_passwords() {
    let slapd = Slapd::start(&[("carol", "carol-pw")]);
    assert_eq!(slapd.bind("carol", "carol-pw").unwrap(), format!("dn:{}", Slapd::user_dn("carol")));
    let wrong = slapd.bind("carol", "nope").unwrap_err();
    assert!(wrong.contains("Invalid credentials (49)"), "{wrong}");
    let unknown = slapd.bind("mallory", "carol-pw").unwrap_err();
    assert!(unknown.contains("Invalid credentials (49)"), "{unknown}");
    let dir = slapd.dir().to_path_buf();
    drop(slapd);
    assert!(!dir.exists(), "dropping it stops slapd and removes {}", dir.display());
}
