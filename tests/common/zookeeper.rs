//! A private Apache ZooKeeper for tests: Debian's jars (scripts/setup-zookeeper.sh), its own zoo.cfg and
//! data dir in a temp dir, a free loopback port, killed on drop. It can be stopped and started again on
//! the same port and data (a ZooKeeper restart), or with its data wiped (a ZooKeeper that lost it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The classpath scripts/setup-zookeeper.sh installs and checks (keep the two in step).
const JARS: [&str; 3] =
    ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"];
/// ZooKeeper's tick: sessions may time out from 2 ticks (1 s) up; expiry is checked every tick.
const TICK_MS: u64 = 500;
/// A JVM start on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ZooKeeper {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl ZooKeeper {
    /// Starts one and waits until it serves requests. Panics (with its log) if it cannot.
    pub async fn start() -> ZooKeeper {
        let mut zk = ZooKeeper::unstarted();
        zk.restart().await;
        zk
    }

    /// Picks the port and writes the config, but runs nothing yet: "ZooKeeper is down".
    pub fn unstarted() -> ZooKeeper {
        for jar in JARS {
            assert!(Path::new(jar).exists(), "{jar} missing: run scripts/setup-zookeeper.sh");
        }
        let dir = tempfile::Builder::new().prefix("hs2-proxy-zk-").tempdir().expect("temp dir");
        // A free port: bound and released at once (ZooKeeper binds with SO_REUSEADDR, so restarts on it work).
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let cfg = format!(
            "tickTime={TICK_MS}\ndataDir={data}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=srvr,ruok,cons,stat\nmaxClientCnxns=0\n\
             minSessionTimeout={min}\nmaxSessionTimeout=60000\nforceSync=no\n",
            data = dir.path().join("data").display(),
            min = 2 * TICK_MS,
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg).expect("zoo.cfg");
        let log4j = format!(
            "log4j.rootLogger=INFO, F\nlog4j.appender.F=org.apache.log4j.FileAppender\n\
             log4j.appender.F.File={}\nlog4j.appender.F.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.F.layout.ConversionPattern=%d{{ISO8601}} %-5p %c{{1}}: %m%n\n",
            dir.path().join("zookeeper.log").display()
        );
        std::fs::write(dir.path().join("log4j.properties"), log4j).expect("log4j.properties");
        ZooKeeper { dir, port, child: None }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The connect string, `127.0.0.1:PORT`.
    pub fn connect_string(&self) -> String {
        self.addr().to_string()
    }

    /// Kills it (SIGKILL: a crash; the data written so far stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and data dir and waits until it serves requests.
    pub async fn restart(&mut self) {
        self.stop();
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stdout.txt")).expect("stdout");
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"])
            .arg(format!("-Dlog4j.configuration=file:{}", dir.join("log4j.properties").display()))
            .arg("-Dzookeeper.jmx.log4j.disable=true")
            .arg("-cp")
            .arg(JARS.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("stdout"))
            .stderr(out)
            .spawn()
            .expect("java runs (install a JRE: scripts/setup-zookeeper.sh)");
        self.child = Some(child);
        self.wait_serving().await;
    }

    /// Stops it, deletes its data (sessions and znodes) and starts it again.
    pub async fn wipe_and_restart(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path().join("data")).expect("wipe data");
        self.restart().await;
    }

    /// Polls `srvr` until it says the server serves (it answers `ruok` before it does). Bounded.
    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.four_letter("srvr").await.is_some_and(|r| r.contains("Mode: standalone")) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ZooKeeper exited with {status} before serving:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not serve within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A four-letter-word command (`srvr`, `ruok`, `cons`), or `None` when it does not answer.
    pub async fn four_letter(&self, cmd: &str) -> Option<String> {
        let talk = async {
            let mut s = tokio::net::TcpStream::connect(self.addr()).await.ok()?;
            s.write_all(cmd.as_bytes()).await.ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out)
        };
        tokio::time::timeout(Duration::from_secs(2), talk).await.ok().flatten()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.log")
    }

    /// The last lines of its log and stdout, for failure messages.
    pub fn log_tail(&self) -> String {
        let tail = |p: PathBuf| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!("--- {}\n{}", p.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
        };
        format!("{}\n{}", tail(self.log_path()), tail(self.dir.path().join("stdout.txt")))
    }

    /// A client of our own, to look at what the registrar wrote.
    pub async fn client(&self) -> zookeeper_client::Client {
        zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&self.connect_string())
            .await
            .unwrap_or_else(|e| panic!("connect to ZooKeeper {}: {e}\n{}", self.addr(), self.log_tail()))
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}
