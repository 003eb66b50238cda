//! ZooKeeper discovery against a real Apache ZooKeeper (Debian's, tests/common/zookeeper.rs) and real
//! beeline (`discovery/beeline.rs`). `#[ignore]`d in plain `cargo test`; scripts/test.sh runs them after
//! scripts/setup-zookeeper.sh (and setup-spark.sh for beeline). Every wait is on an event (the registrar's
//! state, a ZooKeeper watch) with a bound; none sleeps a fixed time.

#[path = "discovery/beeline.rs"]
mod beeline;
mod common;
#[path = "discovery/support.rs"]
mod support;

use std::time::{Duration, Instant};

use hs2_proxy::config::FileConfig;
use hs2_proxy::discovery::znode::VERSION;
use hs2_proxy::discovery::{Advert, AdvertAuth, Deregistered, Link, Registrar, DEREGISTER_TIMEOUT};
use zookeeper_client::EventType;

use common::zookeeper::ZooKeeper;
use support::{advert, cfg, entries, gone, until, SHORT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn registers_in_hiveserver2_format_and_deregisters() {
    support::logs();
    let zk = ZooKeeper::start().await;
    // Through the config file's keys: they are the contract.
    let text = format!(
        "listen = \"127.0.0.1:21050\"\n[discovery]\nzookeeper = \"{}\"\nnamespace = \"hs2-proxy-fmt\"\nsession_timeout = \"4s\"\n",
        zk.connect_string()
    );
    let config = FileConfig::parse(&text).and_then(FileConfig::validate).expect("valid config");
    let d = config.discovery.expect("discovery on");
    let (host, port) = d.advertised(config.listen);
    assert_eq!((host.as_str(), port), ("127.0.0.1", 21050));
    let reg = Registrar::start(d, Advert::binary(host, port, AdvertAuth::None)).expect("advert fits");
    let s = until(&reg, &zk, "registered", |s| s.registered.is_some()).await;
    let path = s.registered.clone().expect("path");

    let client = zk.client().await;
    let names = entries(&client, "hs2-proxy-fmt").await;
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    let prefix = format!("serverUri=127.0.0.1:21050;version={VERSION};sequence=");
    let seq = name.strip_prefix(&prefix).unwrap_or_else(|| panic!("{name:?} lacks {prefix:?}"));
    assert!(seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()), "ZooKeeper's sequence: {name}");
    assert_eq!(path, format!("/hs2-proxy-fmt/{name}"));
    let (data, stat) = client.get_data(&path).await.expect("data");
    assert_eq!(
        String::from_utf8(data).expect("utf-8"),
        "hive.server2.thrift.bind.host=127.0.0.1;hive.server2.thrift.port=21050;hive.server2.transport.mode=binary;\
         hive.server2.thrift.sasl.qop=auth;hive.server2.authentication=NONE;hive.server2.use.SSL=false"
    );
    assert_eq!(format!("{:#x}", stat.ephemeral_owner), s.session_id.clone().expect("session"), "ephemeral, ours");
    let (_, ns_stat) = client.get_data("/hs2-proxy-fmt").await.expect("namespace");
    assert_eq!(ns_stat.ephemeral_owner, 0, "the namespace is persistent");
    assert_eq!((s.link, s.registrations, s.available), (Link::Connected, 1, true));

    let t0 = Instant::now();
    assert_eq!(reg.deregister().await, Deregistered::Done);
    println!("deregistered in {:?}", t0.elapsed());
    assert!(entries(&client, "hs2-proxy-fmt").await.is_empty(), "the znode is gone");
    assert_eq!(reg.state().link, Link::Stopped);
    assert_eq!(reg.deregister().await, Deregistered::Done, "idempotent");
    reg.set_available(true);
    assert!(entries(&client, "hs2-proxy-fmt").await.is_empty(), "a stopped registrar stays stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn the_znode_goes_when_the_registrar_is_dropped() {
    support::logs();
    let zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "drop", SHORT), advert(1)).expect("advert");
    let path = until(&reg, &zk, "registered", |s| s.registered.is_some()).await.registered.expect("path");
    let client = zk.client().await;
    let (stat, watch) = client.check_and_watch_stat(&path).await.expect("watch");
    assert!(stat.is_some());
    drop(reg);
    let t0 = Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.changed()).await.expect("deleted in time");
    assert_eq!(event.event_type, EventType::NodeDeleted);
    println!("dropped registrar: znode gone after {:?} (session closed, not expired)", t0.elapsed());
    assert!(t0.elapsed() < SHORT, "closing the session deletes it at once, not after the session timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn set_available_deregisters_and_registers_again() {
    support::logs();
    let zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "avail", SHORT), advert(2)).expect("advert");
    let first = until(&reg, &zk, "registered", |s| s.registered.is_some()).await.registered.expect("path");
    let client = zk.client().await;
    reg.set_available(false);
    reg.set_available(false); // repeated: ignored
    let s = until(&reg, &zk, "deregistered", |s| !s.available && s.registered.is_none()).await;
    assert_eq!(s.link, Link::Connected);
    assert!(entries(&client, "avail").await.is_empty());
    reg.set_available(true);
    let second = until(&reg, &zk, "registered again", |s| s.registered.is_some()).await;
    let second = second.registered.expect("path");
    assert_ne!(first, second, "a new sequence number");
    assert!(second > first, "{second} after {first}");
    assert_eq!(entries(&client, "avail").await.len(), 1);
    assert_eq!(reg.state().registrations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn zookeeper_down_at_start_blocks_nothing_and_registration_follows_when_it_comes_up() {
    support::logs();
    let mut zk = ZooKeeper::unstarted();
    let t0 = Instant::now();
    let reg = Registrar::start(cfg(&zk, "late", SHORT), advert(3)).expect("advert");
    reg.set_available(false);
    reg.set_available(true);
    let _ = reg.state();
    assert!(t0.elapsed() < Duration::from_millis(50), "start and set_available return at once");
    let s = until(&reg, &zk, "a failed connect", |s| s.last_error.is_some()).await;
    assert_eq!((s.link, s.registered.as_deref()), (Link::Connecting, None));
    println!("while ZooKeeper is down: {:?}", s.last_error);
    zk.restart().await;
    let up = Instant::now();
    let s = until(&reg, &zk, "registered once ZooKeeper is up", |s| s.registered.is_some()).await;
    println!("registered {:?} after ZooKeeper came up", up.elapsed());
    assert_eq!(s.last_error, None, "cleared by success");
    assert_eq!(entries(&zk.client().await, "late").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn a_short_zookeeper_restart_keeps_the_session_and_the_znode() {
    support::logs();
    let mut zk = ZooKeeper::start().await;
    // Long enough for a JVM restart on a loaded machine to fit inside the session.
    let reg = Registrar::start(cfg(&zk, "blip", Duration::from_secs(20)), advert(4)).expect("advert");
    let before = until(&reg, &zk, "registered", |s| s.registered.is_some()).await;
    zk.stop();
    until(&reg, &zk, "disconnected", |s| s.link == Link::Disconnected).await;
    assert_eq!(reg.state().registered, before.registered, "still registered while the session lives");
    zk.restart().await;
    let after = until(&reg, &zk, "reconnected", |s| s.link == Link::Connected).await;
    assert_eq!((&after.session_id, &after.registered), (&before.session_id, &before.registered));
    assert_eq!(after.registrations, 1);
    assert_eq!(entries(&zk.client().await, "blip").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn an_expired_session_is_replaced_and_the_instance_registered_again() {
    support::logs();
    let mut zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "expiry", SHORT), advert(5)).expect("advert");
    let before = until(&reg, &zk, "registered", |s| s.registered.is_some()).await;
    zk.stop();
    // The client declares the session expired after 7/5 of its timeout without ZooKeeper.
    let lost = until(&reg, &zk, "session lost", |s| s.session_id.is_none()).await;
    assert_eq!((lost.link, lost.registered.as_deref()), (Link::Connecting, None));
    assert!(lost.last_error.as_deref().is_some_and(|e| e.contains("Expired")), "{lost:?}");
    zk.restart().await;
    let after = until(&reg, &zk, "registered with a new session", |s| s.registered.is_some()).await;
    assert_ne!(after.session_id, before.session_id);
    assert_eq!(after.registrations, 2);
    // The restarted ZooKeeper brought back the old session's znode until it times out; the registrar
    // deletes it before creating its own, so this instance is listed once.
    let client = zk.client().await;
    let names = entries(&client, "expiry").await;
    assert_eq!(names.len(), 1, "{names:?}");
    let (_, stat) = client.get_data(&format!("/expiry/{}", names[0])).await.expect("data");
    assert_eq!(Some(format!("{:#x}", stat.ephemeral_owner)), after.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn a_zookeeper_that_lost_its_data_gets_the_namespace_and_znode_again() {
    support::logs();
    let mut zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "wiped", SHORT), advert(6)).expect("advert");
    let before = until(&reg, &zk, "registered", |s| s.registered.is_some()).await;
    zk.wipe_and_restart().await;
    let after = until(&reg, &zk, "registered again", |s| s.registrations == 2 && s.registered.is_some()).await;
    assert_ne!(after.session_id, before.session_id, "the old session is unknown there: expired");
    assert_eq!(entries(&zk.client().await, "wiped").await.len(), 1, "namespace and znode created again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn a_znode_deleted_by_another_client_is_created_again() {
    support::logs();
    let zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "deleted", SHORT), advert(7)).expect("advert");
    let first = until(&reg, &zk, "registered", |s| s.registered.is_some()).await.registered.expect("path");
    zk.client().await.delete(&first, None).await.expect("delete behind its back");
    let s = until(&reg, &zk, "registered again", |s| s.registrations == 2 && s.registered.is_some()).await;
    assert_ne!(s.registered.as_deref(), Some(first.as_str()));
    assert_eq!(entries(&zk.client().await, "deleted").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn deregister_is_bounded_when_zookeeper_is_down() {
    support::logs();
    let mut zk = ZooKeeper::start().await;
    let reg = Registrar::start(cfg(&zk, "bounded", Duration::from_secs(30)), advert(8)).expect("advert");
    until(&reg, &zk, "registered", |s| s.registered.is_some()).await;
    zk.stop();
    until(&reg, &zk, "disconnected", |s| s.link == Link::Disconnected).await;
    let t0 = Instant::now();
    let outcome = reg.deregister().await;
    let took = t0.elapsed();
    println!("deregister with ZooKeeper down: {outcome:?} in {took:?}");
    assert!(took <= DEREGISTER_TIMEOUT + Duration::from_millis(500), "{took:?}");
    // A registrar still connecting has nothing to delete: it stops at once.
    let reg = Registrar::start(cfg(&zk, "bounded", SHORT), advert(8)).expect("advert");
    let t0 = Instant::now();
    assert_eq!(reg.deregister().await, Deregistered::Done);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (ZooKeeper): run by scripts/test.sh"]
async fn the_znode_goes_after_the_session_timeout_when_the_process_is_killed() {
    support::logs();
    let zk = ZooKeeper::start().await;
    let (path, mut child) = support::registrar_in_a_child_process(&zk, "killed", SHORT).await;
    let client = zk.client().await;
    let (stat, watch) = client.check_and_watch_stat(&path).await.expect("watch");
    assert!(stat.is_some(), "the child registered {path}");
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    let t0 = Instant::now();
    let event = tokio::time::timeout(SHORT * 5, watch.changed()).await.expect("ZooKeeper expires the session");
    assert_eq!(event.event_type, EventType::NodeDeleted);
    let took = t0.elapsed();
    println!("kill -9: znode gone after {took:?} (session timeout {SHORT:?})");
    assert!(took >= SHORT / 2, "an ephemeral znode outlives a killed process until the session expires");
    gone(&client, "killed").await;
}

/// Not a test on its own: the child process of the test above (a registrar that never says goodbye).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of the_znode_goes_after_the_session_timeout_when_the_process_is_killed"]
async fn child_process_registrar() {
    support::child_process_main().await;
}
