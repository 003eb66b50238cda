//! Bad input, failing backends and limits: each gets a clear error and harms no other client.

mod common;

use std::time::Duration;

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::hs2::rpc::hs2::{TGetInfoType, TI32Value, TStatus};
use hs2_proxy::hs2client::{ClientAuth, ClientError, ColumnExt, Hs2Client};
use hs2_proxy::mock::MockAuth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn sasl_users_own_their_sessions() {
    let mocks = mocks(2, MockAuth::Plain { users: None }).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let mut alice = connect(&proxy, &plain("alice", "pw-a")).await;
    let s = alice.open_session(Some("alice"), &[]).await.unwrap();
    let mut bob = connect(&proxy, &plain("bob", "pw-b")).await;
    let text = error_text(bob.execute(&s, "select 1").await);
    assert!(text.starts_with("Invalid session id: "), "{text}");
    let mut anonymous = connect(&proxy, &ClientAuth::NoSasl).await;
    assert!(error_text(anonymous.execute(&s, "select 1").await).starts_with("Invalid session id: "));
    // Alice, from a new connection, still can.
    let mut again = connect(&proxy, &plain("alice", "pw-a")).await;
    let op = again.execute(&s, "select 1").await.unwrap();
    assert_eq!(again.fetch_all_i64(&op).await.unwrap(), vec![1]);
    // The backend saw alice's session on alice's upstream connection.
    let owner = mocks.iter().find_map(|m| m.session_user(&s.guid));
    assert_eq!(owner.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_by_the_backend_and_reported() {
    let users = Some(vec![("alice".to_string(), "right".to_string())]);
    let mocks = mocks(1, MockAuth::Plain { users }).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let good = Hs2Client::connect(proxy.local_addr, &plain("alice", "right")).await;
    assert!(good.is_ok());
    match Hs2Client::connect(proxy.local_addr, &plain("alice", "wrong")).await {
        Err(ClientError::Sasl(e)) => assert!(e.to_string().contains("refused"), "{e}"),
        Err(e) => panic!("expected a SASL refusal, got {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
}

#[tokio::test]
async fn gssapi_is_refused_with_a_clear_message() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    s.write_all(&[1, 0, 0, 0, 6]).await.unwrap();
    s.write_all(b"GSSAPI").await.unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply[0], 3, "SASL BAD");
    let text = String::from_utf8_lossy(&reply[5..]);
    assert!(text.contains("GSSAPI") && text.contains("not supported"), "{text}");
}

#[tokio::test]
async fn a_backend_dropping_mid_reply_fails_only_that_call() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut victim = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut bystander = connect(&proxy, &ClientAuth::NoSasl).await;
    let vs = victim.open_session(None, &[]).await.unwrap();
    let bs = bystander.open_session(None, &[]).await.unwrap();
    let bop = bystander.execute(&bs, "select id from range(50000)").await.unwrap();
    let first = bystander.fetch(&bop, 1000).await.unwrap();
    let op = victim.execute(&vs, "select crash()").await.unwrap();
    let r = victim.fetch(&op, 100).await;
    assert!(r.is_err(), "the victim gets an error, got {r:?}");
    // The bystander's session and operation carry on, on the same backend.
    let rest = bystander.fetch_all_i64(&bop).await.unwrap();
    assert_eq!(first.0[0].len() + rest.len(), 50000);
    // The victim can reconnect and use its session again (Impala sessions outlive connections).
    let mut again = connect(&proxy, &ClientAuth::NoSasl).await;
    let op = again.execute(&vs, "select 7").await.unwrap();
    assert_eq!(again.fetch_all_i64(&op).await.unwrap(), vec![7]);
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_nothing_else_harmed() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| c.limits.request.max_message_bytes = 4096).await;
    let mut other = connect(&proxy, &ClientAuth::NoSasl).await;
    let s2 = other.open_session(None, &[]).await.unwrap();
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = c.open_session(None, &[]).await.unwrap();
    let huge = format!("select {}", "1".repeat(10_000));
    let text = error_text(c.execute(&s, &huge).await);
    assert!(text.contains("exceeds the limit of 4096 bytes"), "{text}");
    let op = other.execute(&s2, "select 3").await.unwrap();
    assert_eq!(other.fetch_all_i64(&op).await.unwrap(), vec![3]);
}

#[tokio::test]
async fn malformed_bytes_close_only_that_connection() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut other = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = other.open_session(None, &[]).await.unwrap();
    for garbage in [
        &b"\x80\x01\x00\x01\x00\x00\x00\x07GetInfo\x00\x00\x00\x01\x63\x00\x01"[..],
        b"\x00\x00\x00\x05hello",
        b"\xff\xfe",
    ] {
        let mut raw = TcpStream::connect(proxy.local_addr).await.unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "the proxy closes a connection sending {garbage:02x?}");
    }
    // A request with a header but a bad body gets a Thrift exception naming the problem.
    let mut raw = TcpStream::connect(proxy.local_addr).await.unwrap();
    raw.write_all(b"\x80\x01\x00\x01\x00\x00\x00\x07GetInfo\x00\x00\x00\x01\x63\x00\x01").await.unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("unknown field type 99"));
    assert!(other.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.is_ok());
}

#[tokio::test]
async fn a_full_pool_gives_a_clear_error_after_the_wait() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.pool.max_per_backend = 1;
        c.pool.wait_timeout = Duration::from_millis(200);
        // Probes use connections of their own: keep them out of the count below.
        c.health.interval = Duration::from_secs(3600);
    })
    .await;
    // The first probe runs at once, on its own connection: counted before the pool's.
    let b0 = proxy.proxy.backends()[0].clone();
    eventually("the first probe ran", move || b0.last_probe.lock().unwrap().is_some()).await;
    let probes = mocks[0].connections_accepted();
    let mut a = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = a.open_session(None, &[]).await.unwrap();
    mocks[0].set_delay(Duration::from_millis(1500));
    let slow = tokio::spawn(async move { a.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.map(|_| ()) });
    let b0 = proxy.proxy.backends()[0].clone();
    eventually("the slow call holds the one connection", move || b0.pool.stats().busy() == 1).await;
    let mut b = connect(&proxy, &ClientAuth::NoSasl).await;
    let text = error_text(b.open_session(None, &[]).await);
    assert!(text.contains("upstream connections") && text.contains("busy"), "{text}");
    assert!(slow.await.unwrap().is_ok(), "the call in flight completes");
    assert_eq!(mocks[0].connections_accepted() - probes, 1, "never more than the cap");
}

#[tokio::test]
async fn abandoned_sessions_are_closed_upstream_after_the_grace_period() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    // Closed only on the impalad's word that nobody used it (tests/cleanup.rs has the rule's cases).
    mocks[0].start_web("127.0.0.1:0").await.unwrap();
    let metrics_url = mocks[0].metrics_url();
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.sessions.disconnected_grace = Duration::from_millis(300);
        c.sessions.reap_interval = Duration::from_millis(50);
        c.backends[0].metrics_url = metrics_url.as_deref().and_then(hs2_proxy::config::HttpUrl::parse);
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let kept = c.open_session(None, &[]).await.unwrap();
    let abandoned = connect(&proxy, &ClientAuth::NoSasl).await.open_session(None, &[]).await.unwrap();
    let m = mocks[0].clone();
    eventually("the abandoned session is closed upstream", || !m.has_session(&abandoned.guid)).await;
    assert!(mocks[0].has_session(&kept.guid), "a session whose connection is open stays");
    assert_eq!(proxy.proxy.session_count(), 1);
    assert!(mocks[0].calls("CloseSession") >= 1);
}

#[tokio::test]
async fn a_dead_pooled_connection_is_replaced_before_the_request_is_written() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = c.open_session(None, &[]).await.unwrap();
    mocks[0].drop_connections().await;
    let m = mocks[0].clone();
    eventually("the mock's connections are gone", || m.connections() == 0).await;
    // The pooled connection is dead; the call must still go through, exactly once.
    let before = mocks[0].calls("GetInfo");
    assert!(c.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.is_ok());
    assert_eq!(mocks[0].calls("GetInfo"), before + 1);
}

#[tokio::test]
async fn unknown_methods_reach_a_backend_and_its_answer_comes_back() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let r = c.call_named::<_, TStatus>("NoSuchMethod", &TI32Value::new(1)).await;
    match r {
        Err(ClientError::Exception(m)) => assert!(m.contains("NoSuchMethod"), "{m}"),
        other => panic!("expected the backend's exception, got {other:?}"),
    }
}
