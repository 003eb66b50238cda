//! The bad-input test bed: the real proxy binary as a child process (its descriptors are its own, so a
//! leak shows in /proc) in front of two mock impalads, with a bystander client whose session must keep
//! working while and after a bad client does its worst, and a baseline of the proxy's counts that must
//! come back once the bad client is gone.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hs2_proxy::admin::api::{BackendsJson, StatusJson};
use hs2_proxy::bench::procfs;
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
const CLI_DBMS_VER: TGetInfoType = TGetInfoType::CLI_DBMS_VER;
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockConfig, MockImpalad};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Deadlines the bed configures, short so that the tests are quick; each test that measures one says so.
pub const HANDSHAKE: Duration = Duration::from_millis(800);
pub const REQUEST_READ: Duration = Duration::from_millis(800);
/// A bad connection must be closed within this when the proxy refuses it "at once".
pub const AT_ONCE: Duration = Duration::from_millis(500);

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The proxy's own counts, read from /proc and its admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Descriptors minus upstream pool connections (the pool may legitimately grow by one).
    pub fds_beyond_pool: i64,
    pub client_connections: i64,
    pub busy_upstream: usize,
    pub buffered_bytes: u64,
}

pub struct Bed {
    pub mocks: Vec<MockImpalad>,
    child: Child,
    dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub http: SocketAddr,
    bystander: Hs2Client,
    session: HandleId,
    baseline: Counts,
}

impl Bed {
    /// Starts the proxy with `extra` TOML appended (sections other than `[timeouts]`, `[health]`,
    /// `[admin]`, `[http]`, which the bed writes) and the bed's deadlines.
    pub async fn start(extra: &str) -> Bed {
        Bed::start_with(extra, HANDSHAKE, REQUEST_READ).await
    }

    /// [`Bed::start`] with other `timeouts.handshake` and `timeouts.request_read`.
    pub async fn start_with(extra: &str, handshake: Duration, request_read: Duration) -> Bed {
        let mut mocks = Vec::new();
        for i in 0..2 {
            let cfg = MockConfig { name: format!("mock-{i}"), ..MockConfig::default() };
            mocks.push(MockImpalad::start("127.0.0.1:0", cfg).await.unwrap());
        }
        let (listen, admin, http) = (free_port(), free_port(), free_port());
        let backends: Vec<String> = mocks.iter().map(|m| format!("\"{}\"", m.local_addr())).collect();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen = \"{listen}\"\nbackends = [{}]\n{extra}\n\n[timeouts]\nhandshake = \"{}ms\"\n\
             request_read = \"{}ms\"\nrequest_total = \"{}ms\"\n\n[health]\ninterval = \"1h\"\n\n[admin]\nlisten = \"{admin}\"\n\
             header_read_timeout = \"800ms\"\n\n[http]\nlisten = \"{http}\"\n",
            backends.join(", "),
            handshake.as_millis(),
            request_read.as_millis(),
            // A whole request within four stall periods (the trickle test).
            request_read.as_millis() * 4,
        );
        let path = dir.path().join("hs2-proxy.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = spawn(&path, &dir.path().join("proxy.log"));
        wait_ready(&mut child, admin, &dir.path().join("proxy.log")).await;
        let mut bystander = Hs2Client::connect(listen, &ClientAuth::NoSasl).await.unwrap();
        bystander.set_timeout(Some(Duration::from_secs(10)));
        let session = bystander.open_session(Some("bystander"), &[]).await.unwrap();
        let unset = Counts { fds_beyond_pool: 0, client_connections: 0, busy_upstream: 0, buffered_bytes: 0 };
        let mut bed = Bed { mocks, child, dir, listen, admin, http, bystander, session, baseline: unset };
        bed.bystander_works().await;
        bed.baseline = bed.settled_counts().await;
        bed
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bystander's session still works: a call and a query with rows.
    pub async fn bystander_works(&mut self) {
        let c = &mut self.bystander;
        c.get_info(&self.session, CLI_DBMS_VER).await.expect("the bystander's GetInfo");
        let op = c.execute(&self.session, "select id from range(100)").await.expect("the bystander's query");
        assert_eq!(c.fetch_all_i64(&op).await.unwrap(), (0..100).collect::<Vec<_>>());
        c.close_operation(&op).await.unwrap();
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = hs2_proxy::cli_admin::http(&self.admin.to_string(), "GET", path, None).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn status(&self) -> StatusJson {
        self.get("/api/status").await
    }

    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = hs2_proxy::cli_admin::http(&self.admin.to_string(), "GET", "/metrics", None).await.unwrap();
        hs2_proxy::metrics::sample(&text, series)
    }

    pub async fn counts(&self) -> Counts {
        let backends: BackendsJson = self.get("/api/backends").await;
        let status = self.status().await;
        let buffered = self.metric("hs2_proxy_buffered_request_bytes").await.unwrap_or(0.0) as u64;
        let pool: usize = backends.backends.iter().map(|b| b.upstream.busy + b.upstream.idle).sum();
        // Read last, once the admin connection of the reads above has closed on the proxy's side.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let fds = procfs::fd_count(self.pid()).unwrap_or(0);
        Counts {
            fds_beyond_pool: fds as i64 - pool as i64,
            client_connections: status.client_connections,
            busy_upstream: backends.backends.iter().map(|b| b.upstream.busy).sum(),
            buffered_bytes: buffered,
        }
    }

    /// The counts once they stop moving (two equal reads in a row).
    async fn settled_counts(&self) -> Counts {
        let mut last = self.counts().await;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let now = self.counts().await;
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// Nothing leaked: descriptors (beyond the pool), client connections, busy upstream connections and
    /// buffered request bytes are back to the baseline, and the bystander still works.
    pub async fn back_to_baseline(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut now = self.counts().await;
        while now != self.baseline && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            now = self.counts().await;
        }
        assert_eq!(now, self.baseline, "the proxy's counts came back");
        self.bystander_works().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the proxy's log has a line containing every one of `parts`.
    pub async fn logged(&self, parts: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no log line with {parts:?} in:\n{}", self.log());
    }

    pub async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.listen).await.unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(child: &mut Child, admin: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _)) = hs2_proxy::cli_admin::http(&admin.to_string(), "GET", "/healthz", None).await {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the proxy exited at start ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the proxy did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .arg("--config")
        .arg(config)
        .env("HS2_PROXY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the proxy binary starts")
}

/// Reads until the proxy closes the connection; returns what came and how long the close took. Panics
/// when it stays open beyond `within`.
pub async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the proxy kept the connection open for {within:?} (got {} bytes)", got.len());
    (got, started.elapsed())
}
