//! The real peers of the Spark interop suite: Spark Thrift Servers started once per test binary, HAProxy
//! started per test, and the helpers that run the Python and Java clients.
//!
//! Servers: 2 in SASL PLAIN mode and 2 in NOSASL mode (two per mode is the least that shows routing; four
//! JVMs of ~400 MiB start in parallel in ~10 s on 2 cores). Each has its own directory under one temp root,
//! and a free loopback port. They are stopped when the test process exits, however it exits: a watchdog
//! (`tests/interop/stop-peers-on-eof.sh`, in its own process group) reads a pipe only this process writes to
//! and stops everything under the root when the pipe closes; an `atexit` handler closes the pipe and waits
//! for the watchdog, so no JVM outlives `cargo test`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hs2_proxy::hs2client::{ClientAuth, Hs2Client};

/// Servers per mode.
pub const SERVERS_PER_MODE: usize = 2;
/// A started server must answer OpenSession within this.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `hive.server2.authentication=NONE`: SASL PLAIN with any user and password.
    Sasl,
    /// Unframed binary protocol.
    NoSasl,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sasl => "sasl",
            Mode::NoSasl => "nosasl",
        }
    }

    /// How a client of this mode authenticates (`user` only matters for SASL).
    pub fn auth(self, user: &str) -> ClientAuth {
        match self {
            Mode::Sasl => ClientAuth::Plain { user: user.into(), password: format!("{user}-pw") },
            Mode::NoSasl => ClientAuth::NoSasl,
        }
    }
}

pub struct Server {
    pub mode: Mode,
    pub addr: SocketAddr,
    pub pid: u32,
    pub dir: PathBuf,
    /// From `start` until OpenSession answered.
    pub ready_after: Duration,
}

pub struct Peers {
    pub root: PathBuf,
    pub servers: Vec<Server>,
    /// Wall time to start every server, in parallel.
    pub startup: Duration,
}

impl Peers {
    pub fn of(&self, mode: Mode) -> Vec<&Server> {
        self.servers.iter().filter(|s| s.mode == mode).collect()
    }
}

static PEERS: OnceLock<Result<Peers, String>> = OnceLock::new();
/// The watchdog; taken by the `atexit` handler.
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);
/// When the suite first asked for its peers: the suite's wall time is measured from here.
pub static SUITE_START: OnceLock<Instant> = OnceLock::new();

/// The shared servers, started by the first test that asks. A failed start fails every test with its reason.
pub async fn peers() -> &'static Peers {
    SUITE_START.get_or_init(Instant::now);
    let peers = tokio::task::spawn_blocking(|| PEERS.get_or_init(start_peers)).await.expect("peer start-up thread");
    match peers {
        Ok(p) => p,
        Err(e) => panic!("Spark Thrift Servers are missing: {e}"),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(rel: &str) -> PathBuf {
    repo().join(rel)
}

fn start_peers() -> Result<Peers, String> {
    let t0 = Instant::now();
    let root = std::env::temp_dir().join(format!("hs2-interop-spark-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    start_watchdog(&root)?;
    // `HS2_INTEROP_NOSASL_ONLY` (set by a test that runs itself again elsewhere, see upgrade.rs): only the
    // NOSASL servers, to spare memory.
    let modes: &[Mode] = if std::env::var_os("HS2_INTEROP_NOSASL_ONLY").is_some() {
        &[Mode::NoSasl]
    } else {
        &[Mode::Sasl, Mode::NoSasl]
    };
    let plan: Vec<(Mode, PathBuf)> = modes
        .iter()
        .flat_map(|m| (0..SERVERS_PER_MODE).map(move |i| (*m, i)))
        .map(|(m, i)| (m, root.join(format!("{}-{i}", m.name()))))
        .collect();
    // Parallel: each start is mostly JVM class loading, which the two cores share.
    let started: Vec<Result<Server, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = plan.iter().map(|(m, dir)| s.spawn(move || start_server(*m, dir))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("start thread panicked".into()))).collect()
    });
    let servers = started.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Peers { root, servers, startup: t0.elapsed() })
}

fn start_watchdog(root: &Path) -> Result<(), String> {
    let child = Command::new(script("tests/interop/stop-peers-on-eof.sh"))
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0) // Ctrl-C on the terminal must not stop it before it has stopped the servers
        .spawn()
        .map_err(|e| format!("cannot start tests/interop/stop-peers-on-eof.sh: {e}"))?;
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
    }
    // SAFETY: registers a plain `extern "C" fn` with libc, which calls it once when the process exits.
    if unsafe { atexit(stop_peers_at_exit) } != 0 {
        return Err("atexit() refused the clean-up handler".into());
    }
    Ok(())
}

/// Closes the watchdog's pipe and waits until it has stopped every peer.
extern "C" fn stop_peers_at_exit() {
    let child = WATCHDOG.lock().ok().and_then(|mut w| w.take());
    if let Some(mut child) = child {
        drop(child.stdin.take());
        let _ = child.wait();
    }
}

fn start_server(mode: Mode, dir: &Path) -> Result<Server, String> {
    let t0 = Instant::now();
    let port = free_port();
    let out = Command::new(script("scripts/spark-thrift-server.sh"))
        .args(["start", "--port", &port.to_string(), "--mode", mode.name(), "--dir"])
        .arg(dir)
        .env("SPARK_TS_TIMEOUT", "150")
        .output()
        .map_err(|e| format!("cannot run scripts/spark-thrift-server.sh: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} server did not start (run scripts/setup-spark.sh first; scripts/test.sh does):\n{}{}",
            mode.name(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let pid = text.trim().parse().map_err(|_| format!("spark-thrift-server.sh printed no pid: {text:?}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(mode, addr).map_err(|e| format!("{} server on {addr} never answered OpenSession: {e}", mode.name()))?;
    Ok(Server { mode, addr, pid, dir: dir.to_path_buf(), ready_after: t0.elapsed() })
}

/// Accepting TCP is not yet serving: retry OpenSession until it works.
fn wait_ready(mode: Mode, addr: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let attempt = async {
                let mut c = Hs2Client::connect(addr, &mode.auth("probe")).await?;
                c.set_timeout(Some(Duration::from_secs(20)));
                let s = c.open_session(Some("probe"), &[]).await?;
                c.close_session(&s).await
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// RSS and peak RSS of a process, in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse::<u64>().ok();
    Some((kib("VmRSS:")? / 1024, kib("VmHWM:")? / 1024))
}

/// HAProxy `mode tcp`, `balance leastconn`, in the foreground; killed on drop.
pub struct HaProxy {
    pub frontends: Vec<(Mode, SocketAddr)>,
    pub pid: u32,
    child: Child,
}

impl HaProxy {
    pub fn start(peers: &Peers) -> HaProxy {
        let bin = which("haproxy")
            .unwrap_or_else(|| panic!("haproxy is missing: run scripts/setup-haproxy.sh (scripts/test.sh does)"));
        let mut cfg = String::from(
            "global\n  maxconn 200\n\ndefaults\n  mode tcp\n  balance leastconn\n  timeout connect 5s\n  \
             timeout client 120s\n  timeout server 120s\n",
        );
        let mut frontends = Vec::new();
        for mode in [Mode::Sasl, Mode::NoSasl] {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            cfg += &format!("\nlisten hs2_{}\n  bind {listen}\n", mode.name());
            for (i, s) in peers.of(mode).iter().enumerate() {
                cfg += &format!("  server {}-{i} {}\n", mode.name(), s.addr);
            }
            frontends.push((mode, listen));
        }
        let path = peers.root.join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let check = Command::new(&bin).args(["-c", "-q", "-f"]).arg(&path).output().expect("haproxy -c runs");
        assert!(check.status.success(), "haproxy rejects its config: {}", String::from_utf8_lossy(&check.stderr));
        let child = Command::new(&bin)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let pid = child.id();
        // The watchdog kills it by this file should the test process die before the drop.
        std::fs::write(peers.root.join("haproxy.pid"), pid.to_string()).expect("write haproxy.pid");
        let h = HaProxy { frontends, pid, child };
        for (_, addr) in &h.frontends {
            wait_listening(*addr, Duration::from_secs(10));
        }
        h
    }

    pub fn addr(&self, mode: Mode) -> SocketAddr {
        self.frontends.iter().find(|(m, _)| *m == mode).expect("frontend").1
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A command's outcome: status, stdout, stderr, wall time.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs a command off the async runtime.
pub async fn run(mut cmd: Command) -> Ran {
    let shown = format!("{cmd:?}");
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{shown} did not start: {e}"));
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// The peers' Python (impyla): fails loudly when setup-python.sh has not run.
pub fn python() -> Command {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    Command::new(p)
}

/// Beeline (Hive JDBC 2.3) from the pyspark wheel; `url_tail` follows `jdbc:hive2://ADDR/default`.
pub fn beeline(addr: SocketAddr, mode: Mode, user: &str) -> Command {
    let mut cmd = Command::new(script("scripts/beeline.sh"));
    match mode {
        Mode::Sasl => cmd.args(["-u", &format!("jdbc:hive2://{addr}/default"), "-n", user, "-p", "pw"]),
        Mode::NoSasl => cmd.args(["-u", &format!("jdbc:hive2://{addr}/default;auth=noSasl"), "-n", user]),
    };
    cmd
}

/// Lines for the end-of-run report (printed by the last test, outside libtest's capture).
static REPORT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints `line` (captured, shown with --nocapture) and keeps it for the final report.
pub fn note(line: String) {
    println!("{line}");
    REPORT.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Writes the collected report to stderr directly, so that it shows in CI logs without --nocapture.
pub fn print_report(extra: &[String]) {
    let lines = REPORT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n==== interop_spark report ====");
    for l in lines.iter().chain(extra) {
        let _ = writeln!(err, "  {l}");
    }
    let _ = writeln!(err, "==============================");
}
