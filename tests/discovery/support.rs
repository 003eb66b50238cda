//! Helpers of the discovery tests: configs, waiting on the registrar's state, reading ZooKeeper, and a
//! registrar in a child process (to kill it with SIGKILL).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hs2_proxy::config::DiscoveryConfig;
use hs2_proxy::discovery::{Advert, AdvertAuth, DiscoveryState, Registrar};

use crate::common::zookeeper::ZooKeeper;

/// The session timeout of most tests: the shortest our ZooKeeper allows is 1 s (2 ticks).
pub const SHORT: Duration = Duration::from_secs(2);
/// Bound of every wait: a JVM restart plus several session timeouts on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// Logs go to the test's captured output; `HS2_PROXY_LOG` sets the filter.
pub fn logs() {
    let filter = std::env::var("HS2_PROXY_LOG").unwrap_or_else(|_| "hs2_proxy=info,zookeeper_client=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

pub fn cfg(zk: &ZooKeeper, namespace: &str, session_timeout: Duration) -> DiscoveryConfig {
    DiscoveryConfig {
        zookeeper: zk.connect_string(),
        namespace: namespace.into(),
        advertise_host: "127.0.0.1".into(),
        advertise_port: None,
        session_timeout,
    }
}

/// An advert for a port nobody needs to reach (tests that only look at ZooKeeper).
pub fn advert(n: u16) -> Advert {
    Advert::binary("127.0.0.1", 40_000 + n, AdvertAuth::None)
}

/// Waits (bounded) until the registrar's state satisfies `pred`; panics with the state and ZooKeeper's log.
pub async fn until(
    reg: &Registrar,
    zk: &ZooKeeper,
    what: &str,
    mut pred: impl FnMut(&DiscoveryState) -> bool,
) -> DiscoveryState {
    let mut rx = reg.subscribe();
    let found = tokio::time::timeout(LIMIT, async { rx.wait_for(|s| pred(s)).await.map(|s| s.clone()) }).await;
    match found {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}: {:?}\n{}", reg.state(), zk.log_tail()),
    }
}

/// The children of `/<namespace>`, sorted (none when it does not exist).
pub async fn entries(client: &zookeeper_client::Client, namespace: &str) -> Vec<String> {
    match client.list_children(&format!("/{namespace}")).await {
        Ok(mut names) => {
            names.sort();
            names
        }
        Err(zookeeper_client::Error::NoNode) => vec![],
        Err(e) => panic!("list /{namespace}: {e}"),
    }
}

pub async fn gone(client: &zookeeper_client::Client, namespace: &str) {
    let left = entries(client, namespace).await;
    assert!(left.is_empty(), "left in /{namespace}: {left:?}");
}

/// Marks the child process: `connect string|namespace|session timeout ms`.
const CHILD_ENV: &str = "HS2_PROXY_DISCOVERY_CHILD";

/// A child process, killed (SIGKILL) on drop.
pub struct ChildProcess(pub Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-runs this test binary as a child that registers and then waits forever; returns its znode.
pub async fn registrar_in_a_child_process(
    zk: &ZooKeeper,
    namespace: &str,
    timeout: Duration,
) -> (String, ChildProcess) {
    let exe = std::env::current_exe().expect("test binary");
    let spec = format!("{}|{namespace}|{}", zk.connect_string(), timeout.as_millis());
    let mut child = Command::new(exe)
        .args(["child_process_registrar", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let child = ChildProcess(child);
    // Reading a pipe blocks: off the runtime. The child's end closes if it dies, so this ends.
    let registered = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            // libtest prints `test NAME ... ` before the test's own output, on the same line
            if let Some((_, path)) = line.ok()?.split_once("REGISTERED ") {
                return Some(path.to_string());
            }
        }
        None
    });
    let path = tokio::time::timeout(LIMIT, registered).await.expect("child registers in time").expect("join");
    (path.expect("the child ended without registering"), child)
}

/// The child's side: only does something when started by [`registrar_in_a_child_process`].
pub async fn child_process_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut parts = spec.split('|');
    let (zk, ns, ms) = (parts.next(), parts.next(), parts.next().and_then(|m| m.parse::<u64>().ok()));
    let (Some(zk), Some(ns), Some(ms)) = (zk, ns, ms) else { panic!("bad {CHILD_ENV}: {spec:?}") };
    let cfg = DiscoveryConfig {
        zookeeper: zk.into(),
        namespace: ns.into(),
        advertise_host: "127.0.0.1".into(),
        advertise_port: None,
        session_timeout: Duration::from_millis(ms),
    };
    let reg = Registrar::start(cfg, advert(99)).expect("advert");
    let mut rx = reg.subscribe();
    let s = rx.wait_for(|s| s.registered.is_some()).await.expect("state").clone();
    println!("REGISTERED {}", s.registered.unwrap_or_default());
    std::future::pending::<()>().await;
}
