//! TLS on the proxy's listener (binary HS2 over TLS, SASL inside it), certificate reload, and TLS towards
//! backends (the backend being a second proxy with a TLS listener in front of mock impalads).

mod common;

use std::time::Duration;

use common::pki::{client_tls, client_via, creds, write_pki, Via};
use common::*;
use hs2_proxy::config::{BackendConfig, BackendTransport, TlsListenConfig, UpstreamConfig, UpstreamTransport};
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::MockAuth;
use hs2_proxy::server::ProxyHandle;
use hs2_proxy::tls::{UpstreamTls, UpstreamTlsSettings};

fn tls_on(c: &mut hs2_proxy::config::Config, pki: &common::pki::Pki, allow_plaintext: bool) {
    c.tls = Some(TlsListenConfig { cert_file: pki.cert.clone(), key_file: pki.key.clone(), allow_plaintext });
}

async fn select_one(c: &mut Hs2Client) -> Vec<i64> {
    let s = c.open_session(None, &[]).await.expect("open session");
    let op = c.execute(&s, "select 7").await.expect("execute");
    let rows = c.fetch_all_i64(&op).await.expect("fetch");
    c.close_session(&s).await.expect("close session");
    rows
}

#[tokio::test]
async fn binary_hs2_over_tls_nosasl_and_sasl_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let mocks = mocks(2, MockAuth::Plain { users: Some(vec![("alice".into(), "secret".into())]) }).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |c| tls_on(c, &pki, false)).await;
    let addr = proxy.local_addr.to_string();

    let tls = || Some(client_tls(&pki.ca));
    let mut c = client_via(&addr, Via { http: None, tls: tls(), creds: creds("alice", "secret") }).await.unwrap();
    assert_eq!(select_one(&mut c).await, vec![7]);
    for m in &mocks {
        for s in m.sessions() {
            assert_eq!(m.session_user(&s).as_deref(), Some("alice"));
        }
    }
    let refused = client_via(&addr, Via { http: None, tls: tls(), creds: creds("alice", "wrong") }).await;
    let refused = refused.err().unwrap_or_default();
    assert!(refused.contains("Invalid username or password"), "a wrong password is refused over TLS: {refused:?}");

    // Without TLS: the proxy closes the connection.
    let mut plain = Hs2Client::connect(proxy.local_addr, &ClientAuth::NoSasl).await.unwrap();
    plain.set_timeout(Some(Duration::from_secs(10)));
    assert!(plain.open_session(None, &[]).await.is_err());
}

#[tokio::test]
async fn plaintext_is_served_next_to_tls_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| tls_on(c, &pki, true)).await;
    let mut plain = connect(&proxy, &ClientAuth::NoSasl).await;
    assert_eq!(select_one(&mut plain).await, vec![7]);
    let mut tls =
        client_via(&proxy.local_addr.to_string(), Via { http: None, tls: Some(client_tls(&pki.ca)), creds: None })
            .await
            .unwrap();
    assert_eq!(select_one(&mut tls).await, vec![7]);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_pki(dir.path(), "");
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| tls_on(c, &old, false)).await;
    let addr = proxy.local_addr.to_string();
    let via = |ca: &std::path::Path| Via { http: None, tls: Some(client_tls(ca)), creds: None };
    assert!(client_via(&addr, via(&old.ca)).await.is_ok());

    // A new CA and certificate replace the files in place (as a renewal does).
    let new = write_pki(dir.path(), "new-");
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    let mut served_new = false;
    for _ in 0..100 {
        if client_via(&addr, via(&new.ca)).await.is_ok() {
            served_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_new, "the renewed certificate is served");
    let stale = client_via(&addr, via(&old.ca)).await;
    assert!(stale.err().is_some_and(|e| e.contains("TLS")), "clients trusting only the old CA now fail");
}

/// Proxy A terminates TLS in front of the mocks; proxy B reaches A over TLS (binary or HTTP).
async fn chain(
    pki: &common::pki::Pki,
    upstream_tls: UpstreamTls,
) -> (Vec<hs2_proxy::mock::MockImpalad>, ProxyHandle, ProxyHandle) {
    chain_over(pki, upstream_tls, UpstreamTransport::Binary).await
}

async fn chain_over(
    pki: &common::pki::Pki,
    upstream_tls: UpstreamTls,
    transport: UpstreamTransport,
) -> (Vec<hs2_proxy::mock::MockImpalad>, ProxyHandle, ProxyHandle) {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let a = proxy(&mocks, BackendTransport::Nosasl, |c| tls_on(c, pki, false)).await;
    let b = proxy(&[], BackendTransport::Nosasl, |c| {
        let upstream = UpstreamConfig { tls: Some(upstream_tls), transport, ..UpstreamConfig::default() };
        c.backends = vec![BackendConfig { upstream, ..BackendConfig::new(&a.local_addr.to_string()) }];
    })
    .await;
    (mocks, a, b)
}

#[tokio::test]
async fn tls_to_backends_verifies_the_certificate_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let stranger = write_pki(dir.path(), "other-");

    let (mocks, _a, b) = chain(&pki, client_tls(&pki.ca)).await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    assert_eq!(select_one(&mut c).await, vec![7]);
    assert_eq!(mocks[0].calls("OpenSession"), 1);

    let (mocks, _a, b) = chain(&pki, client_tls(&stranger.ca)).await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    let err = error_text(c.open_session(None, &[]).await);
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(mocks[0].calls("OpenSession"), 0);

    let unverified = UpstreamTlsSettings { server_name: "127.0.0.1", verify: false, ..Default::default() };
    let (mocks, _a, b) = chain(&pki, UpstreamTls::new(&unverified).unwrap()).await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    assert_eq!(select_one(&mut c).await, vec![7]);
    assert_eq!(mocks[0].calls("OpenSession"), 1);
}

#[tokio::test]
async fn https_to_backends() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path(), "");
    let (mocks, _a, b) = chain_over(&pki, client_tls(&pki.ca), UpstreamTransport::Http).await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    assert_eq!(select_one(&mut c).await, vec![7]);
    assert_eq!(mocks[0].calls("ExecuteStatement"), 1);
}
