//! Impala's trusted hop (`backend_auth.trusted_header`): the proxy authenticates clients itself and asserts
//! each user to impalad's hs2-http port with `Basic <user>:` and the header impalad's
//! `--trusted_auth_header` names. The mock's hs2-http port applies impalad's rules (`mock::hs2_http`).
//!
//! Fast tests use the proxy's own cookie (signed with a shared `http.cookie_secret_file`, as a sibling
//! instance that authenticated the user would sign it): no KDC. The Kerberos test (GSSAPI clients) is
//! `#[ignore]`d and run by `scripts/test.sh` after `scripts/setup-kerberos.sh`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use common::{base_config, plain};
use hs2_proxy::config::{BackendConfig, BackendTransport, Config, FileConfig, UpstreamConfig, UpstreamTransport};
use hs2_proxy::frontend::cookie::CookieSigner;
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::{self, hs2::*, Method, Response};
use hs2_proxy::hs2client::{open_session_req, session_handle, ClientAuth, ClientError, Hs2Client};
use hs2_proxy::kerberos::delegation::ProxyUsers;
use hs2_proxy::mock::hs2_http::{HttpLogin, HttpVia};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::server::{self, ProxyHandle};
use hs2_proxy::thrift::Limits;
use http::header::{HeaderMap, AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use http::HeaderName;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const TRUSTED: &str = "X-Trusted-Proxy-Auth-Header";
const SECRET: &str = "a-cookie-secret-shared-by-the-instances";

/// An LDAP impalad (password users alice/secret) whose hs2-http port trusts [`TRUSTED`];
/// `proxy_users`: its `--authorized_proxy_user_config`.
async fn impalad(proxy_users: &str, trusted: Option<&str>) -> (MockImpalad, SocketAddr) {
    let auth = MockAuth::Plain { users: Some(vec![("alice".into(), "secret".into())]) };
    let authorized_proxy_users = ProxyUsers::parse_impala_flag(proxy_users).unwrap();
    let cfg = MockConfig { name: "impalad".into(), auth, authorized_proxy_users, ..MockConfig::default() };
    let mock = MockImpalad::start("127.0.0.1:0", cfg).await.expect("mock starts");
    let http = mock.start_http("127.0.0.1:0", trusted).await.expect("hs2-http port starts");
    (mock, http)
}

struct Setup {
    _dir: tempfile::TempDir,
    secret_file: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("cookie.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    Setup { _dir: dir, secret_file }
}

/// The proxy's configuration for the trusted hop to `backend`, as an operator writes it (validated).
fn trusted_config(s: &Setup, backend: SocketAddr, extra: &str) -> Config {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nbackends = [{{ addr = \"{backend}\", transport = \"http\" }}]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[health]\ninterval = \"1h\"\n\
         [backend_auth]\ntransport = \"sasl\"\nuser = \"hs2proxy\"\ntrusted_header = \"{TRUSTED}\"\n\
         [http]\ncookie_secret_file = {:?}\n{extra}",
        s.secret_file.display().to_string()
    );
    FileConfig::parse(&text).and_then(FileConfig::validate).expect("the trusted-hop config validates")
}

/// The proxy's cookie for `user`, as an instance sharing the secret issues it after authenticating them.
fn proxy_cookie(user: &str) -> String {
    let signer = CookieSigner::new("impala.auth", Duration::from_secs(3600), Some(SECRET.as_bytes()));
    signer.issue(user, SystemTime::now(), false).split(';').next().unwrap().to_string()
}

/// HS2 over HTTP on one keep-alive connection, with fixed extra headers on every POST.
struct HttpClient {
    send: SendRequest<Full<Bytes>>,
    headers: Vec<(HeaderName, String)>,
    seqid: i32,
}

struct Posted {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpClient {
    async fn connect(addr: SocketAddr, headers: Vec<(HeaderName, String)>) -> HttpClient {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        HttpClient { send, headers, seqid: 0 }
    }

    async fn post(&mut self, body: Vec<u8>) -> Posted {
        let mut req = http::Request::post("/cliservice").header("content-type", "application/x-thrift");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        self.send.ready().await.expect("the HTTP connection is still open");
        let resp = self.send.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        Posted { status: parts.status.as_u16(), headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// One call: the response, or the error text (an HTTP status's body, or the HS2 status's message).
    async fn call<M: Method>(&mut self, req: &M::Req) -> Result<M::Resp, String> {
        self.seqid += 1;
        let posted = self.post(rpc::encode_call::<M>(self.seqid, req).unwrap()).await;
        if posted.status != 200 {
            return Err(format!("HTTP {}: {}", posted.status, String::from_utf8_lossy(&posted.body)));
        }
        let (h, _) = rpc::decode_header(&posted.body, &Limits::REPLY).expect("a Thrift reply");
        let resp: M::Resp = match rpc::decode_reply(&posted.body, &h.name, h.sequence_number, &Limits::REPLY).unwrap() {
            rpc::Reply::Ok(resp) => resp,
            rpc::Reply::Exception(e) => return Err(format!("exception: {e:?}")),
        };
        match resp.status() {
            Some(s) if !rpc::is_success(s) => Err(s.error_message.clone().unwrap_or_default()),
            _ => Ok(resp),
        }
    }

    async fn open_session(&mut self, config: &[(&str, &str)]) -> Result<HandleId, String> {
        let open = self.call::<rpc::OpenSession>(&open_session_req(Some("mallory"), config)).await?;
        Ok(HandleId::try_from(&open.session_handle.expect("a session").session_id).expect("a session id"))
    }

    async fn get_info(&mut self, session: &HandleId) -> Result<TGetInfoResp, String> {
        self.call::<rpc::GetInfo>(&TGetInfoReq::new(session_handle(session), TGetInfoType::CLI_SERVER_NAME)).await
    }
}

fn cookie_of(user: &str) -> Vec<(HeaderName, String)> {
    vec![(COOKIE, proxy_cookie(user))]
}

/// The users each hs2-http connection of the mock carried, for `users` only (probes use others).
fn users_by_connection(logins: &[HttpLogin], users: &[&str]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for l in logins {
        if let Some(u) = l.user.as_deref().filter(|u| users.contains(u)) {
            out.entry(l.connection).or_default().insert(u.to_string());
        }
    }
    out
}

#[tokio::test]
async fn cookie_users_are_asserted_to_impalad_on_connections_of_their_own() {
    let s = setup();
    let (mock, backend) = impalad("", Some(TRUSTED)).await;
    let proxy = server::start(trusted_config(&s, backend, "")).await.expect("proxy starts");
    let mut alice = HttpClient::connect(proxy.local_addr, cookie_of("alice")).await;
    let session = alice.open_session(&[]).await.expect("alice opens a session");
    // impalad's connected user is the Basic user, not OpenSession's username.
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"));
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("alice"));
    alice.get_info(&session).await.expect("alice uses her session");

    // Bob cannot use alice's session: the proxy answers as an impalad that does not know it.
    let mut bob = HttpClient::connect(proxy.local_addr, cookie_of("bob")).await;
    let refused = bob.get_info(&session).await.unwrap_err();
    assert!(refused.starts_with("Invalid session id"), "{refused}");
    let bobs = bob.open_session(&[]).await.expect("bob opens his own");
    assert_eq!(mock.session_user(&bobs.guid).as_deref(), Some("bob"));
    for _ in 0..3 {
        alice.get_info(&session).await.unwrap();
        bob.get_info(&bobs).await.unwrap();
    }

    // Every upstream connection carried one user; alice's and bob's are different connections.
    let logins = mock.http_logins();
    let by_conn = users_by_connection(&logins, &["alice", "bob"]);
    assert!(by_conn.values().all(|users| users.len() == 1), "{by_conn:?}");
    assert_eq!(by_conn.len(), 2, "one pooled connection per user: {by_conn:?}");
    // The first call of a connection is asserted (the pool's credential check); impalad answers with its
    // cookie, which the connection sends back, so later calls authenticate by impalad's cookie first.
    for conn in by_conn.keys() {
        let vias: Vec<HttpVia> = logins.iter().filter(|l| l.connection == *conn).map(|l| l.via).collect();
        assert_eq!(vias[0], HttpVia::TrustedHeader, "{vias:?}");
        assert!(vias[1..].iter().all(|v| *v == HttpVia::Cookie), "{vias:?}");
    }
    assert!(logins.iter().all(|l| l.via != HttpVia::Basic), "no password was ever checked: {logins:?}");
    let stats = proxy.proxy.backends()[0].pool.stats();
    assert_eq!(stats.total, 2, "{stats:?}");
}

#[tokio::test]
async fn password_and_unauthenticated_clients_are_refused_naming_the_setting() {
    let s = setup();
    let (mock, backend) = impalad("", Some(TRUSTED)).await;
    let proxy = server::start(trusted_config(&s, backend, "")).await.expect("proxy starts");

    // SASL PLAIN, with alice's right LDAP password: impalad would take any password with the header.
    match Hs2Client::connect(proxy.local_addr, &plain("alice", "secret")).await {
        Err(ClientError::Sasl(e)) => {
            let e = e.to_string();
            assert!(e.contains("cannot check passwords") && e.contains("backend_auth.trusted_header"), "{e}");
        }
        other => panic!("PLAIN accepted: {:?}", other.map(|_| ())),
    }
    // HTTP Basic: 401 with the reason, and no Basic challenge.
    let basic = vec![(AUTHORIZATION, hs2_proxy::http::basic_authorization("alice", "secret"))];
    let mut c = HttpClient::connect(proxy.local_addr, basic).await;
    let posted = c.post(rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap()).await;
    assert_eq!(posted.status, 401);
    assert!(String::from_utf8_lossy(&posted.body).contains("cannot check passwords"), "{:?}", posted.body);
    assert!(posted.headers.get_all(WWW_AUTHENTICATE).iter().all(|v| !v.as_bytes().starts_with(b"Basic")));

    // NOSASL and HTTP without credentials.
    let mut nosasl = Hs2Client::connect(proxy.local_addr, &ClientAuth::NoSasl).await.unwrap();
    let text = common::error_text(nosasl.open_session(Some("alice"), &[]).await);
    assert!(text.contains("clients must authenticate") && text.contains("backend_auth.trusted_header"), "{text}");
    let mut nobody = HttpClient::connect(proxy.local_addr, vec![]).await;
    let refused = nobody.open_session(&[]).await.unwrap_err();
    assert!(refused.starts_with("HTTP 401") && refused.contains("clients must authenticate"), "{refused}");

    // A cookie client cannot pick another user with a Basic header of its own.
    let mut sneaky = HttpClient::connect(
        proxy.local_addr,
        vec![(COOKIE, proxy_cookie("bob")), (AUTHORIZATION, hs2_proxy::http::basic_authorization("alice", ""))],
    )
    .await;
    assert!(sneaky.open_session(&[]).await.unwrap_err().contains("cannot check passwords"));
    assert!(mock.sessions().is_empty());
    assert!(mock.http_logins().iter().all(|l| l.user.as_deref() == Some("hs2proxy")), "only the probe's service user");
}

#[tokio::test]
async fn a_trusted_header_from_a_client_never_reaches_the_backend() {
    // A proxy that checks passwords at an LDAP impalad over HTTP, where the impalad also trusts the header
    // (from some other hop): a client sending the header must still be checked by LDAP.
    let (mock, backend) = impalad("", Some(TRUSTED)).await;
    let mut c = base_config();
    c.backend_auth.transport = BackendTransport::Sasl;
    let upstream = UpstreamConfig { transport: UpstreamTransport::Http, ..UpstreamConfig::default() };
    c.backends = vec![BackendConfig { upstream, ..BackendConfig::new(&backend.to_string()) }];
    let proxy: ProxyHandle = server::start(c).await.expect("proxy starts");
    let with_header = |user: &str, password: &str| {
        let basic = (AUTHORIZATION, hs2_proxy::http::basic_authorization(user, password));
        vec![basic, (HeaderName::from_static("x-trusted-proxy-auth-header"), "on".to_string())]
    };

    let mut mallory = HttpClient::connect(proxy.local_addr, with_header("mallory", "")).await;
    let refused = mallory.open_session(&[]).await.unwrap_err();
    assert!(refused.starts_with("HTTP 401"), "{refused}");
    let mut alice = HttpClient::connect(proxy.local_addr, with_header("alice", "secret")).await;
    let session = alice.open_session(&[]).await.expect("alice, with her password");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"));
    let logins = mock.http_logins();
    assert!(logins.iter().all(|l| l.via != HttpVia::TrustedHeader), "the header never arrived: {logins:?}");
    assert!(logins.iter().all(|l| l.user.as_deref() != Some("mallory")), "{logins:?}");
    assert!(logins.iter().any(|l| l.via == HttpVia::Basic), "alice's password was checked: {logins:?}");
}

#[tokio::test]
async fn self_delegation_passes_proxy_users_at_the_proxy_and_the_proxy_user_config_at_impalad() {
    let s = setup();
    let (mock, backend) = impalad("hue=*", Some(TRUSTED)).await;
    let rules = "[kerberos.proxy_users]\nhue = \"*\"\n";
    let proxy = server::start(trusted_config(&s, backend, rules)).await.expect("proxy starts");
    let mut hue = HttpClient::connect(proxy.local_addr, cookie_of("hue")).await;
    let session = hue.open_session(&[("impala.doas.user", "alice")]).await.expect("hue delegates to alice");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("hue"), "impalad's connected user is hue");
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("alice"));
    // Hive's key from a client is checked the same way and reaches impalad as Impala's.
    let session = hue.open_session(&[("hive.server2.proxy.user", "bob")]).await.unwrap();
    assert_eq!(mock.session_effective_user(&session.guid).as_deref(), Some("bob"));
    // Without a rule at the proxy: refused there, with Impala's text; nothing reaches impalad.
    let mut bob = HttpClient::connect(proxy.local_addr, cookie_of("bob")).await;
    let refused = bob.open_session(&[("impala.doas.user", "alice")]).await.unwrap_err();
    assert_eq!(refused, "User 'bob' is not authorized to delegate to 'alice'.");
    assert_eq!(mock.sessions().len(), 2);
    // A client that does not delegate is not delegated: no key reaches impalad, which needs no rule for it.
    let plain = bob.open_session(&[]).await.expect("bob as himself");
    assert_eq!(mock.session_effective_user(&plain.guid).as_deref(), Some("bob"));

    // The proxy allows hue, but impalad has no --authorized_proxy_user_config for it: impalad refuses.
    let (strict, backend) = impalad("", Some(TRUSTED)).await;
    let proxy = server::start(trusted_config(&s, backend, rules)).await.expect("proxy starts");
    let mut hue = HttpClient::connect(proxy.local_addr, cookie_of("hue")).await;
    let refused = hue.open_session(&[("impala.doas.user", "alice")]).await.unwrap_err();
    assert!(refused.starts_with("User 'hue' is not authorized to delegate to 'alice'."), "{refused}");
    assert!(strict.sessions().is_empty());
}

#[tokio::test]
async fn an_impalad_without_the_flag_refuses_and_the_error_says_why() {
    let s = setup();
    // An LDAP impalad started without --trusted_auth_header: Basic alice: fails its LDAP check.
    let (mock, backend) = impalad("", None).await;
    let proxy = server::start(trusted_config(&s, backend, "")).await.expect("proxy starts");
    let mut alice = HttpClient::connect(proxy.local_addr, cookie_of("alice")).await;
    let refused = alice.open_session(&[]).await.unwrap_err();
    assert!(refused.contains("--trusted_auth_header=x-trusted-proxy-auth-header"), "{refused}");
    assert!(mock.sessions().is_empty());
}

/// The mock's hs2-http port itself, as impalad's rules say (`mock::hs2_http`).
#[tokio::test]
async fn the_mock_hs2_http_port_follows_impalad() {
    let (mock, port) = impalad("", Some(TRUSTED)).await;
    let basic = |user: &str, password: &str| (AUTHORIZATION, hs2_proxy::http::basic_authorization(user, password));
    let header = || (HeaderName::from_static("x-trusted-proxy-auth-header"), String::new());
    // The header with an empty value, and Basic with the password left out: trusted.
    let mut c = HttpClient::connect(port, vec![basic("bob", ""), header()]).await;
    let posted = c.post(rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(Some("x"), &[])).unwrap()).await;
    assert_eq!(posted.status, 200);
    let cookie = posted.headers.get(http::header::SET_COOKIE).expect("impalad's cookie").to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    // Sticky: a later request of the same connection counts as trusted without the header.
    c.headers = vec![basic("carol", "")];
    let session = c.open_session(&[]).await.expect("trusted: the header was seen on this connection");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("carol"));
    // A new connection without it: Basic goes to LDAP, which refuses.
    let mut fresh = HttpClient::connect(port, vec![basic("carol", "")]).await;
    assert!(fresh.open_session(&[]).await.unwrap_err().starts_with("HTTP 401"));
    // impalad's cookie alone authenticates as its user, before any Authorization header.
    let mut by_cookie = HttpClient::connect(port, vec![(COOKIE, cookie), basic("mallory", "")]).await;
    let session = by_cookie.open_session(&[]).await.unwrap();
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("bob"));
    // No Authorization: not trusted even with the header.
    let mut bare = HttpClient::connect(port, vec![header()]).await;
    assert!(bare.open_session(&[]).await.unwrap_err().starts_with("HTTP 401"));
    let vias: Vec<HttpVia> = mock.http_logins().iter().map(|l| l.via).collect();
    assert_eq!(vias, [HttpVia::TrustedHeader, HttpVia::TrustedHeader, HttpVia::Cookie]);
}

fn config_error(text: &str) -> String {
    match FileConfig::parse(text).and_then(FileConfig::validate) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.key,
    }
}

#[test]
fn the_configuration_is_checked_at_load_naming_the_key() {
    let s = setup();
    let secret = format!("[http]\ncookie_secret_file = {:?}\n", s.secret_file.display().to_string());
    let http_backend = "backends = [{ addr = \"impalad-1.example.com:28000\", transport = \"http\" }]\n";
    let auth = |lines: &str| format!("{http_backend}[backend_auth]\n{lines}\n{secret}");
    let ok = auth("transport = \"sasl\"\ntrusted_header = \"X-Trusted-Proxy-Auth-Header\"");
    let c = FileConfig::parse(&ok).and_then(FileConfig::validate).expect("valid");
    assert_eq!(c.backend_auth.trusted_header.as_ref().map(|h| h.as_str()), Some("x-trusted-proxy-auth-header"));

    let header = "trusted_header = \"X-Trusted-Proxy-Auth-Header\"";
    assert_eq!(config_error(&auth(header)), "backend_auth.trusted_header", "the default transport is nosasl");
    // With gssapi, its own check (no client_principal) or the trusted hop's names the transport's setting.
    let gssapi = config_error(&auth(&format!("transport = \"gssapi\"\n{header}")));
    assert!(["backend_auth.transport", "backend_auth.trusted_header"].contains(&gssapi.as_str()), "{gssapi}");
    assert_eq!(
        config_error(&auth(&format!("transport = \"sasl\"\ndelegate = true\n{header}"))),
        "backend_auth.delegate"
    );
    for name in ["Host", "X-Forwarded-For", "Authorization", "Cookie", "not a header"] {
        let text = auth(&format!("transport = \"sasl\"\ntrusted_header = {name:?}"));
        assert_eq!(config_error(&text), "backend_auth.trusted_header", "{name}");
    }
    let binary = format!(
        "backends = [\"impalad-1.example.com:21050\"]\n[backend_auth]\ntransport = \"sasl\"\n{header}\n{secret}"
    );
    assert_eq!(config_error(&binary), "backends");
    // Nothing to authenticate clients with: no [kerberos] keytab, no shared cookie secret.
    let alone = format!("{http_backend}[backend_auth]\ntransport = \"sasl\"\n{header}\n");
    assert_eq!(config_error(&alone), "backend_auth.trusted_header");
}

/// Kerberos clients (SASL GSSAPI) through the proxy, asserted to the mock's hs2-http port: no Kerberos
/// upstream at all (no client principal, no keytab of the proxy's own for the backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn kerberos_clients_run_as_themselves_over_the_trusted_hop() {
    use hs2_proxy::kerberos::testkdc;
    let kdc = testkdc::shared();
    // A Kerberized impalad: GSSAPI on its binary port; on its hs2-http port the trusted header (or 401).
    let auth = MockAuth::Gssapi { keytab: kdc.keytab("impala/localhost"), principal: Some("impala/localhost".into()) };
    let mock = MockImpalad::start("127.0.0.1:0", MockConfig { auth, ..MockConfig::default() }).await.unwrap();
    let backend = mock.start_http("127.0.0.1:0", Some(TRUSTED)).await.unwrap();
    let s = setup();
    let keytab = kdc.merged_keytab(&["impala/localhost", "HTTP/localhost"], "trusted-accept.keytab").unwrap();
    let kerberos =
        format!("[kerberos]\nkeytab = {:?}\nservice_principal = \"impala/localhost\"\n", keytab.display().to_string());
    let proxy = server::start(trusted_config(&s, backend, &kerberos)).await.expect("the proxy acquires its acceptor");

    let mut alice = kerberos_client(proxy.local_addr, "alice").await;
    let session = alice.open_session(Some("mallory"), &[]).await.unwrap();
    assert_eq!(current_user(&mut alice, &session).await, "alice");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"), "impalad's connected user is alice");
    // Hue's pattern: the same session from a new connection of the same principal.
    let mut again = kerberos_client(proxy.local_addr, "alice").await;
    assert_eq!(current_user(&mut again, &session).await, "alice");

    // Bob cannot use alice's session; his own runs as him.
    let mut bob = kerberos_client(proxy.local_addr, "bob").await;
    let text = common::error_text(bob.execute(&session, "select 1").await);
    assert!(text.starts_with("Invalid session id"), "{text}");
    let bobs = bob.open_session(None, &[]).await.unwrap();
    assert_eq!(current_user(&mut bob, &bobs).await, "bob");
    assert_eq!(mock.session_user(&bobs.guid).as_deref(), Some("bob"));

    // Pooled upstream connections are per user.
    let by_conn = users_by_connection(&mock.http_logins(), &["alice", "bob"]);
    assert!(by_conn.values().all(|users| users.len() == 1), "{by_conn:?}");
    assert!(by_conn.values().any(|u| u.contains("alice")) && by_conn.values().any(|u| u.contains("bob")));
    assert!(mock.http_logins().iter().all(|l| l.via != HttpVia::Basic), "no password checked anywhere");

    // HTTP Negotiate (SPNEGO) at the proxy, then the proxy's cookie: bob over HTTP, asserted as bob.
    let token = match kerberos_initiator("bob").client_context("HTTP/localhost").unwrap().step(b"").unwrap() {
        hs2_proxy::kerberos::Step::Continue(token) => token,
        _ => panic!("a Kerberos initial token"),
    };
    let negotiate = format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token));
    let mut http = HttpClient::connect(proxy.local_addr, vec![(AUTHORIZATION, negotiate)]).await;
    let posted = http.post(rpc::encode_call::<rpc::OpenSession>(1, &open_session_req(None, &[])).unwrap()).await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    let cookie = posted.headers.get(http::header::SET_COOKIE).expect("the proxy's cookie").to_str().unwrap();
    let open: TOpenSessionResp = match rpc::decode_reply(&posted.body, "OpenSession", 1, &Limits::REPLY).unwrap() {
        rpc::Reply::Ok(r) => r,
        rpc::Reply::Exception(e) => panic!("{e:?}"),
    };
    let over_http = HandleId::try_from(&open.session_handle.unwrap().session_id).unwrap();
    assert_eq!(mock.session_user(&over_http.guid).as_deref(), Some("bob"));
    http.headers = vec![(COOKIE, cookie.split(';').next().unwrap().to_string())];
    http.get_info(&over_http).await.expect("the proxy's cookie alone serves bob's session");
    assert!(http.get_info(&session).await.unwrap_err().starts_with("Invalid session id"), "not alice's");
}

fn kerberos_initiator(user: &str) -> hs2_proxy::kerberos::Credential {
    let kdc = hs2_proxy::kerberos::testkdc::shared();
    let gss = hs2_proxy::kerberos::Gss::load().unwrap_or_else(|e| panic!("{e}: run scripts/setup-kerberos.sh"));
    let ccache = kdc.kinit(user).expect("kinit -k -t");
    gss.initiator_from_ccache(&ccache, None).expect("initiator from ccache")
}

async fn kerberos_client(proxy: SocketAddr, user: &str) -> Hs2Client {
    use hs2_proxy::conn::ThriftConn;
    use hs2_proxy::thrift::framing::Framing;
    let initiator = kerberos_initiator(user);
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let mut conn = ThriftConn::new(Box::new(stream), Framing::Unframed, 16 << 20);
    hs2_proxy::sasl::client_handshake_gssapi(&mut conn, &initiator, "impala/localhost@EXAMPLE.TEST", 16 << 20)
        .await
        .expect("GSSAPI with the proxy");
    let mut client = Hs2Client::over(conn);
    client.set_timeout(Some(Duration::from_secs(20)));
    client
}

async fn current_user(c: &mut Hs2Client, session: &HandleId) -> String {
    use hs2_proxy::hs2client::ColumnExt;
    let op = c.execute(session, "select current_user()").await.expect("execute");
    c.wait_finished(&op).await.expect("finished");
    let (columns, _) = c.fetch(&op, 10).await.expect("fetch");
    let value = columns.first().and_then(|col| col.as_strs()).and_then(|v| v.first().map(|s| s.to_string()));
    value.expect("a string")
}
