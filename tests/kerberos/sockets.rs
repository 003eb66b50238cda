//! The socket helpers (`sasl::server_read_start`, `server_accept_gssapi`, `client_handshake_gssapi`) and
//! the Kerberized mock impalad, through real TCP: Impala's user rules, delegation, mechanism choice on one
//! port, errors, and the proxy's initiator outliving its TGT.

use std::time::{Duration, Instant};

use hs2_proxy::conn::ThriftConn;
use hs2_proxy::hs2client::{ClientAuth, ClientError, Hs2Client};
use hs2_proxy::kerberos::principal::ShortNames;
use hs2_proxy::kerberos::testkdc;
use hs2_proxy::sasl::{self, Mechanism, SaslError};
use hs2_proxy::thrift::framing::Framing;
use tokio::net::TcpListener;

use super::{connect_gssapi, gss, impala_acceptor, kerberized_mock, proxy_initiator, query_string, user_initiator};

const TARGET: &str = "impala/localhost@EXAMPLE.TEST";

fn status_text(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Status { message, .. }) => message,
        other => panic!("expected an HS2 error status, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn the_mock_binds_sessions_to_the_principals_short_name() {
    let mock = kerberized_mock("").await;
    let mut alice = connect_gssapi(mock.local_addr(), &user_initiator("alice"), TARGET).await.unwrap();
    // OpenSession's username is ignored with Kerberos: the principal decides.
    let session = alice.open_session(Some("mallory"), &[]).await.unwrap();
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"));
    assert_eq!(query_string(&mut alice, &session, "select current_user()").await, "alice");
    assert_eq!(query_string(&mut alice, &session, "select user()").await, "alice");
    // Hue's pattern: the same user's session from a new connection.
    let mut again = connect_gssapi(mock.local_addr(), &user_initiator("alice"), TARGET).await.unwrap();
    assert_eq!(query_string(&mut again, &session, "select effective_user()").await, "alice");
    // Bob cannot use alice's session.
    let mut bob = connect_gssapi(mock.local_addr(), &user_initiator("bob"), TARGET).await.unwrap();
    let text = status_text(bob.execute(&session, "select 1").await);
    assert_eq!(text, "The user authorized on the connection 'bob' does not match the session's user 'alice'");
}

#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn delegation_needs_an_authorised_proxy_user() {
    let mock = kerberized_mock("hs2proxy=*;hue=alice").await;
    let proxy = proxy_initiator();
    let mut c = connect_gssapi(mock.local_addr(), &proxy, TARGET).await.unwrap();
    let session = c.open_session(None, &[("impala.doas.user", "bob")]).await.unwrap();
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("hs2proxy"));
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("bob"));
    assert_eq!(query_string(&mut c, &session, "select current_user()").await, "bob", "current_user() is effective");
    assert_eq!(query_string(&mut c, &session, "select user()").await, "hs2proxy", "user() is the connected one");
    // Any connection of the proxy's principal may carry the session (a pool).
    let mut pooled = connect_gssapi(mock.local_addr(), &proxy, TARGET).await.unwrap();
    assert_eq!(query_string(&mut pooled, &session, "select current_user()").await, "bob");
    // The delegated user itself may not (Impala checks the connected user).
    let mut bob = connect_gssapi(mock.local_addr(), &user_initiator("bob"), TARGET).await.unwrap();
    assert!(status_text(bob.execute(&session, "select 1").await).contains("'bob' does not match"));
    // A user without a rule, and a proxy beyond its list.
    let text = status_text(bob.open_session(None, &[("impala.doas.user", "alice")]).await);
    assert_eq!(text, "User 'bob' is not authorized to delegate to 'alice'.");
    let mock_off = kerberized_mock("").await;
    let mut c = connect_gssapi(mock_off.local_addr(), &proxy, TARGET).await.unwrap();
    let text = status_text(c.open_session(None, &[("impala.doas.user", "alice")]).await);
    assert!(text.ends_with("User delegation is disabled."), "{text}");
}

#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn handshake_failures_are_explained_to_the_client() {
    let mock = kerberized_mock("").await;
    // A ticket for another service: the server's reason reaches the client.
    match connect_gssapi(mock.local_addr(), &proxy_initiator(), "hive/localhost").await {
        Err(SaslError::Refused(text)) => assert!(text.contains("hive/localhost@EXAMPLE.TEST"), "{text}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // PLAIN against a Kerberos-only impalad.
    let plain = ClientAuth::Plain { user: "alice".into(), password: "pw".into() };
    match Hs2Client::connect(mock.local_addr(), &plain).await {
        Err(ClientError::Sasl(SaslError::Refused(text))) => assert!(text.contains("PLAIN is not supported"), "{text}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // An unknown service: the KDC says so before anything is sent.
    let e = connect_gssapi(mock.local_addr(), &proxy_initiator(), "nosuch/localhost").await.err().unwrap();
    assert!(e.to_string().contains("not found in Kerberos database"), "{e}");
    // The mock is still fine.
    let mut c = connect_gssapi(mock.local_addr(), &proxy_initiator(), TARGET).await.unwrap();
    c.open_session(None, &[]).await.unwrap();
}

/// One listener, three mechanisms: what START names decides (PLAIN and GSSAPI; a server that does not
/// offer GSSAPI refuses it by name).
#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn the_mechanism_in_start_decides() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = impala_acceptor();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for offer_gssapi in [true, true, false] {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = ThriftConn::new(Box::new(stream), Framing::Unframed, 1 << 20);
            let who = match sasl::server_read_start(&mut conn, offer_gssapi).await {
                Ok(Mechanism::Plain(creds)) => {
                    sasl::server_finish(&mut conn, Ok(()), 1 << 20).await.unwrap();
                    format!("plain:{}", creds.user)
                }
                Ok(Mechanism::Gssapi) => {
                    let names = ShortNames::default();
                    let user = sasl::server_accept_gssapi(&mut conn, &acceptor, &names, 1 << 20).await.unwrap();
                    format!("gssapi:{}:{}", user.principal, user.short_name)
                }
                Err(e) => format!("refused:{e}"),
            };
            seen.push(who);
        }
        seen
    });
    let connect = || async {
        ThriftConn::new(Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()), Framing::Unframed, 1 << 20)
    };
    let mut plain = connect().await;
    sasl::client_handshake(&mut plain, "carol", "pw", 1 << 20).await.unwrap();
    let mut krb = connect().await;
    sasl::client_handshake_gssapi(&mut krb, &user_initiator("alice"), TARGET, 1 << 20).await.unwrap();
    let mut refused = connect().await;
    let e = sasl::client_handshake_gssapi(&mut refused, &user_initiator("alice"), TARGET, 1 << 20).await.unwrap_err();
    assert!(e.to_string().contains("GSSAPI") && e.to_string().contains("supported: PLAIN"), "{e}");
    let seen = server.await.unwrap();
    assert_eq!(seen[..2], ["plain:carol".to_string(), "gssapi:alice@EXAMPLE.TEST:alice".to_string()]);
    assert!(seen[2].starts_with("refused:SASL mechanism \"GSSAPI\" is not supported here"), "{}", seen[2]);
}

/// The proxy's initiator gets its TGT from its keytab, and a new one when it expires; a kinit'd
/// ccache with the same lifetime stops working (the control: expiry really bites).
#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn the_proxys_initiator_outlives_its_tickets() {
    const LIFE: Duration = Duration::from_secs(4);
    let kdc = testkdc::shared();
    let keytab = kdc.add_principal("hs2proxy-renew", Some(LIFE)).unwrap();
    kdc.add_principal("kinit-short", Some(LIFE)).unwrap();
    let renewing = gss().initiator_with_keytab("hs2proxy-renew", &keytab).unwrap();
    let kinit = user_initiator("kinit-short");
    let mock = kerberized_mock("").await;
    let t0 = Instant::now();
    for cred in [&renewing, &kinit] {
        let mut c = connect_gssapi(mock.local_addr(), cred, TARGET).await.unwrap();
        c.open_session(None, &[]).await.unwrap();
    }
    // Waiting for the tickets' end time: there is no event to await.
    tokio::time::sleep((LIFE + Duration::from_secs(1)).saturating_sub(t0.elapsed())).await;
    let e = connect_gssapi(mock.local_addr(), &kinit, TARGET).await.err().expect("an expired ccache fails");
    assert!(e.to_string().contains("expired"), "{e}");
    let mut c = connect_gssapi(mock.local_addr(), &renewing, TARGET).await.expect("the keytab initiator renews");
    let session = c.open_session(None, &[]).await.unwrap();
    assert_eq!(query_string(&mut c, &session, "select current_user()").await, "hs2proxy-renew");
    let log = std::fs::read_to_string(kdc.dir().join("kdc.log")).unwrap();
    let tgts =
        log.lines().filter(|l| l.contains("AS_REQ") && l.contains("ISSUE") && l.contains("hs2proxy-renew@")).count();
    assert!(tgts >= 2, "the initiator fetched {tgts} TGT(s) from its keytab; it must renew:\n{}", kdc.log_tail());
}

/// One initiator shared by many concurrent handshakes (a pool filling up), on a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn one_initiator_serves_concurrent_handshakes() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_initiator();
    let t0 = Instant::now();
    let handshakes: Vec<_> = (0..32)
        .map(|i| {
            let (proxy, addr) = (proxy.clone(), mock.local_addr());
            tokio::spawn(async move {
                let mut c = connect_gssapi(addr, &proxy, TARGET).await.expect("handshake");
                let user = format!("user{i}");
                let session = c.open_session(None, &[("impala.doas.user", &user)]).await.expect("open");
                assert_eq!(query_string(&mut c, &session, "select current_user()").await, user);
            })
        })
        .collect();
    for h in handshakes {
        h.await.expect("a handshake task");
    }
    assert_eq!(mock.kerberos_logins().len(), 32);
    println!("32 concurrent Kerberos handshakes + sessions: {:.0} ms", t0.elapsed().as_secs_f64() * 1000.0);
}
