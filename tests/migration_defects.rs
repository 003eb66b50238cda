//! Regression tests for defects the real-peer proofs of issue 14 found in moving sessions, reproduced
//! against mock impalads through real sockets (it failed on the code before the fix):
//! - a move that started while a call of the session was on its way to the old backend: the call's
//!   operation was dropped by the move (`Invalid or unknown query handle` on the next poll), and a `USE`
//!   or `SET` in that call was missing from the moved session (found by beeline's loop on real Spark);

mod common;

use std::time::Duration;

use common::*;
use hs2_proxy::config::{BackendTransport, Config};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::{ClientAuth, ColumnExt, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;

/// Probes that wait out the mock's delay: the backend stays up, only the evacuation moves the session.
fn patient_health(c: &mut Config) {
    c.health.interval = Duration::from_millis(100);
    c.health.timeout = Duration::from_secs(5);
}

async fn session_on(c: &mut Hs2Client, mock: &MockImpalad) -> HandleId {
    for _ in 0..20 {
        let s = c.open_session(None, &[]).await.unwrap();
        if mock.has_session(&s.guid) {
            return s;
        }
    }
    panic!("no session landed on {}", mock.name());
}

async fn one_string(c: &mut Hs2Client, s: &HandleId, statement: &str) -> String {
    let op = c.execute(s, statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    c.wait_finished(&op).await.unwrap();
    let (cols, _) = c.fetch(&op, 10).await.unwrap();
    c.close_operation(&op).await.unwrap();
    cols[0].as_strs().expect("a string column")[0].to_string()
}

async fn admin(proxy: &ProxyHandle, method: &str, path: &str) -> (u16, String) {
    let addr = proxy.admin_addr.unwrap().to_string();
    hs2_proxy::cli_admin::http(&addr, method, path, None).await.unwrap()
}

async fn evacuation(proxy: &ProxyHandle, mock: &MockImpalad) -> Option<hs2_proxy::backend::evacuation::Progress> {
    let (_, body) = admin(proxy, "GET", "/api/backends").await;
    let all: hs2_proxy::admin::api::BackendsJson = serde_json::from_str(&body).unwrap();
    all.backends.into_iter().find(|b| b.address == mock.local_addr().to_string()).unwrap().evacuation
}

/// A statement on its way when the evacuation starts: the session must not move under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_holds_its_session_until_it_returns() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, patient_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    // Every call on the first impalad now takes 400 ms before it is served: the `use` is in flight while
    // the evacuation looks at the session, which has no open operation yet.
    mocks[0].set_delay(Duration::from_millis(400));
    let addr = proxy.local_addr;
    let in_flight = tokio::spawn(async move {
        let mut c = Hs2Client::connect(addr, &ClientAuth::NoSasl).await.unwrap();
        let op = c.execute(&s, "use db_in_flight").await?;
        c.wait_finished(&op).await?;
        c.close_operation(&op).await
    });
    let p = proxy.proxy.clone();
    eventually("the statement is on its way", move || {
        p.backends()[0].inflight.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    let (status, body) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=20s", mocks[0].local_addr())).await;
    assert_eq!(status, 200, "{body}");
    let result = in_flight.await.unwrap();
    assert!(result.is_ok(), "the statement's operation must survive the evacuation: {result:?}");
    for _ in 0..200 {
        if evacuation(&proxy, &mocks[0]).await.is_some_and(|e| e.state != "running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let e = evacuation(&proxy, &mocks[0]).await.unwrap();
    assert_eq!((e.state.as_str(), e.moved), ("done", 1), "{e:?}");
    assert_eq!(one_string(&mut c, &s, "select current_database()").await, "db_in_flight", "the moved session's state");
}

/// A move that keeps failing is tried again after a pause that doubles, not every 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_keeps_failing_is_retried_with_a_growing_pause() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, patient_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    // No other backend takes sessions: every attempt fails.
    assert!(proxy.proxy.set_admin(&mocks[1].local_addr().to_string(), hs2_proxy::backend::health::AdminState::Drain));
    let (status, _) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=2500ms", mocks[0].local_addr())).await;
    assert_eq!(status, 200);
    let mut e = evacuation(&proxy, &mocks[0]).await.unwrap();
    for _ in 0..400 {
        if e.state != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        e = evacuation(&proxy, &mocks[0]).await.unwrap();
    }
    // Attempts at 0 s, 1 s (and 3 s, after the deadline): two; every 200 ms would make 13.
    assert!(e.state == "deadline" && (1..=3).contains(&e.failed), "{e:?}");
    assert!(mocks[0].has_session(&s.guid), "it stays");
}

/// A target that takes the connection and then does not answer: the move gives up at the call deadline
/// (`timeouts.backend_reply` here), the session stays and works, and the evacuation ends at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_a_target_that_hangs_gives_up_in_time() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        patient_health(c);
        c.timeouts.backend_reply = Duration::from_millis(300);
        c.health.timeout = Duration::from_secs(20); // the probes of the slow target still count as answers
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    mocks[1].set_delay(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let (status, _) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=1s", mocks[0].local_addr())).await;
    assert_eq!(status, 200);
    let mut e = evacuation(&proxy, &mocks[0]).await.unwrap();
    while e.state == "running" && started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(25)).await;
        e = evacuation(&proxy, &mocks[0]).await.unwrap();
    }
    assert_eq!(e.state, "deadline", "the evacuation must end at its deadline, not when the target answers: {e:?}");
    assert!(e.failed >= 1, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    mocks[1].set_delay(Duration::ZERO);
    assert!(
        mocks[0].has_session(&s.guid)
            && c.get_info(&s, hs2_proxy::hs2::rpc::hs2::TGetInfoType::CLI_DBMS_VER).await.is_ok(),
        "it stays and works"
    );
}
