//! Kerberos against real peers: MIT's GSS-API library and KDC (a private realm started by this binary),
//! then impyla, beeline, impala-shell and a Kerberized Spark Thrift Server.
//!
//! `#[ignore]`d so that `cargo test` needs no Kerberos packages; `scripts/test.sh` installs them
//! (`scripts/setup-kerberos.sh`) and runs these with `--ignored`. A missing tool fails loudly with the setup
//! command. One realm per test binary ([`testkdc::shared`]): GSS-API reads its configuration from the
//! process environment.
//!
//! - here: the GSS-API bindings and the SASL machines in-process, over real tokens.
//! - `kerberos/sockets.rs`: the socket helpers and the Kerberized mock impalad, through real TCP.
//! - `kerberos/clients.rs`: impyla, beeline, impala-shell and curl (SPNEGO) against them.
//! - `kerberos/spark.rs`: our client side against a Kerberized Spark Thrift Server, with delegation.
//! - `kerberos/proxy.rs`: clients through the proxy, which delegates them to a Kerberized mock impalad.
//! - `kerberos/proxy_clients.rs`: the real clients (impyla, impala-shell, curl) through the proxy; bad
//!   tickets; keytabs without the key.
//! - `kerberos/proxy_spark.rs`: beeline and impyla through the proxy to the Kerberized Spark Thrift Server.

#[path = "kerberos/clients.rs"]
mod clients;
mod common;
#[path = "kerberos/proxy.rs"]
mod proxy;
#[path = "kerberos/proxy_clients.rs"]
mod proxy_clients;
#[path = "kerberos/proxy_spark.rs"]
mod proxy_spark;
#[path = "kerberos/sockets.rs"]
mod sockets;
#[path = "kerberos/spark.rs"]
mod spark;

use std::net::SocketAddr;
use std::time::Duration;

use hs2_proxy::conn::ThriftConn;
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::{ColumnExt, Hs2Client};
use hs2_proxy::kerberos::delegation::ProxyUsers;
use hs2_proxy::kerberos::sasl_gssapi::{ClientOutput, GssapiClient, GssapiServer, ServerOutput};
use hs2_proxy::kerberos::testkdc::{self, TestKdc};
use hs2_proxy::kerberos::{Credential, Gss, GssError, Step};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::sasl::{self, SaslError};
use hs2_proxy::thrift::framing::Framing;

pub fn gss() -> Gss {
    testkdc::shared();
    Gss::load().unwrap_or_else(|e| panic!("{e}: run scripts/setup-kerberos.sh"))
}

/// Acceptor credentials for `impala/localhost`, bound to that principal.
pub fn impala_acceptor() -> Credential {
    let kdc = testkdc::shared();
    gss().acceptor(&kdc.keytab("impala/localhost"), Some("impala/localhost")).expect("acceptor from impala keytab")
}

/// The proxy's own initiator: hs2proxy from its keytab, private MEMORY ccache.
pub fn proxy_initiator() -> Credential {
    let kdc = testkdc::shared();
    gss().initiator_with_keytab("hs2proxy", &kdc.keytab("hs2proxy")).expect("initiator from hs2proxy keytab")
}

/// A kinit'd user's initiator credentials (a FILE ccache, as a person has).
pub fn user_initiator(user: &str) -> Credential {
    let ccache = testkdc::shared().kinit(user).expect("kinit -k -t");
    gss().initiator_from_ccache(&ccache, None).expect("initiator from ccache")
}

const MAX_FRAME: u64 = 16 << 20;

/// A client connection authenticated with Kerberos as `initiator` for `target`.
pub async fn connect_gssapi(addr: SocketAddr, initiator: &Credential, target: &str) -> Result<Hs2Client, SaslError> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut conn = ThriftConn::new(Box::new(stream), Framing::Unframed, MAX_FRAME);
    sasl::client_handshake_gssapi(&mut conn, initiator, target, MAX_FRAME).await?;
    let mut client = Hs2Client::over(conn);
    client.set_timeout(Some(Duration::from_secs(20)));
    Ok(client)
}

/// A Kerberized mock impalad accepting `impala/localhost`, with `proxy_users` allowed to delegate.
pub async fn kerberized_mock(proxy_users: &str) -> MockImpalad {
    let kdc = testkdc::shared();
    let auth = MockAuth::Gssapi { keytab: kdc.keytab("impala/localhost"), principal: Some("impala/localhost".into()) };
    let authorized_proxy_users = ProxyUsers::parse_impala_flag(proxy_users).expect("proxy user config");
    let cfg = MockConfig { name: "kerberized".into(), auth, authorized_proxy_users, ..MockConfig::default() };
    MockImpalad::start("127.0.0.1:0", cfg).await.expect("kerberized mock starts")
}

/// The one value `statement` returns (a STRING such as `current_user()`).
pub async fn query_string(c: &mut Hs2Client, session: &HandleId, statement: &str) -> String {
    let op = c.execute(session, statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    c.wait_finished(&op).await.expect("finished");
    let (columns, _) = c.fetch(&op, 10).await.expect("fetch");
    let value = columns.first().and_then(|col| col.as_strs()).and_then(|v| v.first().map(|s| s.to_string()));
    c.close_operation(&op).await.expect("close operation");
    value.unwrap_or_else(|| panic!("{statement} returned no string: {columns:?}"))
}

#[test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
fn contexts_establish_and_wrap_over_real_tokens() {
    let acceptor = impala_acceptor();
    let mut client = proxy_initiator().client_context("impala/localhost@EXAMPLE.TEST").unwrap();
    let mut server = acceptor.server_context();
    let Step::Continue(ap_req) = client.step(b"").unwrap() else { panic!("mutual auth needs a second leg") };
    assert!(ap_req.len() > 300, "an AP-REQ of {} bytes", ap_req.len());
    let Step::Established { token: ap_rep, peer } = server.step(&ap_req).unwrap() else { panic!("one leg") };
    assert_eq!(peer, "hs2proxy@EXAMPLE.TEST");
    let Step::Established { token, peer } = client.step(&ap_rep).unwrap() else { panic!("AP-REP completes") };
    assert!(token.is_empty());
    assert_eq!(peer, "impala/localhost@EXAMPLE.TEST");
    let sealed = server.wrap(b"hello").unwrap();
    assert_ne!(sealed, b"hello");
    assert_eq!(client.unwrap(&sealed).unwrap(), b"hello");
    assert!(server.unwrap(b"forged").is_err());
    // The same AP-REQ again is a replay.
    let replay = acceptor.server_context().step(&ap_req).unwrap_err();
    assert!(replay.to_string().to_lowercase().contains("replay"), "{replay}");
}

#[test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
fn the_sasl_machines_over_real_contexts() {
    let mut c = GssapiClient::new(proxy_initiator().client_context("impala/localhost").unwrap());
    let mut s = GssapiServer::new(impala_acceptor().server_context());
    let [_, mut to_server] = c.start().unwrap();
    let principal = loop {
        match s.step(&to_server).unwrap() {
            ServerOutput::Send(m) => match c.step(&m).unwrap() {
                ClientOutput::Send(m) => to_server = m,
                ClientOutput::Done => panic!("client done first"),
            },
            ServerOutput::Complete { reply, principal, .. } => {
                assert_eq!(c.step(&reply).unwrap(), ClientOutput::Done);
                break principal;
            }
        }
    };
    assert_eq!(principal, "hs2proxy@EXAMPLE.TEST");
}

#[test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
fn errors_say_what_is_wrong() {
    let kdc = testkdc::shared();
    let gss = gss();
    // A ticket for hive/localhost presented to an acceptor that only has impala/localhost's key.
    let mut client = proxy_initiator().client_context("hive/localhost").unwrap();
    let Step::Continue(ap_req) = client.step(b"").unwrap() else { panic!() };
    let e = impala_acceptor().server_context().step(&ap_req).unwrap_err();
    assert!(e.to_string().contains("hive/localhost@EXAMPLE.TEST"), "{e}");
    // An unknown service: the KDC says so.
    let e = proxy_initiator().client_context("nosuch/localhost").unwrap().step(b"").unwrap_err();
    assert!(e.to_string().contains("not found in Kerberos database"), "{e}");
    // Missing keytabs.
    let missing = kdc.dir().join("missing.keytab");
    let e = gss.acceptor(&missing, None).unwrap_err();
    assert!(e.to_string().contains("missing.keytab"), "{e}");
    let e =
        gss.initiator_with_keytab("hs2proxy", &missing).and_then(|c| c.client_context("impala/localhost")?.step(b""));
    assert!(matches!(e, Err(GssError::Call { .. })), "{e:?}");
    // A principal the keytab does not hold.
    let e = gss.acceptor(&kdc.keytab("impala/localhost"), Some("HTTP/localhost")).unwrap_err();
    assert!(e.to_string().contains("HTTP/localhost"), "{e}");
    assert_eq!(TestKdc::principal("alice"), "alice@EXAMPLE.TEST");
}

#[test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
fn the_config_section_acquires_its_credentials_naming_the_key() {
    use hs2_proxy::config::FileConfig;
    let kdc = testkdc::shared();
    let keytab = kdc.merged_keytab(&["impala/localhost", "HTTP/localhost", "hs2proxy"], "all.keytab").unwrap();
    let section = |extra: &str| {
        let text = format!("[kerberos]\nkeytab = {:?}\n{extra}", keytab.display().to_string());
        FileConfig::parse(&text).and_then(FileConfig::validate).expect("valid config").kerberos.expect("section")
    };
    let creds = section("service_principal = 'impala/localhost'\nclient_principal = 'hs2proxy'").acquire().unwrap();
    assert!(creds.sasl.is_some() && creds.http.is_some() && creds.upstream.is_some());
    let e = section("service_principal = 'impala/elsewhere'").acquire().unwrap_err().to_string();
    assert!(e.starts_with("kerberos.service_principal: ") && e.contains("impala/elsewhere@EXAMPLE.TEST"), "{e}");
    let e = section("service_principal = 'impala/localhost'\nclient_principal = 'alice'").acquire().unwrap_err();
    assert!(e.to_string().starts_with("kerberos.client_principal: ") && e.to_string().contains("alice"), "{e}");
}
