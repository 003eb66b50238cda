//! hs2-proxy as real processes for the upgrade drills: a config file, a start that waits until the
//! instance listens, `scripts/upgrade.sh`, and kill -9. Every process started here is stopped by its pid
//! when the test ends, however it ends.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The binary cargo built for this test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hs2-proxy"))
}

/// A loopback port free right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port")
}

/// A configuration: the listener (shared by every instance), admin on its own port, the backends.
pub fn write_config(dir: &Path, listen: SocketAddr, backends: &[String], transport: &str) -> PathBuf {
    let list = backends.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "listen = \"{listen}\"\nbackends = [{list}]\n[backend_auth]\ntransport = \"{transport}\"\n\
         [admin]\nlisten = \"{}\"\n[timeouts]\nshutdown_grace = \"20s\"\n",
        free_addr()
    );
    let path = dir.join("hs2-proxy.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Pids this test started; killed at the end.
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every process this test started (by pid) when dropped.
pub struct Reaper;

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in STARTED.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
    }
}

fn remember(pid: u32) {
    STARTED.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Starts an instance with `config`, its stderr in `log`; returns its pid once it listens.
pub fn start(config: &Path, log: &Path) -> u32 {
    let err = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("hs2-proxy starts");
    let pid = child.id();
    remember(pid);
    // Reaped as soon as it exits, so that scripts see it gone (not a zombie).
    std::thread::spawn(move || child.wait());
    wait_for_line(log, "hs2-proxy listening", Duration::from_secs(30));
    pid
}

pub fn wait_for_line(log: &Path, line: &str, timeout: Duration) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(line) {
        assert!(t0.elapsed() < timeout, "no '{line}' in {} after {timeout:?}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `scripts/upgrade.sh`: starts a new instance with `config` (stderr in `log`), then SIGTERMs `old` and
/// waits for it to exit. Returns the new pid and how long the script took.
pub fn upgrade(old: u32, config: &Path, log: &Path) -> (u32, Duration) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/upgrade.sh");
    let t0 = Instant::now();
    let out = Command::new(script)
        .args(["--old-pid", &old.to_string(), "--log"])
        .arg(log)
        .arg("--")
        .arg(binary())
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/upgrade.sh runs");
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/upgrade.sh failed ({}): {stderr}", out.status);
    let new: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the new pid");
    remember(new);
    (new, took)
}

/// kill -9 by pid.
pub fn kill_9(pid: u32) {
    let ok = Command::new("kill").args(["-KILL", &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -9 {pid}");
}

/// True while `pid` runs (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}
