//! Upgrade drills on Spark Thrift Servers, with the real `hs2-proxy` binary as processes (the mock
//! impalad's are in tests/upgrade.rs, where the load and the process helpers live): `scripts/upgrade.sh`
//! and kill -9 of one of two instances, under the same load.
//!
//! What differs from Impala: Spark ends a session when its connection closes, if it was the last session
//! opened on that connection (CloseSession clears it). The connections are the old instance's upstream
//! pool, so the upgrade costs the sessions that were the last opened on one of them; the rest live on,
//! and the new instance finds them. The drill counts how many.
//!
//! The drills run themselves again in a private network namespace with `net.ipv4.tcp_migrate_req = 1`
//! (tests/upgrade.rs says why), where they start their own NOSASL Spark servers.

use super::*;
#[allow(dead_code)]
#[path = "../upgrade/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../upgrade/procs.rs"]
mod procs;

use load::{usable, Load};

const INSIDE: &str = "HS2_UPGRADE_IN_PRIVATE_NETNS";

/// Runs `name` again inside `unshare -n` (loopback up, `tcp_migrate_req = 1`), with NOSASL servers only.
fn in_private_netns(name: &str) {
    let me = std::env::current_exe().expect("the test binary");
    let inner = format!(
        "ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec '{}' --ignored --exact {name} \
         --nocapture --test-threads=1",
        me.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &inner])
        .env(INSIDE, "1")
        .env("HS2_INTEROP_NOSASL_ONLY", "1")
        .output()
        .expect("unshare (util-linux) runs: the test needs it, and root");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for line in text.lines().filter(|l| l.contains("Spark upgrade") || l.contains("Spark kill")) {
        note(line.trim().to_string());
    }
    assert!(out.status.success(), "{name} in a private network namespace failed:\n{text}");
}

fn spark_backends(peers: &Peers) -> Vec<String> {
    peers.of(Mode::NoSasl).iter().map(|s| s.addr.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server), hs2-proxy processes: run by scripts/test.sh"]
async fn upgrade_spark_under_load() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_netns("upgrade::upgrade_spark_under_load");
    }
    let _t = Timed::start("upgrade_spark_under_load");
    let peers = peers().await;
    let _reaper = procs::Reaper;
    let dir = tempfile::tempdir().unwrap();
    let listen = procs::free_addr();
    let config = procs::write_config(dir.path(), listen, &spark_backends(peers), "nosasl");
    let old = procs::start(&config, &dir.path().join("old.log"));
    let load = Load::start(listen, ClientAuth::NoSasl).await;
    load.warmed_up().await;
    let before = load.report();
    let (cfg, log) = (config.clone(), dir.path().join("new.log"));
    let (_new, took) = tokio::task::spawn_blocking(move || procs::upgrade(old, &cfg, &log)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sessions = load.sessions.clone();
    let report = load.stop().await;
    let alive = usable(listen, &ClientAuth::NoSasl, &sessions).await;
    let line = format!(
        "Spark upgrade ({:.1}s): {}; pooled sessions opened through the old instance still usable: {alive} of {}",
        took.as_secs_f64(),
        report.summary(),
        sessions.len()
    );
    println!("{line}");
    for (at, what) in &report.failures {
        println!("  at {:>6.3}s: {what}", at.as_secs_f64());
    }
    assert!(report.pooled_calls > before.pooled_calls, "the load ran on: {line}");
    // Nothing refused and no call broken; what the upgrade costs on Spark is sessions (and the statement
    // running in one when it goes), counted and reported.
    assert_eq!((report.refused(), report.failed()), (0, 0), "{line}\n{:?}", report.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server), hs2-proxy processes: run by scripts/test.sh"]
async fn upgrade_spark_kill_9_of_one_of_two() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_netns("upgrade::upgrade_spark_kill_9_of_one_of_two");
    }
    let _t = Timed::start("upgrade_spark_kill_9_of_one_of_two");
    let peers = peers().await;
    let _reaper = procs::Reaper;
    let dir = tempfile::tempdir().unwrap();
    let listen = procs::free_addr();
    let config = procs::write_config(dir.path(), listen, &spark_backends(peers), "nosasl");
    let a = procs::start(&config, &dir.path().join("a.log"));
    let _b = procs::start(&config, &dir.path().join("b.log"));
    let load = Load::start(listen, ClientAuth::NoSasl).await;
    load.warmed_up().await;
    let before = load.report();
    procs::kill_9(a);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sessions = load.sessions.clone();
    let report = load.stop().await;
    let alive = usable(listen, &ClientAuth::NoSasl, &sessions).await;
    let line = format!(
        "Spark kill -9 of one of two: since the kill {} refused, {} failed, {} reconnects, {} sessions lost; \
         pooled sessions still usable: {alive} of {}",
        report.refused() - before.refused(),
        report.failed() - before.failed(),
        report.reconnects - before.reconnects,
        report.sessions_lost - before.sessions_lost,
        sessions.len()
    );
    println!("{line}");
    for (at, what) in &report.failures {
        println!("  at {:>6.3}s: {what}", at.as_secs_f64());
    }
    assert_eq!(report.refused(), 0, "{line}");
}
