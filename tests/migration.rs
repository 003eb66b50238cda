//! Sessions that outlive their impalad (issue 14), through real sockets against mock impalads: a session
//! whose backend died moves on its next call with its state; an evacuation moves sessions as their
//! operations finish; sessions that cannot move stay and say why; the client keeps its handle, and only
//! the handle's 32 bytes of its requests change.

mod common;

use std::time::Duration;

use common::*;
use hs2_proxy::admin::api::{BackendJson, BackendsJson, SessionsJson};
use hs2_proxy::backend::health::AdminState;
use hs2_proxy::config::{BackendTransport, Config};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::idl::names;
use hs2_proxy::hs2::requests;
use hs2_proxy::hs2::rpc::{self, hs2::TGetInfoType, impala::*};
use hs2_proxy::hs2client::{session_handle, ClientAuth, ClientError, ColumnExt, Hs2Client};
use hs2_proxy::metrics::sample;
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;

fn fast_health(c: &mut Config) {
    c.health.interval = Duration::from_millis(50);
    c.health.timeout = Duration::from_millis(300);
    c.health.fall = 2;
}

/// Opens sessions until one lands on `mock`.
async fn session_on(c: &mut Hs2Client, mock: &MockImpalad) -> HandleId {
    for _ in 0..20 {
        let s = c.open_session(Some("hue"), &[("idle_session_timeout", "900")]).await.unwrap();
        if mock.has_session(&s.guid) {
            return s;
        }
    }
    panic!("no session landed on {}", mock.name());
}

/// The one string `statement` returns.
async fn one_string(c: &mut Hs2Client, s: &HandleId, statement: &str) -> String {
    let op = c.execute(s, statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    c.wait_finished(&op).await.unwrap();
    let (cols, _) = c.fetch(&op, 10).await.unwrap();
    c.close_operation(&op).await.unwrap();
    cols[0].as_strs().expect("a string column")[0].to_string()
}

/// A session's query option, as `set all` shows it.
async fn option(c: &mut Hs2Client, s: &HandleId, key: &str) -> String {
    let op = c.execute(s, "set all").await.unwrap();
    let (cols, _) = c.fetch(&op, 1000).await.unwrap();
    c.close_operation(&op).await.unwrap();
    let keys = cols[0].as_strs().expect("a string column");
    let row = keys.iter().position(|k| *k == key).expect("the option is listed");
    cols[1].as_strs().expect("a string column")[row].to_string()
}

async fn run(c: &mut Hs2Client, s: &HandleId, statement: &str) {
    let op = c.execute(s, statement).await.unwrap();
    c.wait_finished(&op).await.unwrap();
    c.close_operation(&op).await.unwrap();
}

fn metrics(proxy: &ProxyHandle) -> String {
    proxy.proxy.metrics().encode(&proxy.proxy.figures()).unwrap()
}

async fn admin(proxy: &ProxyHandle, method: &str, path: &str) -> (u16, String) {
    let addr = proxy.admin_addr.unwrap().to_string();
    hs2_proxy::cli_admin::http(&addr, method, path, None).await.unwrap()
}

async fn backend_view(proxy: &ProxyHandle, mock: &MockImpalad) -> BackendJson {
    let (_, body) = admin(proxy, "GET", "/api/backends").await;
    let all: BackendsJson = serde_json::from_str(&body).unwrap();
    all.backends.into_iter().find(|b| b.address == mock.local_addr().to_string()).unwrap()
}

/// Waits until the evacuation of `mock` is in `state`.
async fn evacuation_state(proxy: &ProxyHandle, mock: &MockImpalad, state: &str) -> BackendJson {
    for _ in 0..400 {
        let b = backend_view(proxy, mock).await;
        if b.evacuation.as_ref().is_some_and(|e| e.state == state) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the evacuation of {} never reached {state}: {:?}", mock.name(), backend_view(proxy, mock).await.evacuation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_backend_died_moves_with_its_state_on_its_next_call() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    run(&mut c, &s, "use db_7").await;
    run(&mut c, &s, "set mem_limit=3g").await;
    let old_op = c.execute(&s, "select 1").await.unwrap();
    mocks[0].stop().await;
    // The next call finds the backend dead, the session moves, and the call goes on: the user sees nothing.
    assert_eq!(one_string(&mut c, &s, "select current_database()").await, "db_7");
    assert_eq!(option(&mut c, &s, "MEM_LIMIT").await, "3g");
    assert!(mocks[1].sessions().iter().any(|g| *g != s.guid), "it lives on the other impalad now");
    // Its operations died with the backend: Impala's own text.
    match c.operation_status(&old_op).await {
        Err(ClientError::Status { message, .. }) => {
            assert!(message.starts_with("Invalid or unknown query handle"), "{message}")
        }
        other => panic!("an operation of the dead backend answered: {other:?}"),
    }
    // Impala's own calls that carry the session handle work on the moved session.
    let op = c.execute(&s, "select id from range(10)").await.unwrap();
    c.wait_finished(&op).await.unwrap();
    let summary = TGetExecSummaryReq::new(op.thrift(), session_handle(&s), None);
    assert!(c.call_ok::<rpc::GetExecSummary>(&summary).await.is_ok(), "GetExecSummary");
    let profile = TGetRuntimeProfileReq::new(op.thrift(), session_handle(&s), None, None);
    assert!(c.call_ok::<rpc::GetRuntimeProfile>(&profile).await.is_ok(), "GetRuntimeProfile");
    let text = metrics(&proxy);
    let series = format!(
        r#"hs2_proxy_session_moves_total{{from="{}",to="{}",reason="failure",result="moved"}}"#,
        mocks[0].local_addr(),
        mocks[1].local_addr()
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{text}");
}

/// The client keeps its handle; the backend sees its own. Only those 32 bytes differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_sessions_requests_differ_only_in_the_handle() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    mocks[0].stop().await;
    c.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.expect("the call after the move");
    let sent = requests::get_info(&s, 18, 4242);
    c.call_raw(&sent).await.expect("a raw GetInfo");
    let seen = mocks[1].last_request(names::GET_INFO).expect("the mock saw it");
    assert_eq!(seen.len(), sent.len());
    let differ = (0..sent.len()).filter(|i| sent[*i] != seen[*i]).count();
    assert!((1..=32).contains(&differ), "only the session handle's bytes differ: {differ}");
    let upstream = mocks[1].sessions()[0];
    assert!(seen.windows(16).any(|w| w == upstream.0), "the backend's own guid is in the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_move_on_failure_the_first_call_gets_the_healing_text() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        // No probe notices first: the call itself finds the backend dead (`kill -9`).
        c.health.interval = Duration::from_secs(3600);
        c.sessions.move_on_failure = false;
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    mocks[0].stop().await;
    let text = error_text(c.get_info(&s, TGetInfoType::CLI_DBMS_VER).await);
    assert!(text.starts_with("Invalid session id"), "Hue heals on this, not on a connection error: {text}");
    let again = c.open_session(None, &[]).await.unwrap();
    assert!(mocks[1].has_session(&again.guid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_moves_sessions_as_their_operations_finish() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut on_first = Vec::new();
    for i in 0..9 {
        let s = c.open_session(None, &[]).await.unwrap();
        run(&mut c, &s, &format!("use db_{i}")).await;
        if mocks[0].has_session(&s.guid) {
            on_first.push((s, format!("db_{i}")));
        }
    }
    assert!(on_first.len() >= 2, "sessions spread: {}", on_first.len());
    // One session is busy: a query runs.
    let busy = c.execute(&on_first[0].0, "select sleep(600000)").await.unwrap();
    let (status, body) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=30s", mocks[0].local_addr())).await;
    assert_eq!(status, 200, "{body}");
    let p = proxy.proxy.clone();
    let first = mocks[0].clone();
    eventually("the idle sessions moved", move || first.sessions().len() == 1 && p.session_count() == 9).await;
    // The old backend closes a moved session before the evacuation counts the move: wait for the count.
    let moved = on_first.len() as u64 - 1;
    let mut b = backend_view(&proxy, &mocks[0]).await;
    for _ in 0..400 {
        if b.evacuation.as_ref().is_some_and(|e| e.moved >= moved) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        b = backend_view(&proxy, &mocks[0]).await;
    }
    let e = b.evacuation.unwrap();
    assert_eq!((e.state.as_str(), e.moved as usize, e.waiting), ("running", on_first.len() - 1, 1), "{e:?}");
    assert!(!b.eligible, "no new sessions meanwhile");
    c.cancel_operation(&busy).await.unwrap();
    c.close_operation(&busy).await.unwrap();
    let b = evacuation_state(&proxy, &mocks[0], "done").await;
    assert_eq!(b.evacuation.unwrap().left, 0);
    assert!(mocks[0].sessions().is_empty(), "the old sessions were closed on the evacuated impalad");
    for (s, db) in &on_first {
        assert_eq!(&one_string(&mut c, s, "select current_database()").await, db, "state kept");
    }
    let (_, body) = admin(&proxy, "GET", "/api/sessions").await;
    let all: SessionsJson = serde_json::from_str(&body).unwrap();
    assert_eq!(all.sessions.iter().filter(|s| s.moves == 1).count(), on_first.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_temporary_view_stays_and_says_why() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    run(&mut c, &s, "create temporary view v as select 1").await;
    let (status, _) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=1s", mocks[0].local_addr())).await;
    assert_eq!(status, 200);
    let e = evacuation_state(&proxy, &mocks[0], "deadline").await.evacuation.unwrap();
    assert_eq!(e.left, 1);
    assert!(e.unmovable.iter().any(|u| u.contains("temporary")), "{e:?}");
    let (_, body) = admin(&proxy, "GET", "/api/sessions").await;
    let all: SessionsJson = serde_json::from_str(&body).unwrap();
    let listed = all.sessions.iter().find(|x| x.id == s.guid.impala_id()).unwrap();
    assert!(listed.unmovable.as_deref().is_some_and(|u| u.contains("temporary")));
    assert!(
        mocks[0].has_session(&s.guid) && c.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.is_ok(),
        "it stays and works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_finds_no_target_leaves_the_session_where_it_was() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    run(&mut c, &s, "use db_x").await;
    assert!(proxy.proxy.set_admin(&mocks[1].local_addr().to_string(), AdminState::Drain));
    admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=1s", mocks[0].local_addr())).await;
    let e = evacuation_state(&proxy, &mocks[0], "deadline").await.evacuation.unwrap();
    assert!(e.left == 1 && e.failed >= 1, "{e:?}");
    assert!(mocks[0].has_session(&s.guid));
    assert_eq!(one_string(&mut c, &s, "select current_database()").await, "db_x");
    let (status, _) = admin(&proxy, "POST", "/api/backends/nohost:1/evacuate").await;
    assert_eq!(status, 404);
    let (status, _) =
        admin(&proxy, "POST", &format!("/api/backends/{}/evacuate?deadline=soon", mocks[0].local_addr())).await;
    assert_eq!(status, 400);
}

/// The operator's close of a moved session reaches the session on its new backend (by its handle there,
/// not the client's, which that backend would answer with "Invalid session id", taken for closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_closes_a_moved_session_on_its_new_backend() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, fast_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = session_on(&mut c, &mocks[0]).await;
    run(&mut c, &s, "use db_7").await;
    mocks[0].stop().await;
    assert_eq!(one_string(&mut c, &s, "select current_database()").await, "db_7");
    assert_eq!(mocks[1].sessions().len(), 1, "it lives on the other impalad now");
    let (status, body) = admin(&proxy, "POST", &format!("/api/sessions/{}/close", s.guid.impala_id())).await;
    assert_eq!(status, 200, "{body}");
    assert!(mocks[1].sessions().is_empty(), "closed on the backend that holds it: {:?}", mocks[1].sessions());
}
