//! Real impyla as soak load: a Python child process per client (the project's .venv, made by
//! scripts/setup-python.sh) running `tests/interop/impyla_soak.py`, a cursor (so a session) per round.
//! Its lines, `ok` and `fail <why>`, feed the `RealImpyla` figures as they arrive; closing its stdin
//! stops it after the round it is in.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::{Ctx, Kind};
use super::SoakError;

/// The client script, in this repository.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/impyla_soak.py");
/// How long a stopped client may take to finish its round.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: std::thread::JoinHandle<()>,
}

/// The running impyla clients.
pub struct Impyla {
    clients: Vec<Client>,
}

impl Impyla {
    /// Starts `n` clients of `python` against `proxy`; their stderr goes to `dir/impyla-<i>.log`.
    pub fn start(python: &Path, proxy: SocketAddr, n: usize, ctx: Arc<Ctx>, dir: &Path) -> Result<Impyla, SoakError> {
        let mut clients = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(dir.join(format!("impyla-{i}.log")))
                .map_err(|e| SoakError::Setup(e.to_string()))?;
            let mut child = Command::new(python)
                .arg(SCRIPT)
                .arg(proxy.ip().to_string())
                .arg(proxy.port().to_string())
                .arg(format!("pyimpyla{i}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .map_err(|e| SoakError::Setup(format!("starting {} {SCRIPT}: {e}", python.display())))?;
            let stdout = child.stdout.take().ok_or_else(|| SoakError::Setup("no stdout".into()))?;
            let stdin = child.stdin.take();
            let ctx = ctx.clone();
            // A thread, not a task: the pipe is blocking, and this keeps the runtime free of it.
            let reader = std::thread::spawn(move || {
                let stats = ctx.stats(Kind::RealImpyla);
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match line.strip_prefix("fail ") {
                        Some(why) => stats.failed(why.to_string()),
                        None if line == "ok" => {
                            stats.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        None => stats.failed(format!("unexpected output: {line}")),
                    }
                }
            });
            clients.push(Client { child, stdin, reader });
        }
        Ok(Impyla { clients })
    }

    /// Stops every client after its round; returns how many had to be killed.
    pub async fn stop(mut self) -> usize {
        for c in &mut self.clients {
            c.stdin.take();
        }
        let deadline = Instant::now() + EXIT_WITHIN;
        let mut killed = 0;
        for mut c in self.clients.drain(..) {
            while !matches!(c.child.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = c.child.kill();
                    let _ = c.child.wait();
                    killed += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = c.reader.join();
        }
        killed
    }
}

impl Drop for Impyla {
    fn drop(&mut self) {
        for c in &mut self.clients {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

/// The project's virtualenv interpreter under `repo`, if scripts/setup-python.sh made it.
pub fn venv_python(repo: &Path) -> PathBuf {
    repo.join(".venv/bin/python")
}
