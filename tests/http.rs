//! HS2 over HTTP on both sides: HTTP clients through the shared routing to binary mocks, the proxy's
//! cookie, 401s, binary clients to HTTP backends (a second proxy's HTTP front), and what an HTTP backend
//! receives (X-Forwarded-For, Basic auth, its own cookies on its own connections only).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::pki::{client_via, creds, Via};
use common::*;
use hs2_proxy::config::{BackendConfig, BackendTransport, UpstreamConfig, UpstreamTransport};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::reply;
use hs2_proxy::hs2::rpc::{self, hs2::*, Response};
use hs2_proxy::hs2client::{open_session_req, session_handle, ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;
use hs2_proxy::thrift::Limits;
use http::header::{HeaderMap, AUTHORIZATION, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

fn alice() -> MockAuth {
    MockAuth::Plain { users: Some(vec![("alice".into(), "secret".into())]) }
}

async fn range(c: &mut Hs2Client, n: usize) -> Vec<i64> {
    let s = c.open_session(None, &[]).await.expect("open session");
    let op = c.execute(&s, &format!("select id from range({n})")).await.expect("execute");
    let rows = c.fetch_all_i64(&op).await.expect("fetch");
    c.close_session(&s).await.expect("close session");
    rows
}

#[tokio::test]
async fn http_calls_are_routed_like_binary_ones() {
    let mocks = mocks(2, alice()).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let addr = proxy.local_addr.to_string();
    let mut h =
        client_via(&addr, Via { http: Some("/cliservice"), tls: None, creds: creds("alice", "secret") }).await.unwrap();
    // 50,000 rows: a multi-megabyte reply streamed back as a chunked body.
    assert_eq!(range(&mut h, 50_000).await, (0..50_000).collect::<Vec<_>>());

    // A session opened over HTTP is used from a binary connection of the same user: one routing table.
    let s = h.open_session(None, &[]).await.unwrap();
    let mut b = connect(&proxy, &plain("alice", "secret")).await;
    let op = b.execute(&s, "select 5").await.unwrap();
    assert_eq!(b.fetch_all_i64(&op).await.unwrap(), vec![5]);
    h.close_session(&s).await.unwrap();
    for m in &mocks {
        assert!(m.sessions().is_empty(), "every session closed upstream");
    }
    assert!(mocks.iter().all(|m| m.calls("OpenSession") >= 1), "sessions balanced over both mocks");
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// One POST on a new connection.
async fn post(addr: SocketAddr, headers: &[(http::HeaderName, String)], body: Vec<u8>) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    post_on(&mut send, headers, body).await
}

async fn post_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    headers: &[(http::HeaderName, String)],
    body: Vec<u8>,
) -> Reply {
    let mut req = http::Request::post("/cliservice").header("content-type", "application/x-thrift");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = send.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

/// The response of a reply body (decoded by Apache Thrift's generated code).
fn response<R: Response>(body: &[u8]) -> R {
    let (h, _) = rpc::decode_header(body, &Limits::REPLY).expect("a Thrift reply");
    match rpc::decode_reply(body, &h.name, h.sequence_number, &Limits::REPLY).expect("a Thrift reply") {
        rpc::Reply::Ok(resp) => resp,
        rpc::Reply::Exception(e) => panic!("an exception: {e:?}"),
    }
}

/// The new session in an OpenSession reply body.
fn opened(body: &[u8]) -> HandleId {
    let open: TOpenSessionResp = response(body);
    HandleId::try_from(&open.session_handle.expect("a session").session_id).expect("a session id")
}

/// Whether a reply body's status is a success.
fn succeeded<R: Response>(body: &[u8]) -> bool {
    response::<R>(body).status().is_some_and(rpc::is_success)
}

fn basic(user: &str, password: &str) -> (http::HeaderName, String) {
    (AUTHORIZATION, hs2_proxy::http::basic_authorization(user, password))
}

fn cookie_of(r: &Reply) -> String {
    let set = r.headers.get(SET_COOKIE).expect("a Set-Cookie").to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn get_info(session: &HandleId) -> Vec<u8> {
    let req = TGetInfoReq::new(session_handle(session), TGetInfoType::CLI_SERVER_NAME);
    rpc::encode_call::<rpc::GetInfo>(2, &req).unwrap()
}

#[tokio::test]
async fn the_proxy_cookie_spares_the_password_and_bad_credentials_get_401() {
    let mocks = mocks(1, alice()).await;
    let proxy = proxy(&mocks, BackendTransport::Sasl, |_| {}).await;
    let addr = proxy.local_addr;
    let open = rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap();

    let r = post(addr, &[basic("alice", "secret")], open.clone()).await;
    assert_eq!(r.status, 200);
    let cookie = cookie_of(&r);
    assert!(cookie.starts_with("impala.auth="), "{cookie}");
    let session = opened(&r.body);

    // The cookie alone: no password, accepted, and no new cookie.
    let r = post(addr, &[(COOKIE, cookie.clone())], get_info(&session)).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get(SET_COOKIE).is_none());
    assert!(succeeded::<TGetInfoResp>(&r.body));

    // A wrong password, a forged cookie: 401 with a Basic challenge.
    let r = post(addr, &[basic("alice", "wrong")], open.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get(WWW_AUTHENTICATE).is_some());
    assert!(String::from_utf8_lossy(&r.body).contains("Invalid username or password"), "{:?}", r.body);
    let forged = cookie.replace("u=alice", "u=bob");
    assert_eq!(post(addr, &[(COOKIE, forged)], get_info(&session)).await.status, 401);

    // No credentials at all: the service user, who does not own alice's session.
    let r = post(addr, &[], get_info(&session)).await;
    assert_eq!(r.status, 200);
    assert!(!succeeded::<TGetInfoResp>(&r.body), "another user's session is refused");

    // Keep-alive: several calls on one connection; a GET is not HS2.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let r = post_on(&mut send, &[(COOKIE, cookie.clone())], get_info(&session)).await;
        assert_eq!(r.status, 200);
    }
    let close = rpc::encode_call::<rpc::CloseSession>(3, &TCloseSessionReq::new(session_handle(&session))).unwrap();
    let r = post_on(&mut send, &[(COOKIE, cookie.clone())], close).await;
    assert!(succeeded::<TCloseSessionResp>(&r.body));
    let get = http::Request::get("/").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(send.send_request(get).await.unwrap().status(), 405);
    assert!(mocks[0].sessions().is_empty());

    // A body that is not one Thrift message.
    assert_eq!(post(addr, &[], b"not thrift".to_vec()).await.status, 400);
}

/// Proxy A serves HTTP in front of the mocks; proxy B reaches A over HTTP.
async fn http_chain(mocks: &[MockImpalad], auth: BackendTransport) -> (ProxyHandle, ProxyHandle) {
    let a = proxy(mocks, auth, |_| {}).await;
    let b = proxy(&[], auth, |c| {
        let upstream = UpstreamConfig { transport: UpstreamTransport::Http, ..UpstreamConfig::default() };
        c.backends = vec![BackendConfig { upstream, ..BackendConfig::new(&a.local_addr.to_string()) }];
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn binary_clients_reach_http_backends() {
    let mocks = mocks(1, alice()).await;
    let (_a, b) = http_chain(&mocks, BackendTransport::Sasl).await;
    let mut c = connect(&b, &plain("alice", "secret")).await;
    assert_eq!(range(&mut c, 50_000).await, (0..50_000).collect::<Vec<_>>());
    assert_eq!(mocks[0].calls("OpenSession"), 1);

    // The password is checked at the end of the chain and the refusal comes back as SASL's.
    let refused = Hs2Client::connect(b.local_addr, &plain("alice", "wrong")).await;
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("credentials") || err.contains("401"), "{err}");

    // HTTP on both sides: A's cookie (for B's connection) never reaches B's client.
    let open = rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap();
    let r = post(b.local_addr, &[basic("alice", "secret")], open).await;
    let ours = cookie_of(&r);
    let session = opened(&r.body);
    let r = post(b.local_addr, &[(COOKIE, ours.clone())], get_info(&session)).await;
    assert!(succeeded::<TGetInfoResp>(&r.body));
    assert!(r.headers.get(SET_COOKIE).is_none(), "no upstream cookie is passed on");
}

#[tokio::test]
async fn nosasl_http_backends_work_without_credentials() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let (_a, b) = http_chain(&mocks, BackendTransport::Nosasl).await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    assert_eq!(range(&mut c, 10).await, (0..10).collect::<Vec<_>>());
}

/// What an HTTP backend saw: method, and the headers that matter.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    forwarded_for: Option<String>,
    cookie: Option<String>,
    authorization: Option<String>,
}

/// An HTTP "backend" that records each call and answers it with an error reply, setting its own cookie.
async fn recorder(name: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap_or("").to_string());
                    let (xff, cookie, auth) = (header("x-forwarded-for"), header("cookie"), header("authorization"));
                    let body = req.into_body().collect().await?.to_bytes();
                    let call = hs2_proxy::hs2::call::Request::parse(body, Limits::REQUEST).expect("a call");
                    log.lock().unwrap().push(Seen {
                        method: call.name().to_string(),
                        forwarded_for: xff,
                        cookie,
                        authorization: auth,
                    });
                    let bytes = reply::error_reply(call.name(), call.header.seqid, "recorded");
                    let resp = http::Response::builder()
                        .header(SET_COOKIE, format!("impala.auth={name}; Path=/"))
                        .body(Full::new(Bytes::from(bytes)))
                        .unwrap();
                    Ok::<_, hyper::Error>(resp)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn http_backends_get_forwarded_for_basic_auth_and_only_their_own_cookies() {
    let (r1, seen1) = recorder("r1").await;
    let (r2, seen2) = recorder("r2").await;
    let proxy = proxy(&[], BackendTransport::Sasl, |c| {
        let upstream = UpstreamConfig { transport: UpstreamTransport::Http, ..UpstreamConfig::default() };
        c.backends = [r1, r2]
            .iter()
            .map(|a| BackendConfig { upstream: upstream.clone(), ..BackendConfig::new(&a.to_string()) })
            .collect();
    })
    .await;
    let mut c = connect(&proxy, &plain("alice", "secret")).await;
    for _ in 0..4 {
        assert!(error_text(c.open_session(None, &[]).await).contains("recorded"));
    }
    let expected_auth = hs2_proxy::http::basic_authorization("alice", "secret");
    for (seen, own) in [(&seen1, "impala.auth=r1"), (&seen2, "impala.auth=r2")] {
        let seen = seen.lock().unwrap().clone();
        let opens: Vec<&Seen> = seen.iter().filter(|s| s.method == "OpenSession").collect();
        assert!(!opens.is_empty(), "both backends got sessions: {seen:?}");
        for s in &opens {
            assert_eq!(s.forwarded_for.as_deref(), Some("127.0.0.1"));
            assert_eq!(s.authorization.as_deref(), Some(expected_auth.as_str()));
            // The pooled connection checked the credentials first and got the backend's cookie then.
            assert_eq!(s.cookie.as_deref(), Some(own), "{seen:?}");
        }
        assert!(seen.iter().all(|s| s.cookie.as_deref().is_none_or(|c| c == own)), "cookies stay with their backend");
    }
}

#[tokio::test]
async fn an_http_backend_closing_an_idle_connection_costs_no_call() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    // A closes keep-alive connections idle for longer than its header timeout.
    let a =
        proxy(&mocks, BackendTransport::Nosasl, |c| c.timeouts.handshake = std::time::Duration::from_millis(100)).await;
    let b = proxy(&[], BackendTransport::Nosasl, |c| {
        let upstream = UpstreamConfig { transport: UpstreamTransport::Http, ..UpstreamConfig::default() };
        c.backends = vec![BackendConfig { upstream, ..BackendConfig::new(&a.local_addr.to_string()) }];
    })
    .await;
    let mut c = connect(&b, &ClientAuth::NoSasl).await;
    let s = c.open_session(None, &[]).await.unwrap();
    let opened = b.proxy.backends()[0].pool.stats().opened;
    // Wait until A has closed B's idle connection (B's pool notices it only at the next checkout).
    let before = mocks[0].calls("GetInfo");
    let pa = a.proxy.clone();
    eventually("A closed B's idle keep-alive connection", move || pa.metrics().client_connections() == 0).await;
    c.get_info(&s, TGetInfoType::CLI_SERVER_NAME).await.expect("the call goes out on a new connection");
    assert!(mocks[0].calls("GetInfo") > before);
    assert!(b.proxy.backends()[0].pool.stats().opened > opened, "a new upstream connection was opened");
    c.close_session(&s).await.unwrap();
}
