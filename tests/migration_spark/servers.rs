//! Three Spark Thrift Servers (SASL PLAIN, `hive.server2.authentication=NONE`) that the migration tests
//! stop, restart and kill: started once per test binary, in parallel, each with its own directory and a
//! free loopback port. A restart keeps both, and the server's derby metastore with them, so databases
//! survive it. Each server has its own metastore: a database exists only on the servers it was created on.
//!
//! Everything under one temp root is stopped when the test process exits, however it exits, by the
//! watchdog of the Spark interop suite (`tests/interop/stop-peers-on-eof.sh`), which reads a pipe only this
//! process writes to.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use tokio::sync::OnceCell;

/// Servers behind the proxy: the least that shows sessions spreading and moving while one restarts.
pub const SERVERS: usize = 3;
/// A started server must answer OpenSession within this.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub fn auth(user: &str) -> ClientAuth {
    ClientAuth::Plain { user: user.into(), password: format!("{user}-pw") }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Server {
    pub index: usize,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pid: Mutex<Option<u32>>,
}

pub struct Servers {
    pub root: PathBuf,
    pub servers: Vec<Server>,
    /// Wall time of the first start (all servers in parallel), and of every restart since.
    pub startup: Duration,
    restarts: Mutex<Vec<Duration>>,
}

static SERVERS_CELL: OnceCell<Servers> = OnceCell::const_new();
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

/// The shared servers, all running: started by the first test that asks; a server an earlier test left
/// stopped or killed is started again first.
pub async fn servers() -> &'static Servers {
    let s = SERVERS_CELL.get_or_init(start_all).await;
    for server in &s.servers {
        if !server.is_running() {
            s.restart(server).await;
        }
    }
    s
}

/// The servers if some test started them (for the report: it must not start or restart any).
pub fn started() -> Option<&'static Servers> {
    SERVERS_CELL.get()
}

async fn start_all() -> Servers {
    let t0 = Instant::now();
    let root = std::env::temp_dir().join(format!("hs2-migration-spark-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    start_watchdog(&root);
    let servers: Vec<Server> = (0..SERVERS)
        .map(|index| Server {
            index,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: root.join(format!("spark-{index}")),
            pid: Mutex::new(None),
        })
        .collect();
    // In parallel: each start is mostly JVM class loading, which the two cores share.
    let launches: Vec<_> = servers.iter().map(|s| tokio::spawn(launch(s.addr, s.dir.clone()))).collect();
    for (server, launched) in servers.iter().zip(launches) {
        let pid = launched.await.unwrap_or_else(|e| panic!("starting {}: {e}", server.addr));
        *server.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
    }
    Servers { root, servers, startup: t0.elapsed(), restarts: Mutex::new(Vec::new()) }
}

impl Servers {
    /// Stops `server` cleanly (SIGTERM), starts it again on its port and waits until it serves.
    pub async fn restart(&self, server: &Server) -> Duration {
        let t0 = Instant::now();
        server.stop().await;
        server.start().await;
        let took = t0.elapsed();
        self.restarts.lock().unwrap_or_else(|e| e.into_inner()).push(took);
        took
    }

    pub fn restarts(&self) -> Vec<Duration> {
        self.restarts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn by_addr(&self, addr: &str) -> &Server {
        self.servers.iter().find(|s| s.addr.to_string() == addr).unwrap_or_else(|| panic!("no server {addr}"))
    }
}

impl Server {
    pub fn is_running(&self) -> bool {
        let pid = *self.pid.lock().unwrap_or_else(|e| e.into_inner());
        pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists())
    }

    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the server on its port (its directory and metastore as before) and waits until it serves.
    pub async fn start(&self) {
        let pid = launch(self.addr, self.dir.clone()).await;
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
    }

    /// A clean stop (SIGTERM): Spark closes its sessions and exits.
    pub async fn stop(&self) {
        let dir = self.dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(repo().join("scripts/spark-thrift-server.sh")).args(["stop", "--dir"]).arg(&dir).output()
        })
        .await
        .expect("join")
        .expect("scripts/spark-thrift-server.sh runs");
        assert!(out.status.success(), "stop {}: {}", self.addr, String::from_utf8_lossy(&out.stderr));
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `kill -9`: the JVM dies at once, every connection reset. Returns when the kernel has closed its
    /// sockets: its port refuses connections (a killed JVM's leader thread turns zombie before its other
    /// threads have exited and the sockets they share are closed).
    pub async fn kill9(&self) {
        let pid = self.pid().expect("the server runs");
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
        assert!(killed.success(), "kill -9 {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::net::TcpStream::connect(self.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => assert!(Instant::now() < deadline, "{} still accepts 10 s after kill -9 {pid}", self.addr),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Starts a server on `addr`'s port with its files under `dir`; returns its pid once it serves.
async fn launch(addr: SocketAddr, dir: PathBuf) -> u32 {
    let port = addr.port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(repo().join("scripts/spark-thrift-server.sh"))
            .args(["start", "--port", &port.to_string(), "--mode", "sasl", "--dir"])
            .arg(&dir)
            .env("SPARK_TS_TIMEOUT", "150")
            .output()
    })
    .await
    .expect("join")
    .expect("scripts/spark-thrift-server.sh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Spark server {addr} did not start (run scripts/setup-spark.sh first; scripts/test.sh does):\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = text.trim().parse().unwrap_or_else(|_| panic!("spark-thrift-server.sh printed no pid: {text:?}"));
    wait_ready(addr).await;
    pid
}

/// Accepting TCP is not yet serving: retry OpenSession until it works.
async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let attempt = async {
            let mut c = Hs2Client::connect(addr, &auth("probe")).await?;
            c.set_timeout(Some(Duration::from_secs(20)));
            let s = c.open_session(Some("probe"), &[]).await?;
            c.close_session(&s).await
        };
        match attempt.await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("Spark server {addr} never answered OpenSession: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

fn start_watchdog(root: &Path) {
    let child = Command::new(repo().join("tests/interop/stop-peers-on-eof.sh"))
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0) // Ctrl-C on the terminal must not stop it before it has stopped the servers
        .spawn()
        .expect("tests/interop/stop-peers-on-eof.sh starts");
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }
    // SAFETY: registers a plain `extern "C" fn` with libc, which calls it once when the process exits.
    assert_eq!(unsafe { atexit(stop_at_exit) }, 0, "atexit() refused the clean-up handler");
}

/// Closes the watchdog's pipe and waits until it has stopped every peer.
extern "C" fn stop_at_exit() {
    let child = WATCHDOG.lock().ok().and_then(|mut w| w.take());
    if let Some(mut child) = child {
        drop(child.stdin.take());
        let _ = child.wait();
    }
}
