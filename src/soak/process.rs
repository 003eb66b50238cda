//! The proxy under test as a child process: the real binary, with a configuration file the soak writes,
//! so that it can be reloaded (SIGHUP), stopped (SIGTERM) and started again on the same ports.
//!
//! Its log (JSON lines) goes to a file per start; the soak reads it back for what the proxy said it left
//! to the servers, and for panics.

use std::collections::HashSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SoakError;
use crate::hs2::handle::Guid;

/// How long a start may take until `/healthz` answers, and a stop until the process is gone.
const READY_WITHIN: Duration = Duration::from_secs(30);
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// What the reaper logs when it cannot close a session upstream (`control::reaper`).
const LEFT_TO_SERVER: [&str; 2] =
    ["no idle upstream connection to close the session on", "left to impalad's own timeouts"];

/// A free loopback port, found now (the proxy binds it; restarts reuse it).
pub fn free_port() -> Result<SocketAddr, SoakError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| SoakError::Setup(format!("finding a free port: {e}")))?;
    l.local_addr().map_err(|e| SoakError::Setup(e.to_string()))
}

/// The proxy's settings in the soak: short clean-up and health intervals, so that a short run sees many
/// rounds of each; everything else is the default.
pub struct ProxySettings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub disconnected_grace: &'static str,
    pub client_write: &'static str,
    /// Each backend's `metrics_url` (the mock's web port): clean-up closes a session on its word only.
    pub metrics_urls: std::collections::HashMap<SocketAddr, String>,
}

pub struct ProxyProcess {
    bin: PathBuf,
    dir: PathBuf,
    settings: ProxySettings,
    child: Option<Child>,
    started_at: Instant,
    starts: u32,
}

impl ProxyProcess {
    pub fn new(bin: &Path, dir: &Path, settings: ProxySettings) -> ProxyProcess {
        ProxyProcess {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            settings,
            child: None,
            started_at: Instant::now(),
            starts: 0,
        }
    }

    pub fn listen(&self) -> SocketAddr {
        self.settings.listen
    }

    pub fn admin(&self) -> SocketAddr {
        self.settings.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// When the running instance was started.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("hs2-proxy.toml")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("proxy-{start}.log"))
    }

    /// Writes the configuration with these backends (read at start and on SIGHUP).
    pub fn write_config(&self, backends: &[SocketAddr]) -> Result<(), SoakError> {
        let s = &self.settings;
        // As an operator configures impalads: each with its web port, whose word clean-up needs.
        let tables: String = backends
            .iter()
            .map(|b| match s.metrics_urls.get(b) {
                Some(url) => format!("\n[[backends]]\naddr = \"{b}\"\nmetrics_url = \"{url}\"\n"),
                None => format!("\n[[backends]]\naddr = \"{b}\"\n"),
            })
            .collect();
        let text = format!(
            r#"# Written by the soak (hs2_proxy::soak).
listen = "{listen}"

[backend_auth]
transport = "sasl"

[limits]
max_client_connections = 2000

[pool]
max_per_backend = 32
idle_timeout = "20s"
wait_timeout = "5s"

[sessions]
disconnected_grace = "{grace}"
reap_interval = "1s"

[timeouts]
client_write = "{client_write}"
request_read = "10s"
recovery = "2s"
shutdown_grace = "5s"

[health]
interval = "500ms"
timeout = "1s"
rise = 2
fall = 2

[admin]
listen = "{admin}"
"#,
            listen = s.listen,
            grace = s.disconnected_grace,
            client_write = s.client_write,
            admin = s.admin,
        ) + &tables;
        std::fs::write(self.config_path(), text).map_err(|e| SoakError::Setup(format!("writing the config: {e}")))
    }

    /// Starts the binary and waits until its admin listener answers.
    pub async fn start(&mut self) -> Result<(), SoakError> {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).map_err(|e| SoakError::Setup(e.to_string()))?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .arg("--log-format")
            .arg("json")
            .env("HS2_PROXY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| SoakError::Setup(format!("starting {}: {e}", self.bin.display())))?;
        self.started_at = Instant::now();
        self.child = Some(child);
        let admin = self.admin().to_string();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok((200, _)) = crate::cli_admin::http(&admin, "GET", "/healthz", None).await {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(SoakError::Setup(format!("the proxy exited at start: {status}")));
            }
            if Instant::now() > deadline {
                return Err(SoakError::Setup(format!("the proxy did not answer on {admin} within {READY_WITHIN:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`HUP`, `TERM`) to the running instance.
    pub fn signal(&self, signal: &str) -> Result<(), SoakError> {
        let pid = self.pid().ok_or_else(|| SoakError::Setup("the proxy is not running".into()))?;
        // The shell's own `kill` builtin: no extra dependency, present wherever /bin/sh is.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {pid}"))
            .status()
            .map_err(|e| SoakError::Setup(format!("kill -{signal}: {e}")))?;
        if !status.success() {
            return Err(SoakError::Setup(format!("kill -{signal} {pid}: {status}")));
        }
        Ok(())
    }

    /// SIGTERM, then waits (bounded) for the graceful exit; returns its status text.
    pub async fn stop(&mut self) -> Result<String, SoakError> {
        if self.child.is_none() {
            return Ok("not running".into());
        }
        self.signal("TERM")?;
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            let Some(child) = self.child.as_mut() else { return Ok("not running".into()) };
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Ok(status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(SoakError::Failed(format!("the proxy did not exit within {EXIT_WITHIN:?} of SIGTERM")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Session ids the proxy said it left to the servers to expire, over every start; and every log
    /// line that reports a panic.
    pub fn read_logs(&self) -> (HashSet<Guid>, Vec<String>) {
        let mut left = HashSet::new();
        let mut panics = Vec::new();
        for start in 1..=self.starts {
            let Ok(text) = std::fs::read_to_string(self.log_path(start)) else { continue };
            for line in text.lines() {
                if line.contains("panicked") {
                    panics.push(line.chars().take(400).collect());
                }
                if !LEFT_TO_SERVER.iter().any(|m| line.contains(m)) {
                    continue;
                }
                let id = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.pointer("/fields/session").and_then(|s| s.as_str()).map(str::to_string));
                if let Some(g) = id.as_deref().and_then(Guid::parse_impala_id) {
                    left.insert(g);
                }
            }
        }
        (left, panics)
    }

    /// Where the logs and the configuration are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // A soak that failed midway must not leave its proxy running.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
