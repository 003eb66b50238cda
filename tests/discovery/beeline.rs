//! Real clients finding hs2-proxy through ZooKeeper: beeline (Hive JDBC 2.3 from the pyspark wheel, see
//! scripts/setup-spark.sh) with `serviceDiscoveryMode=zooKeeper`, through in-process proxies in front of
//! mock impalads (NOSASL upstream; beeline speaks SASL PLAIN to the proxy, as the advert says `NONE`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hs2_proxy::config::BackendTransport;
use hs2_proxy::discovery::{Advert, AdvertAuth, Registrar};
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;
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

async fn instance(zk: &ZooKeeper, namespace: &str) -> Instance {
    let mut mocks = common::mocks(1, MockAuth::NoSasl).await;
    let proxy = common::proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let advert = Advert::binary("127.0.0.1", proxy.local_addr.port(), AdvertAuth::None);
    let reg = Registrar::start(cfg(zk, namespace, SESSION), advert).expect("advert");
    until(&reg, zk, "registered", |s| s.registered.is_some()).await;
    Instance { mock: mocks.remove(0), proxy, reg }
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
    assert!(repo.join(".venv-spark/bin/python").exists(), "beeline missing: run scripts/setup-spark.sh (scripts/test.sh does)");
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

/// Output rows of `beeline --outputformat=tsv2 --silent=true -e`, less the prompt beeline 2.3 prints first.
fn rows(stdout: &str) -> Vec<&str> {
    stdout.lines().map(|l| l.rsplit_once("> ").map_or(l, |(_, r)| r)).filter(|l| !l.trim().is_empty()).collect()
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
    client.create(&format!("/{ns}/{}", dead.name_prefix()), dead.data().as_bytes(), &ephemeral).await.expect("dead znode");
    assert_eq!(entries(&client, ns).await.len(), 2, "the live instance and the killed one");

    let runs = 6;
    let mut took = Vec::new();
    let mut dead_tried = 0;
    for i in 0..runs {
        let ran = beeline_select_1(&zk, ns).await;
        assert!(ran.ok && rows(&ran.stdout) == ["1"], "run {i}:\n{}{}", ran.stdout, ran.stderr);
        dead_tried += usize::from(ran.stderr.contains(&dead_port.to_string()));
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
