//! Delegation without Kerberos (issue 12): `backend_auth.delegate` runs every checked PLAIN user's session
//! on the service account's connections with `impala.doas.user`; a client that delegates itself (Hue as
//! `hue` with `impala.doas.user=alice`) is honoured only when `[kerberos.proxy_users]` allows it, and that
//! section works alone (no keytab, no GSS-API). Ground truth: the mock impalad's own session users.

mod common;

use common::*;
use hs2_proxy::config::{BackendTransport, FileConfig, ServiceCredentials};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};

#[test]
fn a_kerberos_section_may_hold_only_proxy_users() {
    let c = FileConfig::parse("[kerberos.proxy_users]\nhue = \"*\"\n").and_then(FileConfig::validate).unwrap();
    let k = c.kerberos.expect("the section");
    assert!(k.acceptor.is_none() && k.upstream.is_none());
    assert!(k.proxy_users.authorize("hue", "alice").is_ok());
    let e = FileConfig::parse("[kerberos]\n").and_then(FileConfig::validate).unwrap_err().to_string();
    assert!(e.starts_with("kerberos: set keytab"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_delegates_checked_users_and_proxy_users_decide_who_may_delegate() {
    let mut cfg = MockConfig { name: "mock-0".into(), auth: MockAuth::Plain { users: None }, ..MockConfig::default() };
    cfg.authorized_proxy_users.allow("svc", ["*"]);
    let mock = MockImpalad::start("127.0.0.1:0", cfg).await.unwrap();
    let proxy = proxy(std::slice::from_ref(&mock), BackendTransport::Sasl, |c| {
        c.backend_auth.delegate = true;
        c.backend_auth.service = ServiceCredentials { user: "svc".into(), password: "svc-pw".into() };
        let file = FileConfig::parse("[kerberos.proxy_users]\nhue = \"*\"\n").and_then(FileConfig::validate);
        c.kerberos = file.unwrap().kerberos;
    })
    .await;
    // A checked user runs as itself on the service account's connection.
    let mut bob = connect(&proxy, &plain("bob", "bob-pw")).await;
    let s = bob.open_session(None, &[]).await.unwrap();
    assert_eq!(mock.session_effective_user(&s.guid).as_deref(), Some("bob"));
    // Hue delegates alice: allowed by proxy_users.
    let mut hue = connect(&proxy, &plain("hue", "hue-pw")).await;
    let s = hue.open_session(None, &[("impala.doas.user", "alice")]).await.unwrap();
    assert_eq!(mock.session_effective_user(&s.guid).as_deref(), Some("alice"));
    // bob may not delegate: Impala's own text, and nothing reaches the impalad.
    let opened = mock.calls("OpenSession");
    let text = error_text(bob.open_session(None, &[("impala.doas.user", "alice")]).await);
    assert_eq!(text, "User 'bob' is not authorized to delegate to 'alice'.");
    assert_eq!(mock.calls("OpenSession"), opened);
}
