//! Upgrade drills with the real `hs2-proxy` binary as separate processes in front of mock impalads
//! (Impala semantics: sessions outlive connections), under load (`upgrade/load.rs`: a call on a fresh
//! connection every 20 ms, 20 pooled connections making calls):
//! - `scripts/upgrade.sh` (start new on the same address with SO_REUSEPORT, SIGTERM old), five times in a
//!   row: no connection refused, no call failed, every session still usable (a request that meets the
//!   old instance's close before any reply byte was never read, and is retried once, as Hue does, and
//!   counted); and the same under a
//!   connection storm. Both run in a private network namespace with `net.ipv4.tcp_migrate_req = 1`
//!   (see [`upgrades_under_a_connection_storm`] for why: without it the kernel resets the odd handshake
//!   in flight when the old listener closes);
//! - kill -9 of one of two instances sharing the address: what clients then see.
//!
//! `#[ignore]`d (several seconds, processes); `scripts/test.sh` runs them with `--ignored`.

mod common;
#[path = "upgrade/load.rs"]
mod load;
#[path = "upgrade/procs.rs"]
mod procs;

use std::time::Duration;

use common::mocks;
use hs2_proxy::hs2client::ClientAuth;
use hs2_proxy::mock::{MockAuth, MockImpalad};
use load::{usable, Load};

const UPGRADES: usize = 5;
/// Set when a test runs inside its private network namespace (see [`in_private_netns_with_migration`]).
/// Set it by hand to run a drill with the host's own `net.ipv4.tcp_migrate_req`.
const INSIDE: &str = "HS2_UPGRADE_IN_PRIVATE_NETNS";

async fn backends(n: usize) -> (Vec<MockImpalad>, Vec<String>) {
    let mocks = mocks(n, MockAuth::NoSasl).await;
    let addrs = mocks.iter().map(|m| m.local_addr().to_string()).collect();
    (mocks, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the hs2-proxy binary as processes: run by scripts/test.sh"]
async fn upgrades_under_load_refuse_no_connection_and_fail_no_call() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_netns_with_migration(INSIDE, "upgrades_under_load_refuse_no_connection_and_fail_no_call");
    }
    let _reaper = procs::Reaper;
    let dir = tempfile::tempdir().unwrap();
    let (_mocks, addrs) = backends(2).await;
    let listen = procs::free_addr();
    let config = procs::write_config(dir.path(), listen, &addrs, "nosasl");
    let mut pid = procs::start(&config, &dir.path().join("proxy-0.log"));
    let load = Load::start(listen, ClientAuth::NoSasl).await;
    load.warmed_up().await;
    for i in 1..=UPGRADES {
        let before = load.report();
        let log = dir.path().join(format!("proxy-{i}.log"));
        let (old, cfg) = (pid, config.clone());
        let (new, took) = tokio::task::spawn_blocking(move || procs::upgrade(old, &cfg, &log)).await.unwrap();
        assert!(!procs::alive(old), "the old instance exited");
        pid = new;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = load.report();
        println!(
            "upgrade {i}: {:.2}s; during it: {} fresh connections, {} refused; {} calls, {} failed; {} reconnects",
            took.as_secs_f64(),
            now.fresh_connections - before.fresh_connections,
            now.refused() - before.refused(),
            now.fresh_calls + now.pooled_calls - before.fresh_calls - before.pooled_calls,
            now.failed() - before.failed(),
            now.reconnects - before.reconnects
        );
    }
    let sessions = load.sessions.clone();
    let report = load.stop().await;
    let alive = usable(listen, &ClientAuth::NoSasl, &sessions).await;
    println!("{UPGRADES} upgrades under load: {}", report.summary());
    println!("pooled sessions still usable afterwards: {alive} of {}", sessions.len());
    for (at, what) in &report.failures {
        println!("  at {:>6.3}s: {what}", at.as_secs_f64());
    }
    assert_eq!((report.refused(), report.failed()), (0, 0), "{}\n{:?}", report.summary(), report.failures);
    assert_eq!(report.sessions_lost, 0, "Impala keeps sessions across a proxy upgrade");
    assert_eq!(alive, sessions.len());
    assert!(report.reconnects > 0, "the old instances closed their idle pooled connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the hs2-proxy binary as processes: run by scripts/test.sh"]
async fn kill_9_of_one_of_two_instances_costs_only_its_calls_in_flight() {
    let _reaper = procs::Reaper;
    let dir = tempfile::tempdir().unwrap();
    let (_mocks, addrs) = backends(2).await;
    let listen = procs::free_addr();
    let config = procs::write_config(dir.path(), listen, &addrs, "nosasl");
    let a = procs::start(&config, &dir.path().join("a.log"));
    let b = procs::start(&config, &dir.path().join("b.log"));
    let load = Load::start(listen, ClientAuth::NoSasl).await;
    load.warmed_up().await;
    let before = load.report();
    procs::kill_9(a);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sessions = load.sessions.clone();
    let report = load.stop().await;
    assert!(procs::alive(b), "instance B serves on");
    let alive = usable(listen, &ClientAuth::NoSasl, &sessions).await;
    println!("kill -9 of one of two instances: {}", report.summary());
    println!(
        "  since the kill: {} refused, {} failed, {} retried (a reset with no reply: after a kill the request may \
         have run), {} reconnects; pooled sessions usable afterwards: {alive} of {}",
        report.refused() - before.refused(),
        report.failed() - before.failed(),
        report.retried - before.retried,
        report.reconnects - before.reconnects,
        sessions.len()
    );
    for (at, what) in &report.failures {
        println!("  at {:>6.3}s: {what}", at.as_secs_f64());
    }
    assert_eq!(report.refused(), 0, "the kernel sends new connections to the live instance");
    assert_eq!(alive, sessions.len(), "every session is found again through B");
}

/// The accept queue at the old listener's close: a connection storm (8 clients connecting back to back)
/// through five upgrades. With SO_REUSEPORT the kernel hands new connections to the old listener until it
/// closes, and resets those still in its queue or half-open then: measured with the kernel's default,
/// 20 upgrades under this storm reset 0-5 connections each run (the old instance serving its accept
/// queue before closing, `server::Accept::drain_queue`, does not change that: the losses are handshakes
/// in flight). Linux 5.14+ with `net.ipv4.tcp_migrate_req = 1` moves them to the new listener instead:
/// this test runs itself again in a private network namespace with that set (nothing on the host
/// changes), and there asserts that nothing is refused and no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives the hs2-proxy binary as processes: run by scripts/test.sh"]
async fn upgrades_under_a_connection_storm() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_netns_with_migration(INSIDE, "upgrades_under_a_connection_storm");
    }
    let _reaper = procs::Reaper;
    let dir = tempfile::tempdir().unwrap();
    let (_mocks, addrs) = backends(2).await;
    let listen = procs::free_addr();
    let config = procs::write_config(dir.path(), listen, &addrs, "nosasl");
    let mut pid = procs::start(&config, &dir.path().join("proxy-0.log"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let storm = tokio::spawn(load::storm(listen, ClientAuth::NoSasl, 8, stopped));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1..=UPGRADES {
        let (old, cfg, log) = (pid, config.clone(), dir.path().join(format!("proxy-{i}.log")));
        pid = tokio::task::spawn_blocking(move || procs::upgrade(old, &cfg, &log)).await.unwrap().0;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send_replace(true);
    let report = storm.await.unwrap();
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    println!(
        "{UPGRADES} upgrades under a storm of 8 clients (tcp_migrate_req = {}): {} connections, {} refused, {} calls, \
         {} failed",
        migrate.trim(),
        report.fresh_connections,
        report.fresh_refused,
        report.fresh_calls,
        report.fresh_failed
    );
    for (at, what) in &report.failures {
        println!("  at {:>6.3}s: {what}", at.as_secs_f64());
    }
    assert_eq!((report.fresh_refused, report.fresh_failed), (0, 0), "{:?}", report.failures);
}

/// Runs test `name` of this binary again inside `unshare -n` (a private network namespace, loopback up,
/// `net.ipv4.tcp_migrate_req = 1`), with `marker` set; fails with its output when it fails. Needs root
/// (CI runs scripts/test.sh as root).
fn in_private_netns_with_migration(marker: &str, name: &str) {
    let me = std::env::current_exe().expect("the test binary");
    let inner = format!(
        "ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec '{}' --ignored --exact {name} \
         --nocapture --test-threads=1",
        me.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &inner])
        .env(marker, "1")
        .output()
        .expect("unshare (util-linux) runs: the test needs it, and root");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "{name} in a private network namespace failed:\n{text}");
}
