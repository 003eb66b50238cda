//! Session-aware routing through real sockets: the proxy in front of mock impalads.

mod common;

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
use hs2_proxy::hs2client::ClientAuth;
use hs2_proxy::mock::MockAuth;

/// Hue's pattern: sessions opened on connections that close, then used from new connections; operations
/// polled, fetched and closed on yet other connections; CloseSession from another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hue_pattern_sessions_follow_their_impalad_across_connections() {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let auth = ClientAuth::NoSasl;
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let mut c = connect(&proxy, &auth).await;
        sessions.push(c.open_session(Some("hue"), &[("idle_session_timeout", "900")]).await.unwrap());
    }
    let per_mock: Vec<usize> = mocks.iter().map(|m| m.sessions().len()).collect();
    assert_eq!(per_mock, vec![10, 10, 10], "sessions spread evenly");
    for (i, s) in sessions.iter().enumerate() {
        let n = 100 + i as i64;
        let op = connect(&proxy, &auth).await.execute(s, &format!("select id from range({n})")).await.unwrap();
        connect(&proxy, &auth).await.wait_finished(&op).await.unwrap();
        let ids = connect(&proxy, &auth).await.fetch_all_i64(&op).await.unwrap();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        connect(&proxy, &auth).await.close_operation(&op).await.unwrap();
        connect(&proxy, &auth).await.close_session(s).await.unwrap();
    }
    assert!(mocks.iter().all(|m| m.sessions().is_empty() && m.open_operations() == 0));
    assert_eq!(proxy.proxy.session_count(), 0);
    assert_eq!(proxy.proxy.operation_count(), 0);
    for b in proxy.proxy.backends() {
        assert_eq!(proxy.proxy.load(b.id).sessions, 0);
    }
}

#[tokio::test]
async fn unknown_handles_get_hue_healing_texts() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let stranger = HandleId::random();
    let text = error_text(c.execute(&stranger, "select 1").await);
    assert_eq!(text, format!("Invalid session id: {}", stranger.guid.impala_id()));
    let s = c.open_session(None, &[]).await.unwrap();
    let mut op = c.execute(&s, "select 1").await.unwrap();
    op.id.guid = hs2_proxy::hs2::handle::Guid::random();
    op.id.secret = HandleId::random().secret;
    let text = error_text(c.fetch(&op, 10).await);
    assert!(text.starts_with("Invalid or unknown query handle: "), "{text}");
    // The connection is still usable after error replies.
    assert!(c.get_info(&s, TGetInfoType::CLI_DBMS_VER).await.is_ok());
}

#[tokio::test]
async fn closed_sessions_are_forgotten_and_refused() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = c.open_session(None, &[]).await.unwrap();
    c.close_session(&s).await.unwrap();
    assert_eq!(proxy.proxy.session_count(), 0);
    let text = error_text(c.execute(&s, "select 1").await);
    assert!(text.starts_with("Invalid session id: "), "{text}");
}

#[tokio::test]
async fn operations_of_unseen_sessions_route_by_secret() {
    // An operation the proxy never saw (e.g. created before a restart) carries its session's secret.
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |_| {}).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let s = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&s, "select id from range(5)").await.unwrap();
    assert_eq!(op.id.secret, s.secret, "the mock follows Impala's rule");
    // Forget the operation only; the session stays known.
    proxy.proxy.forget_operation(&op.id.guid);
    assert_eq!(connect(&proxy, &ClientAuth::NoSasl).await.fetch_all_i64(&op).await.unwrap(), vec![0, 1, 2, 3, 4]);
}
