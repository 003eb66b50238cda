//! Defects the soak (`hs2_proxy::soak`, `scripts/soak.sh`) found, each reproduced on its own through real
//! sockets: the proxy in front of mock impalads. Each test failed on the code before its fix.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use hs2_proxy::backend::health::Evidence;
use hs2_proxy::config::{BackendTransport, Config};
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
const CLI_DBMS_VER: TGetInfoType = TGetInfoType::CLI_DBMS_VER;
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::MockAuth;

fn quiet_health(c: &mut Config) {
    // No probe during the test: the evidence is the test's own.
    c.health.interval = Duration::from_secs(3600);
}

/// Two client connections use a session the proxy does not know (after a restart, Hue's hosts share
/// their sessions) at the same moment: both lookups find the owner and both learn it. The second used to
/// replace the first's entry without unpinning the first's upstream connection, which then stayed pinned
/// (never closed as idle) after the session was closed. The soak's first run ended with one such pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_found_by_two_lookups_at_once_leaves_no_pin_behind() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, quiet_health).await;
    let mut direct = Hs2Client::connect(mocks[0].local_addr(), &ClientAuth::NoSasl).await.unwrap();
    let session = direct.open_session(None, &[]).await.unwrap();
    // Slow answers, so that both lookups are under way before either ends.
    mocks[0].set_delay(Duration::from_millis(300));
    let (mut a, mut b) = (connect(&proxy, &ClientAuth::NoSasl).await, connect(&proxy, &ClientAuth::NoSasl).await);
    let (ra, rb) = tokio::join!(a.get_info(&session, CLI_DBMS_VER), b.get_info(&session, CLI_DBMS_VER));
    assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
    mocks[0].set_delay(Duration::ZERO);
    a.close_session(&session).await.unwrap();
    assert_eq!(proxy.proxy.session_count(), 0);
    let stats = proxy.proxy.backends()[0].pool.stats();
    assert_eq!(stats.pinned, 0, "no session is left to pin a connection: {stats:?}");
}

/// A backend is marked down while a call is under way on the connection that opened a session there:
/// the session is forgotten (failover), the call still completes and its connection goes back to the
/// pool. That connection used to stay pinned for good (its session was gone, so nothing unpinned it),
/// holding a pool slot that idle clean-up never frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_marked_down_mid_call_leaves_no_pin_behind() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        quiet_health(c);
        // Forgotten at once (with move_on_failure the session would wait to move on its next call).
        c.sessions.move_on_failure = false;
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let backend = proxy.proxy.backends()[0].clone();
    assert_eq!(backend.pool.stats().pinned, 1, "the opening connection is pinned");
    mocks[0].set_delay(Duration::from_millis(500));
    let call = tokio::spawn(async move { c.get_info(&session, CLI_DBMS_VER).await.map(drop) });
    let b = backend.clone();
    eventually("the call is in flight", move || b.inflight.load(Ordering::Relaxed) == 1).await;
    for _ in 0..proxy.proxy.config().health.fall {
        proxy.proxy.apply_evidence(&backend, Evidence::Failed("the test says so".into()));
    }
    assert_eq!(proxy.proxy.session_count(), 0, "down: its sessions are forgotten");
    assert!(call.await.unwrap().is_ok(), "the call under way completes");
    let b = backend.clone();
    eventually("the connection is back", move || b.inflight.load(Ordering::Relaxed) == 0).await;
    let stats = backend.pool.stats();
    assert_eq!(stats.pinned, 0, "no session is left to pin a connection: {stats:?}");
}

/// A session is abandoned while every upstream connection of its user is busy. The clean-up used to
/// forget it at once and leave it "for the server to expire"; but the busy connections stay open in the
/// pool, so impalad never sees the session disconnected and it stays open there for good. It now waits
/// for a later round and closes the session once a connection is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_abandoned_while_its_connections_are_busy_is_still_closed_upstream() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    // The clean-up closes a session only on the impalad's word that nobody used it (its web port).
    mocks[0].start_web("127.0.0.1:0").await.unwrap();
    let metrics_url = mocks[0].metrics_url();
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        quiet_health(c);
        c.backends[0].metrics_url = metrics_url.as_deref().and_then(hs2_proxy::config::HttpUrl::parse);
        c.pool.max_per_backend = 1;
        c.sessions.disconnected_grace = Duration::from_secs(1);
        c.sessions.reap_interval = Duration::from_millis(100);
    })
    .await;
    let mut a = connect(&proxy, &ClientAuth::NoSasl).await;
    let abandoned = a.open_session(None, &[]).await.unwrap();
    let mut b = connect(&proxy, &ClientAuth::NoSasl).await;
    let kept = b.open_session(None, &[]).await.unwrap();
    // B's call holds the only upstream connection past the grace period of A's session.
    mocks[0].set_delay(Duration::from_millis(1600));
    let call = tokio::spawn(async move { b.get_info(&kept, CLI_DBMS_VER).await.map(|_| b) });
    let backend = proxy.proxy.backends()[0].clone();
    eventually("B's call is in flight", move || backend.inflight.load(Ordering::Relaxed) == 1).await;
    drop(a);
    let _b = call.await.unwrap().unwrap();
    mocks[0].set_delay(Duration::ZERO);
    let m = mocks[0].clone();
    eventually("the abandoned session is closed on the impalad", move || !m.has_session(&abandoned.guid)).await;
    assert!(mocks[0].has_session(&kept.guid));
    assert_eq!(proxy.proxy.session_count(), 1);
}

/// The disk under the proxy's log filled up during the second 30-minute soak. tracing-subscriber, on a
/// failed write, reports it with `eprintln!`, which panics when stderr itself cannot be written: every
/// task that logged died (connection tasks mid-call, without counting their connection closed; health
/// tasks, leaving backends down for good; the clean-up), and the proxy lived on as a zombie that
/// answered "no backend is available" long after the disk had room again. With stderr on /dev/full the
/// proxy died at its first log line. A failing log must cost log lines, never service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_costs_log_lines_not_service() {
    for format in ["text", "json"] {
        serves_with_a_full_log(format).await;
    }
}

async fn serves_with_a_full_log(format: &str) {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (listen, admin) = (free(), free());
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full (Linux)");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .args(["--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
        .args(["--backend", &mocks[0].local_addr().to_string(), "--log-format", format])
        .env("HS2_PROXY_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ready = async {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the proxy exited: {status}"));
            }
            if let Ok((200, _)) = hs2_proxy::cli_admin::http(&admin.to_string(), "GET", "/healthz", None).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let ready = tokio::time::timeout(Duration::from_secs(20), ready).await.expect("bounded");
    let _child = Kill(child);
    ready.unwrap();
    for _ in 0..3 {
        let mut c = Hs2Client::connect(listen, &ClientAuth::NoSasl).await.unwrap();
        c.set_timeout(Some(Duration::from_secs(10)));
        let s = c.open_session(None, &[]).await.expect("a session, with every log line failing");
        let op = c.execute(&s, "select id from range(10)").await.unwrap();
        assert_eq!(c.fetch_all_i64(&op).await.unwrap(), (0..10).collect::<Vec<_>>());
        c.close_session(&s).await.unwrap();
    }
    let connections = async {
        loop {
            let (_, body) = hs2_proxy::cli_admin::http(&admin.to_string(), "GET", "/api/status", None).await.unwrap();
            let status: hs2_proxy::admin::api::StatusJson = serde_json::from_str(&body).unwrap();
            if status.client_connections == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), connections).await.expect("every connection counted closed");
}
