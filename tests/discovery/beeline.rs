//! Real clients finding hs2-proxy through ZooKeeper: beeline (Hive JDBC 2.3 from the pyspark wheel, see
//! scripts/setup-spark.sh) with `serviceDiscoveryMode=zooKeeper`, through in-process proxies in front of
//! mock impalads (NOSASL upstream; beeline speaks SASL PLAIN to the proxy, as the advert says `NONE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hs2_proxy::config::BackendTransport;
use hs2_proxy::config::DiscoveryConfig;
use hs2_proxy::discovery::{advert_for, Advert, AdvertAuth, AdvertTransport, Registrar};
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zookeeper_client::{Acls, CreateMode};

use crate::common::{self, zookeeper::ZooKeeper};
use crate::support::{cfg, entries, logs, until};

/// A session timeout long enough that no instance expires during a test on a loaded machine.
const SESSION: Duration = Duration::from_secs(10);

/// One proxy instance: a mock impalad, hs2-proxy in front of it, and its registrar.
struct Instance {
    mock: MockImpalad,
    proxy: ProxyHandle,
    reg: Registrar,
}

/// A proxy registered the way the proxy's start code does it: `advert_for` its config and bound port.
async fn instance(zk: &ZooKeeper, namespace: &str) -> Instance {
    let (mock, proxy) = proxy_and_mock().await;
    let d = cfg(zk, namespace, SESSION);
    let advert = advert_for(proxy.proxy.config(), &d, proxy.local_addr);
    register(zk, d, mock, proxy, advert).await
}

async fn proxy_and_mock() -> (MockImpalad, ProxyHandle) {
    let mut mocks = common::mocks(1, MockAuth::NoSasl).await;
    let proxy = common::proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    (mocks.remove(0), proxy)
}

async fn register(
    zk: &ZooKeeper,
    d: DiscoveryConfig,
    mock: MockImpalad,
    proxy: ProxyHandle,
    advert: Advert,
) -> Instance {
    let reg = Registrar::start(d, advert).expect("advert");
    until(&reg, zk, "registered", |s| s.registered.is_some()).await;
    Instance { mock, proxy, reg }
}

/// A TCP relay to `to` that keeps the first four bytes of every connection (`POST` for HTTP).
async fn sniffing_relay(to: SocketAddr) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4];
                if client.read_exact(&mut head).await.is_err() {
                    return;
                }
                log.lock().expect("lock").push(head.to_vec());
                let Ok(mut up) = TcpStream::connect(to).await else { return };
                if up.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    });
    (port, seen)
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `select 1` by beeline, finding the server in ZooKeeper's `namespace`.
async fn beeline_select_1(zk: &ZooKeeper, namespace: &str) -> Ran {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join(".venv-spark/bin/python").exists(),
        "beeline missing: run scripts/setup-spark.sh (scripts/test.sh does)"
    );
    let url = format!(
        "jdbc:hive2://{}/default;serviceDiscoveryMode=zooKeeper;zooKeeperNamespace={namespace}",
        zk.connect_string()
    );
    let mut cmd = Command::new(repo.join("scripts/beeline.sh"));
    cmd.args(["-u", &url, "-n", "discovery", "-p", "pw"]);
    cmd.args(["--silent=true", "--outputformat=tsv2", "--showHeader=false", "-e", "select 1"]);
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output())
        .await
        .expect("join")
        .expect("beeline.sh starts");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// Output rows of `beeline --outputformat=tsv2 --silent=true -e`, less the prompt beeline 2.3 prints first
/// and Hive JDBC's log4j2 lines (`2026-...Z main WARN ...`, on stdout too).
fn rows(stdout: &str) -> Vec<&str> {
    // Log lines start with a timestamp, whichever thread wrote them (main, Curator-...).
    let log_line = |l: &str| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T';
    stdout
        .lines()
        .filter(|l| !log_line(l))
        .map(|l| l.rsplit_once("> ").map_or(l, |(_, r)| r))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peers (ZooKeeper, beeline): run by scripts/test.sh"]
async fn beeline_finds_the_proxy_through_zookeeper() {
    logs();
    let zk = ZooKeeper::start().await;
    let a = instance(&zk, "bl-one").await;
    let ran = beeline_select_1(&zk, "bl-one").await;
    assert!(ran.ok && rows(&ran.stdout) == ["1"], "beeline via ZooKeeper:\n{}{}", ran.stdout, ran.stderr);
    assert_eq!(a.mock.calls("ExecuteStatement"), 1, "the statement ran behind the registered proxy");
    println!("beeline select 1 via ZooKeeper discovery: ok in {:.1}s", ran.took.as_secs_f64());
    a.reg.deregister().await;
    a.proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peers (ZooKeeper, beeline): run by scripts/test.sh"]
async fn beeline_takes_http_transport_from_the_znode() {
    logs();
    let zk = ZooKeeper::start().await;
    let (mock, proxy) = proxy_and_mock().await;
    let (relay, seen) = sniffing_relay(proxy.local_addr).await;
    // The proxy serves binary and HTTP on one port (sniffed), so either can be advertised.
    let advert = Advert {
        transport: AdvertTransport::Http { path: "cliservice".into() },
        ..Advert::binary("127.0.0.1", relay, AdvertAuth::None)
    };
    let a = register(&zk, cfg(&zk, "bl-http", SESSION), mock, proxy, advert).await;
    // The URL says nothing about the transport: Hive JDBC takes transport.mode, thrift.port and
    // thrift.http.path from the znode.
    let ran = beeline_select_1(&zk, "bl-http").await;
    assert!(ran.ok && rows(&ran.stdout) == ["1"], "beeline via ZooKeeper (http):\n{}{}", ran.stdout, ran.stderr);
    assert_eq!(a.mock.calls("ExecuteStatement"), 1);
    let heads = seen.lock().expect("lock").clone();
    assert!(!heads.is_empty() && heads.iter().all(|h| h == b"POST"), "HTTP only: {heads:?}");
    println!(
        "beeline over HTTP via ZooKeeper discovery: ok in {:.1}s, {} connections",
        ran.took.as_secs_f64(),
        heads.len()
    );
    a.reg.deregister().await;
    a.proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peers (ZooKeeper, beeline): run by scripts/test.sh"]
async fn beeline_always_reaches_the_live_instance() {
    logs();
    let zk = ZooKeeper::start().await;
    let ns = "bl-three";
    let live = instance(&zk, ns).await;
    // Draining: still serving, but deregistered so that new clients go elsewhere.
    let draining = instance(&zk, ns).await;
    draining.reg.set_available(false);
    until(&draining.reg, &zk, "deregistered", |s| s.registered.is_none()).await;
    // Killed: what `kill -9` leaves behind until its session expires: a znode pointing at a closed port.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let dead = Advert::binary("127.0.0.1", dead_port, AdvertAuth::None);
    let client = zk.client().await;
    let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    client
        .create(&format!("/{ns}/{}", dead.name_prefix()), dead.data().as_bytes(), &ephemeral)
        .await
        .expect("dead znode");
    assert_eq!(entries(&client, ns).await.len(), 2, "the live instance and the killed one");

    let runs = 6;
    let mut took = Vec::new();
    let mut dead_tried = 0;
    for i in 0..runs {
        let ran = beeline_select_1(&zk, ns).await;
        assert!(ran.ok && rows(&ran.stdout) == ["1"], "run {i}:\n{}{}", ran.stdout, ran.stderr);
        dead_tried += usize::from(ran.stdout.contains(&format!("Failed to connect to 127.0.0.1:{dead_port}")));
        took.push(ran.took.as_secs_f64());
    }
    assert_eq!(live.mock.calls("ExecuteStatement"), runs, "every run reached the live instance");
    assert_eq!(draining.mock.calls("OpenSession"), 0, "none reached the draining one");
    println!(
        "beeline x{runs} with one live, one draining (deregistered) and one killed (stale znode) instance: \
         all reached the live one; {dead_tried} runs tried the killed one first and went on; took {took:.1?} s"
    );
    for i in [live, draining] {
        i.reg.deregister().await;
        i.proxy.shutdown();
    }
}
