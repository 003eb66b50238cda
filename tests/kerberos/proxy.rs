//! Kerberos through the proxy: clients authenticate to hs2-proxy with SASL GSSAPI or HTTP Negotiate, the
//! proxy authenticates to a Kerberized mock impalad as its own principal (`hs2proxy`) and delegates each
//! session's user (`impala.doas.user`). Real KDC, real GSS-API, real sockets.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hs2_proxy::config::{BackendConfig, Config, FileConfig};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::idl::names;
use hs2_proxy::hs2::requests;
use hs2_proxy::hs2::rpc::{self, hs2::TOpenSessionResp, Reply};
use hs2_proxy::hs2client::{open_session_req, ClientAuth, ClientError, Hs2Client};
use hs2_proxy::kerberos::testkdc::{self, TestKdc};
use hs2_proxy::kerberos::Step;
use hs2_proxy::mock::MockImpalad;
use hs2_proxy::server::{self, ProxyHandle};
use hs2_proxy::thrift::Limits;

use super::{connect_gssapi, kerberized_mock, query_string, user_initiator};

const PROXY_SERVICE: &str = "impala/localhost@EXAMPLE.TEST";

/// The proxy's `[kerberos]` section: it accepts `impala/localhost` (and `HTTP/localhost` for Negotiate)
/// and authenticates upstream as `client` (default `hs2proxy`).
fn kerberos_config(client: &str, proxy_users: &str) -> Config {
    let kdc = testkdc::shared();
    let accept = kdc.merged_keytab(&["impala/localhost", "HTTP/localhost"], "proxy-accept.keytab").unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[health]\ninterval = \"1h\"\n\
         [backend_auth]\ntransport = \"gssapi\"\n\
         [kerberos]\nkeytab = {:?}\nservice_principal = \"impala/localhost\"\nclient_principal = {client:?}\n\
         client_keytab = {:?}\nbackend_principal = \"impala/localhost\"\n[kerberos.proxy_users]\n{proxy_users}\n",
        accept.display().to_string(),
        kdc.keytab(client).display().to_string(),
    );
    FileConfig::parse(&text).and_then(FileConfig::validate).expect("the Kerberos config validates")
}

async fn proxy_in_front_of(mock: &MockImpalad, mut config: Config) -> ProxyHandle {
    config.backends = vec![BackendConfig::new(&mock.local_addr().to_string())];
    server::start(config).await.expect("the proxy acquires its credentials and starts")
}

pub fn status_text(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Status { message, .. }) => message,
        other => panic!("expected an HS2 error status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn a_kerberos_client_runs_as_itself_through_the_proxy() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy", "")).await;
    let mut alice = connect_gssapi(proxy.local_addr, &user_initiator("alice"), PROXY_SERVICE).await.unwrap();
    let session = alice.open_session(Some("mallory"), &[]).await.unwrap();
    assert_eq!(query_string(&mut alice, &session, "select current_user()").await, "alice");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("hs2proxy"), "the impalad sees the proxy");
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("alice"), "running as alice");
    let view = proxy.proxy.sessions();
    assert_eq!(view[0].users.owner.as_deref(), Some("alice"));
    assert_eq!(view[0].users.effective_user.as_deref(), Some("alice"));

    // Hue's pattern: the session from new connections of the same principal.
    let mut again = connect_gssapi(proxy.local_addr, &user_initiator("alice"), PROXY_SERVICE).await.unwrap();
    assert_eq!(query_string(&mut again, &session, "select current_user()").await, "alice");
    // Bob cannot use alice's session: refused by the proxy, as an unknown session.
    let mut bob = connect_gssapi(proxy.local_addr, &user_initiator("bob"), PROXY_SERVICE).await.unwrap();
    assert!(status_text(bob.execute(&session, "select 1").await).starts_with("Invalid session id"));
    let bobs = bob.open_session(None, &[]).await.unwrap();
    assert_eq!(query_string(&mut bob, &bobs, "select current_user()").await, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn a_client_that_delegates_itself_needs_a_proxy_users_rule() {
    let kdc = testkdc::shared();
    kdc.add_principal("hue", None).unwrap();
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy", "hue = \"*\"")).await;
    let mut hue = connect_gssapi(proxy.local_addr, &user_initiator("hue"), PROXY_SERVICE).await.unwrap();
    let s = hue.open_session(None, &[("impala.doas.user", "alice")]).await.unwrap();
    assert_eq!(query_string(&mut hue, &s, "select current_user()").await, "alice");
    assert_eq!(proxy.proxy.sessions()[0].users.effective_user.as_deref(), Some("alice"));
    // Hive's key from a client is checked the same way (and never passed on as sent).
    let s = hue.open_session(None, &[("hive.server2.proxy.user", "bob")]).await.unwrap();
    assert_eq!(query_string(&mut hue, &s, "select current_user()").await, "bob");
    let mut bob = connect_gssapi(proxy.local_addr, &user_initiator("bob"), PROXY_SERVICE).await.unwrap();
    let text = status_text(bob.open_session(None, &[("impala.doas.user", "alice")]).await);
    assert_eq!(text, "User 'bob' is not authorized to delegate to 'alice'.");
    assert_eq!(mock.sessions().len(), 2, "the refused OpenSession never reached the impalad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn password_and_anonymous_clients_are_refused_with_the_reason() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy", "")).await;
    let plain = ClientAuth::Plain { user: "alice".into(), password: "pw".into() };
    match Hs2Client::connect(proxy.local_addr, &plain).await {
        Err(ClientError::Sasl(e)) => assert!(e.to_string().contains("cannot check passwords"), "{e}"),
        other => panic!("PLAIN accepted: {:?}", other.map(|_| ())),
    }
    let mut anonymous = Hs2Client::connect(proxy.local_addr, &ClientAuth::NoSasl).await.unwrap();
    let text = status_text(anonymous.open_session(None, &[]).await);
    assert!(text.contains("clients must authenticate"), "{text}");
    // A ticket for another service is refused during the handshake, with the acceptor's reason.
    match connect_gssapi(proxy.local_addr, &user_initiator("alice"), "hive/localhost").await {
        Err(e) => assert!(e.to_string().contains("hive/localhost"), "{e}"),
        Ok(_) => panic!("a ticket for hive/localhost was accepted"),
    }
    assert!(mock.sessions().is_empty());
}

/// Every upstream connection is the proxy's own: fifty users share a handful of pooled connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn fifty_kerberos_users_share_the_pool() {
    let kdc = testkdc::shared();
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy", "")).await;
    let users: Vec<String> = (0..50).map(|i| format!("user{i:02}")).collect();
    for u in &users {
        kdc.add_principal(u, None).unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in users.chunks(10) {
        let chunk = chunk.to_vec();
        let addr = proxy.local_addr;
        tasks.spawn(async move {
            for u in chunk {
                let mut c = connect_gssapi(addr, &user_initiator(&u), PROXY_SERVICE).await.unwrap();
                let s = c.open_session(None, &[]).await.unwrap();
                assert_eq!(query_string(&mut c, &s, "select current_user()").await, u);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let stats = proxy.proxy.backends()[0].pool.stats();
    println!("50 Kerberos users, 10 at a time: {} upstream connections opened, {} open", stats.opened, stats.total);
    assert_eq!(mock.sessions().len(), 50);
    assert!(stats.total <= 10, "no connection per user: {stats:?}");
}

/// HTTP Negotiate: a SPNEGO token for HTTP/localhost authenticates the request; the proxy's cookie then
/// stands for the user on later requests, with no ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn http_negotiate_then_the_proxys_cookie() {
    let mock = kerberized_mock("hs2proxy=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy", "")).await;
    let alice = user_initiator("alice");
    let Step::Continue(token) = alice.client_context("HTTP/localhost").unwrap().step(b"").unwrap() else {
        panic!("a Kerberos initial token")
    };
    let negotiate = format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token));
    let open = rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap();
    let (status, headers, body) = post(proxy.local_addr, &[("authorization", negotiate.as_str())], open).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let cookie = headers.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).expect("the proxy's cookie");
    let Ok(Reply::Ok(opened)) = rpc::decode_reply::<TOpenSessionResp>(&body, names::OPEN_SESSION, 1, &Limits::REPLY)
    else {
        panic!("an OpenSession reply")
    };
    let session = HandleId::try_from(&opened.session_handle.expect("a session handle").session_id).unwrap();
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("alice"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let get_info = requests::get_info(&session, 18, 2);
    let (status, _, _) = post(proxy.local_addr, &[("cookie", cookie.as_str())], get_info).await;
    assert_eq!(status, 200, "the cookie alone serves alice's session");
    let (status, headers, _) =
        post(proxy.local_addr, &[], rpc::encode_call::<rpc::OpenSession>(3, &open_session_req(None, &[])).unwrap())
            .await;
    assert_eq!(status, 401);
    assert!(headers.iter().any(|(k, v)| k == "www-authenticate" && v == "Negotiate"), "{headers:?}");
}

/// The proxy's TGT lasts seconds here; connections opened after it expired still authenticate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn the_proxys_tickets_are_renewed_from_its_keytab() {
    let kdc = testkdc::shared();
    kdc.add_principal("hs2proxy-short", Some(Duration::from_secs(3))).unwrap();
    let mock = kerberized_mock("hs2proxy-short=*").await;
    let proxy = proxy_in_front_of(&mock, kerberos_config("hs2proxy-short", "")).await;
    let mut alice = connect_gssapi(proxy.local_addr, &user_initiator("alice"), PROXY_SERVICE).await.unwrap();
    let session = alice.open_session(None, &[]).await.unwrap();
    let opened = proxy.proxy.backends()[0].pool.stats().opened;
    let started = Instant::now();
    // Past the TGT's life (a KDC ticket's clock is real time), then force new upstream connections.
    tokio::time::sleep(Duration::from_secs(4)).await;
    mock.drop_connections().await;
    for _ in 0..200 {
        if mock.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(query_string(&mut alice, &session, "select current_user()").await, "alice");
    assert!(proxy.proxy.backends()[0].pool.stats().opened > opened, "a new upstream connection authenticated");
    assert!(started.elapsed() > Duration::from_secs(3));
    let _ = TestKdc::principal("alice");
}

/// One HTTP POST with `headers`; status, lower-cased headers, body.
pub async fn post(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req =
        http::Request::post("/cliservice").header("host", "localhost").header("content-type", "application/x-thrift");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp =
        sender.send_request(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let hs = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, hs, body)
}
