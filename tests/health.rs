//! Health, balancing, drain, failover and restart, through real sockets with mock impalads that die,
//! hang, drain and come back. Each figure (time to notice, sessions recovered) is printed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hs2_proxy::backend::health::{AdminState, Observed};
use hs2_proxy::config::{BackendConfig, BackendTransport, Config};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::server::{self, ProxyHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fast probes so that tests see transitions within a second.
fn fast_health(c: &mut Config) {
    c.health.interval = Duration::from_millis(50);
    c.health.timeout = Duration::from_millis(300);
    c.health.rise = 2;
    c.health.fall = 2;
}

fn state(proxy: &ProxyHandle, addr: &str) -> Observed {
    proxy.proxy.find_backend(addr).expect("backend").health().observed
}

async fn wait_state(proxy: &ProxyHandle, addr: &str, want: Observed) -> Duration {
    let t0 = Instant::now();
    while state(proxy, addr) != want {
        assert!(t0.elapsed() < Duration::from_secs(10), "{addr} never became {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

/// Opens `n` sessions through the proxy; returns them with the mock index holding each.
async fn open_sessions(proxy: &ProxyHandle, mocks: &[MockImpalad], n: usize) -> Vec<(HandleId, usize)> {
    let mut c = connect(proxy, &ClientAuth::NoSasl).await;
    let mut out = Vec::new();
    for _ in 0..n {
        let s = c.open_session(None, &[]).await.unwrap();
        let owner = mocks.iter().position(|m| m.has_session(&s.guid)).expect("some mock holds it");
        out.push((s, owner));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_fails_its_sessions_over_and_gets_no_new_ones() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    // Without moving sessions (tests/migration.rs moves them): the healing text for each.
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        fast_health(c);
        c.sessions.move_on_failure = false;
    })
    .await;
    let sessions = open_sessions(&proxy, &mocks, 6).await;
    let dead = mocks[0].local_addr().to_string();
    mocks[0].stop().await;
    let noticed = wait_state(&proxy, &dead, Observed::Down).await;
    println!("time to notice a dead backend (probe every 50 ms, fall 2): {noticed:?}");
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    for (s, owner) in &sessions {
        let r = c.execute(s, "select 1").await;
        if *owner == 0 {
            assert!(error_text(r).starts_with("Invalid session id: "), "a session on the dead impalad heals in Hue");
        } else {
            assert!(r.is_ok(), "sessions elsewhere are untouched");
        }
    }
    for _ in 0..6 {
        let s = c.open_session(None, &[]).await.unwrap();
        assert!(!mocks[0].has_session(&s.guid) && mocks[1..].iter().any(|m| m.has_session(&s.guid)));
    }
    assert_eq!(proxy.proxy.find_backend(&dead).map(|b| proxy.proxy.load(b.id).sessions).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_is_taken_down_by_probe_timeouts_and_comes_back() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let addr = mocks[1].local_addr().to_string();
    mocks[1].set_delay(Duration::from_secs(2));
    let noticed = wait_state(&proxy, &addr, Observed::Down).await;
    println!("time to notice a hung backend (timeout 300 ms, fall 2): {noticed:?}");
    mocks[1].set_delay(Duration::ZERO);
    let back = wait_state(&proxy, &addr, Observed::Up).await;
    println!("time to bring it back (rise 2): {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_restarted_on_its_address_is_noticed_and_used_again() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let addr = mocks[0].local_addr().to_string();
    mocks[0].stop().await;
    wait_state(&proxy, &addr, Observed::Down).await;
    let reborn = MockImpalad::start(&addr, MockConfig::default()).await.expect("the port is free again");
    wait_state(&proxy, &addr, Observed::Up).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut landed = 0;
    for _ in 0..4 {
        let s = c.open_session(None, &[]).await.unwrap();
        landed += reborn.has_session(&s.guid) as usize;
    }
    assert!(landed >= 2, "the least-loaded backend takes new sessions again ({landed} of 4)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_servers_and_operator_drain_take_no_new_sessions_but_serve_old_ones() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let sessions = open_sessions(&proxy, &mocks, 4).await;
    let on_0: Vec<HandleId> = sessions.iter().filter(|(_, o)| *o == 0).map(|(s, _)| *s).collect();
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let op = c.execute(&on_0[0], "select id from range(10)").await.unwrap();

    // The server says it is shutting down.
    let addr0 = mocks[0].local_addr().to_string();
    mocks[0].set_shutting_down(true);
    wait_state(&proxy, &addr0, Observed::Draining).await;
    for _ in 0..4 {
        let s = c.open_session(None, &[]).await.unwrap();
        assert!(mocks[1].has_session(&s.guid), "no new sessions on a draining impalad");
    }
    assert_eq!(c.fetch_all_i64(&op).await.unwrap(), (0..10).collect::<Vec<_>>(), "old work still finishes");
    mocks[0].set_shutting_down(false);
    wait_state(&proxy, &addr0, Observed::Up).await;

    // The operator drains backend 1.
    let addr1 = mocks[1].local_addr().to_string();
    assert!(proxy.proxy.set_admin(&addr1, AdminState::Drain));
    for _ in 0..3 {
        let s = c.open_session(None, &[]).await.unwrap();
        assert!(mocks[0].has_session(&s.guid), "no new sessions on a drained backend");
    }
    let on_1 = sessions.iter().find(|(_, o)| *o == 1).map(|(s, _)| *s).unwrap();
    assert!(c.execute(&on_1, "select 1").await.is_ok(), "existing sessions keep working");
    assert!(proxy.proxy.set_admin(&addr1, AdminState::Active));
}

#[tokio::test]
async fn with_no_healthy_backend_open_session_fails_at_once() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    proxy.proxy.set_admin(&mocks[0].local_addr().to_string(), AdminState::Maintenance);
    let t0 = Instant::now();
    let text = error_text(connect(&proxy, &ClientAuth::NoSasl).await.open_session(None, &[]).await);
    assert!(text.contains("no backend is available"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_refused_connection_retries_open_session_on_the_next_backend() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    // A port that refuses connections: bound, then closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.backends.insert(0, BackendConfig::new(&closed));
        c.health.interval = Duration::from_secs(3600);
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    for _ in 0..3 {
        let s = c.open_session(None, &[]).await.unwrap();
        assert!(mocks[0].has_session(&s.guid));
    }
    assert_eq!(state(&proxy, &closed), Observed::Down, "a refused connection is evidence at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_proxy_restart() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let first = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&first, &ClientAuth::NoSasl).await;
    let mut work = Vec::new();
    for i in 0..20 {
        let s = c.open_session(None, &[]).await.unwrap();
        let op = c.execute(&s, &format!("select id from range({})", i + 1)).await.unwrap();
        work.push((s, op, i + 1));
    }
    first.shutdown();
    drop(c);
    let second = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut recovered = 0;
    for (s, op, n) in &work {
        // An operation first: its owner is found by asking the backends.
        let mut c = connect(&second, &ClientAuth::NoSasl).await;
        assert_eq!(c.fetch_all_i64(op).await.unwrap(), (0..*n as i64).collect::<Vec<_>>());
        let next = c.execute(s, "select 5").await.unwrap();
        assert_eq!(c.fetch_all_i64(&next).await.unwrap(), vec![5]);
        recovered += 1;
    }
    println!("sessions recovered after a proxy restart: {recovered} of {}", work.len());
    assert_eq!(second.proxy.session_count(), 20);
    let counts: Vec<u64> = second.proxy.backends().iter().map(|b| second.proxy.load(b.id).sessions).collect();
    assert_eq!(counts.iter().sum::<u64>(), 20, "recovered sessions count toward their backends: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_reweights_and_drains_removed_backends() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks[..2], BackendTransport::Nosasl, fast_health).await;
    let sessions = open_sessions(&proxy, &mocks, 2).await;
    let (kept_on_0, _) = sessions.iter().find(|(_, o)| *o == 0).copied().unwrap();
    let mut next = proxy.proxy.config().clone();
    next.backends = vec![
        BackendConfig { weight: 5, ..BackendConfig::new(&mocks[1].local_addr().to_string()) },
        BackendConfig::new(&mocks[2].local_addr().to_string()),
    ];
    hs2_proxy::control::reload::apply(&proxy.proxy, &next);
    let removed = mocks[0].local_addr().to_string();
    assert_eq!(proxy.proxy.find_backend(&removed).unwrap().health().admin, AdminState::Drain);
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut per = [0usize; 3];
    for _ in 0..12 {
        let s = c.open_session(None, &[]).await.unwrap();
        per[mocks.iter().position(|m| m.has_session(&s.guid)).unwrap()] += 1;
    }
    assert_eq!(per[0], 0, "no new sessions on a removed backend");
    assert!(per[1] > per[2], "weight 5 takes more: {per:?}");
    assert!(c.execute(&kept_on_0, "select 1").await.is_ok(), "its sessions keep working until closed");
    c.close_session(&kept_on_0).await.unwrap();
    let p = proxy.proxy.clone();
    eventually("the drained backend leaves", move || p.find_backend(&removed).is_none()).await;
}

/// A tiny impalad web port serving `/jsonmetrics` with a fixed session count.
async fn fake_metrics(sessions: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jsonmetrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = format!("{{\"impala-server.num-open-hiveserver2-sessions\": {sessions}}}");
            let _ = s.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes()).await;
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_impalads_own_session_count_joins_balancing_when_enabled() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let busy_url = fake_metrics(40).await;
    let mut c = base_config();
    fast_health(&mut c);
    c.backends = vec![
        BackendConfig {
            metrics_url: hs2_proxy::config::HttpUrl::parse(&busy_url),
            ..BackendConfig::new(&mocks[0].local_addr().to_string())
        },
        BackendConfig::new(&mocks[1].local_addr().to_string()),
    ];
    let proxy = server::start(c).await.unwrap();
    let p = proxy.proxy.clone();
    let addr0 = mocks[0].local_addr().to_string();
    eventually("the metrics are read", move || p.find_backend(&addr0).and_then(|b| b.external_sessions()) == Some(40))
        .await;
    let mut client = Hs2Client::connect(proxy.local_addr, &ClientAuth::NoSasl).await.unwrap();
    for _ in 0..10 {
        let s = client.open_session(None, &[]).await.unwrap();
        assert!(mocks[1].has_session(&s.guid), "sessions opened around the proxy load impalad 0");
    }
}
