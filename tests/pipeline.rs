//! The call pipeline's defects of issue 11, each through real sockets: the proxy in front of mock
//! impalads (and, where a misbehaving server is the subject, tiny servers written here).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use hs2_proxy::config::{BackendConfig, BackendTransport, Config};
use hs2_proxy::hs2::handle::{HandleId, Secret};
use hs2_proxy::hs2::idl::{enums, names};
use hs2_proxy::hs2::reply;
use hs2_proxy::hs2::rpc::{self, hs2::TExecuteStatementReq, hs2::TGetInfoType};
use hs2_proxy::hs2client::{fetch_req, session_handle, ClientAuth, ClientError, Hs2Client, OpHandle};
use hs2_proxy::metrics::sample;
use hs2_proxy::mock::MockAuth;
use hs2_proxy::server::ProxyHandle;
use hs2_proxy::thrift::value::{decode_message, encode_message, Struct};
use hs2_proxy::thrift::{Limits, MessageHeader, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn quiet_health(c: &mut Config) {
    // No probe during the test: its connections and evidence would blur what is measured.
    c.health.interval = Duration::from_secs(3600);
}

fn metrics(proxy: &ProxyHandle) -> String {
    proxy.proxy.metrics().encode(&proxy.proxy.figures()).unwrap()
}

fn error_count(proxy: &ProxyHandle, method: &str, backend: &str, kind: &str) -> f64 {
    let series = format!(r#"hs2_proxy_rpc_errors_total{{method="{method}",backend="{backend}",kind="{kind}"}}"#);
    sample(&metrics(proxy), &series).unwrap_or(0.0)
}

/// A server that accepts TCP and never answers (a hung backend).
async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A server that answers SUCCESS to every call, whatever handle it names (like Spark's GetInfo).
async fn yes_sayer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = hs2_proxy::conn::ThriftConn::new(
                    Box::new(s),
                    hs2_proxy::thrift::framing::Framing::Unframed,
                    1 << 20,
                );
                while let Ok(Some(msg)) = conn.read_message(Limits::REQUEST).await {
                    let Ok((h, _, _)) = decode_message(&msg, &Limits::REQUEST) else { return };
                    let Some(spec) = hs2_proxy::hs2::idl::method(&h.name) else { return };
                    let mut resp = reply::required_fields(spec.response, 0);
                    let status = reply::status(enums::t_status_code::SUCCESS_STATUS, None);
                    resp.fields.retain(|(id, _)| *id != 1);
                    resp.fields.insert(0, (1, status.into_value()));
                    let body = Struct::new().with(0, resp.into_value());
                    let out = encode_message(&MessageHeader::new(&h.name, MessageKind::Reply, h.seqid), &body);
                    if conn.write_message(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A FetchResults call for `rows` rows, encoded.
fn fetch_call(op: &OpHandle, rows: i64) -> Vec<u8> {
    rpc::encode_call::<rpc::FetchResults>(1, &fetch_req(op, rows)).unwrap()
}

fn backends_at(addrs: &[SocketAddr]) -> Vec<BackendConfig> {
    addrs.iter().map(|a| BackendConfig::new(&a.to_string())).collect()
}

/// Defect 1: a client that stops reading mid-reply is disconnected after `timeouts.client_write`, the
/// rest of the reply is read and dropped, the upstream connection goes back to the pool (and keeps
/// serving the session), and nothing counts against the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_and_its_upstream_connection_goes_back() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        quiet_health(c);
        c.timeouts.client_write = Duration::from_millis(500);
        c.timeouts.backend_reply = Duration::from_secs(3600);
    })
    .await;
    let addr = mocks[0].local_addr().to_string();
    let mut setup = connect(&proxy, &ClientAuth::NoSasl).await;
    let session = setup.open_session(None, &[]).await.unwrap();
    // 64 rows of 1 MiB: far more than any socket buffer holds.
    let op = setup.execute(&session, "select payload from blobs(64, 1048576)").await.unwrap();
    setup.wait_finished(&op).await.unwrap();
    let accepted = mocks[0].connections_accepted();

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(proxy.local_addr).await.unwrap();
    stalled.write_all(&fetch_call(&op, 64)).await.unwrap();
    let started = Instant::now();
    let p = proxy.proxy.clone();
    let a = addr.clone();
    eventually("the stalled client is counted", move || {
        let text = p.metrics().encode(&p.figures()).unwrap();
        let series =
            format!(r#"hs2_proxy_rpc_errors_total{{method="FetchResults",backend="{a}",kind="client_stalled"}}"#);
        sample(&text, &series) == Some(1.0)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "cut off after about client_write: {:?}", started.elapsed());
    let b = proxy.proxy.find_backend(&addr).unwrap();
    let p = proxy.proxy.clone();
    eventually("the upstream connection is back in the pool", move || {
        let stats = p.find_backend(&b.addr).unwrap().pool.stats();
        stats.busy() == 0 && stats.total == 1
    })
    .await;
    assert_eq!(error_count(&proxy, "FetchResults", &addr, "broken"), 0.0, "not the backend's fault");
    let backend = proxy.proxy.find_backend(&addr).unwrap();
    assert_eq!(backend.health().observed, hs2_proxy::backend::health::Observed::Up);
    // The stalled client's connection is closed: after what the buffers held, its stream ends.
    let mut sink = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the proxy closed the stalled connection");
    // The session still works, on the same upstream connection.
    assert!(setup.get_info(&session, TGetInfoType::CLI_DBMS_VER).await.is_ok());
    assert_eq!(mocks[0].connections_accepted(), accepted, "no new upstream connection was needed");
}

/// Defect 1, the other half: a slow reader that keeps reading is never cut off, whatever the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_a_large_reply_whole() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        quiet_health(c);
        c.timeouts.client_write = Duration::from_secs(1);
    })
    .await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&session, "select payload from blobs(64, 262144)").await.unwrap();
    c.wait_finished(&op).await.unwrap();
    let mut raw = TcpStream::connect(proxy.local_addr).await.unwrap();
    raw.write_all(&fetch_call(&op, 64)).await.unwrap();
    // 16 MiB at 256 KiB every 50 ms: seconds in all, far longer than client_write, but the proxy's
    // writes never wait that long. (Progress is what the kernel's send buffer accepts: a writer blocked
    // on a full buffer wakes when about half of it drained, so a reader slower than half a send buffer
    // per client_write looks stalled; with the 60 s default that is a few tens of KB/s.)
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let whole = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = raw.read(&mut buf).await.unwrap();
        assert!(n > 0, "the proxy closed a slow but reading client after {} bytes", reply.len());
        reply.extend_from_slice(&buf[..n]);
        if let Ok((_, body, used)) = decode_message(&reply, &Limits::REPLY) {
            break (body, used);
        }
    };
    assert_eq!(whole.1, reply.len());
    assert!(reply.len() > 16 << 20);
}

/// Defects 2 and 3: finding the owner of an unknown handle asks every backend at once and gives up at
/// `timeouts.recovery`, so a hung backend cannot hang the call; the lookups it abandons close their
/// connections and free their pool slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_cannot_hang_lookups_and_leaks_no_pool_slot() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let hung = black_hole().await;
    let holder = connect_direct(&mocks[0]).await.open_session(None, &[]).await.unwrap();
    let mut c = base_config();
    quiet_health(&mut c);
    c.timeouts.recovery = Duration::from_millis(400);
    c.pool.max_per_backend = 1;
    c.backends = backends_at(&[hung, mocks[0].local_addr()]);
    let proxy = hs2_proxy::server::start(c).await.unwrap();
    let mut client = connect(&proxy, &ClientAuth::NoSasl).await;
    for round in 0..2 {
        let started = Instant::now();
        // A session that only the mock holds (opened around the proxy): found despite the hung backend.
        let info = client.get_info(&holder, TGetInfoType::CLI_DBMS_VER).await;
        assert!(info.is_ok(), "round {round}: {info:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by timeouts.recovery: {:?}", started.elapsed());
        // A session nobody holds: the answer comes within the deadline too.
        let stranger = HandleId::random();
        let started = Instant::now();
        let text = error_text(client.get_info(&stranger, TGetInfoType::CLI_DBMS_VER).await);
        assert!(text.starts_with("Invalid session id"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        proxy.proxy.forget_session(&holder.guid);
    }
    let hung_pool = proxy.proxy.find_backend(&hung.to_string()).unwrap().pool.stats();
    assert_eq!((hung_pool.total, hung_pool.exhausted), (0, 0), "abandoned lookups freed their slots: {hung_pool:?}");
    let text = metrics(&proxy);
    assert_eq!(sample(&text, r#"hs2_proxy_handle_lookups_total{result="found"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"hs2_proxy_handle_lookups_total{result="timed_out"}"#), Some(2.0));
}

/// Issue 13's misroute, made impossible: when two backends both claim a handle (servers that answer for
/// any handle), the proxy treats it as unknown instead of picking the first.
#[tokio::test]
async fn a_handle_two_backends_claim_is_treated_as_unknown() {
    let (a, b) = (yes_sayer().await, yes_sayer().await);
    let mut c = base_config();
    quiet_health(&mut c);
    c.backends = backends_at(&[a, b]);
    let proxy = hs2_proxy::server::start(c).await.unwrap();
    let mut client = connect(&proxy, &ClientAuth::NoSasl).await;
    let text = error_text(client.get_info(&HandleId::random(), TGetInfoType::CLI_DBMS_VER).await);
    assert!(text.starts_with("Invalid session id"), "{text}");
    assert_eq!(proxy.proxy.session_count(), 0, "nothing was learned");
    assert_eq!(sample(&metrics(&proxy), r#"hs2_proxy_handle_lookups_total{result="ambiguous"}"#), Some(1.0));
}

async fn connect_direct(mock: &hs2_proxy::mock::MockImpalad) -> Hs2Client {
    Hs2Client::connect(mock.local_addr(), &ClientAuth::NoSasl).await.unwrap()
}

/// Defect 5: the admin listener closes connections that never finish their request head, and refuses
/// connections beyond its cap.
#[tokio::test]
async fn the_admin_listener_times_out_half_requests_and_caps_connections() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.admin.header_read_timeout = Duration::from_millis(300);
        c.admin.max_connections = 20;
    })
    .await;
    let admin = proxy.admin_addr.unwrap();
    let mut half = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /api/backe").await.unwrap();
        half.push(s);
    }
    // Beyond the cap: closed at once, while the 20 are still open.
    let mut extra = TcpStream::connect(admin).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_millis(250), extra.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the connection over the cap is closed: {closed:?}");
    let started = Instant::now();
    for s in &mut half {
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(r.is_ok(), "a half-open admin connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "closed after the header timeout: {:?}", started.elapsed());
    // And the listener still serves.
    let (status, _) = hs2_proxy::cli_admin::http(&admin.to_string(), "GET", "/healthz", None).await.unwrap();
    assert_eq!(status, 200);
}

/// Defect 5: an HS2-over-HTTP request whose body stops arriving gets 408 after `timeouts.request_read`;
/// one that declares a body over the limit is refused at once.
#[tokio::test]
async fn http_bodies_have_a_deadline_and_a_declared_size_limit() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| c.timeouts.request_read = Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    s.write_all(b"POST /cliservice HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789").await.unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut s = TcpStream::connect(proxy.local_addr).await.unwrap();
    s.write_all(b"POST /cliservice HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"), "10 GiB refused at once");
}

/// Defect 5: the upstream check of a SASL client's password runs inside the handshake deadline: a hung
/// backend gets the client a refusal after `timeouts.handshake`, not after the pool's connect timeout.
#[tokio::test]
async fn a_sasl_handshake_is_bounded_even_when_the_backend_hangs() {
    let hung = black_hole().await;
    let mut c = base_config();
    quiet_health(&mut c);
    c.backend_auth.transport = BackendTransport::Sasl;
    c.timeouts.handshake = Duration::from_millis(500);
    c.pool.connect_timeout = Duration::from_secs(60);
    c.backends = backends_at(&[hung]);
    let proxy = hs2_proxy::server::start(c).await.unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), Hs2Client::connect(proxy.local_addr, &plain("alice", "pw")))
        .await;
    assert!(matches!(r, Ok(Err(_))), "the handshake failed");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by timeouts.handshake: {:?}", started.elapsed());
}

/// Defect 6: a graceful shutdown lets the call in flight finish, closes idle connections, accepts no
/// new ones, and never closes sessions upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_calls_in_flight_closes_idle_connections_and_keeps_sessions() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, quiet_health).await;
    let mut idle = connect(&proxy, &ClientAuth::NoSasl).await;
    let kept = idle.open_session(None, &[]).await.unwrap();
    let mut busy = connect(&proxy, &ClientAuth::NoSasl).await;
    let busy_session = busy.open_session(None, &[]).await.unwrap();
    mocks[0].set_delay(Duration::from_millis(800));
    let addr = mocks[0].local_addr().to_string();
    let in_flight = tokio::spawn(async move { busy.get_info(&busy_session, TGetInfoType::CLI_DBMS_VER).await });
    let b = proxy.proxy.find_backend(&addr).unwrap();
    eventually("the call is in flight", move || b.inflight.load(std::sync::atomic::Ordering::Relaxed) == 1).await;
    let started = Instant::now();
    proxy.shutdown();
    assert!(in_flight.await.unwrap().is_ok(), "the call in flight finished");
    tokio::time::timeout(Duration::from_secs(5), proxy.drained()).await.expect("every connection closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    mocks[0].set_delay(Duration::ZERO);
    assert!(idle.get_info(&kept, TGetInfoType::CLI_DBMS_VER).await.is_err(), "the idle connection was closed");
    assert!(TcpStream::connect(proxy.local_addr).await.is_err(), "no new connections");
    assert_eq!(mocks[0].sessions().len(), 2, "sessions stay open on the impalad");
    assert_eq!(mocks[0].calls(names::CLOSE_SESSION), 0);
}

/// Defect 7: one budget bounds the bytes of unfinished requests across all connections; a request that
/// would go over gets a clear error and its connection closes; other clients are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_budget_bounds_buffered_request_bytes() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        quiet_health(c);
        c.limits.request.max_message_bytes = 2 << 20;
        c.limits.max_buffered_request_bytes = 2 << 20;
    })
    .await;
    let mut setup = connect(&proxy, &ClientAuth::NoSasl).await;
    let session = setup.open_session(None, &[]).await.unwrap();
    let big = |len: usize| {
        let req = TExecuteStatementReq::new(session_handle(&session), "x".repeat(len), None, None, None);
        rpc::encode_call::<rpc::ExecuteStatement>(7, &req).unwrap()
    };
    // A holds 1.5 MiB of an unfinished 1.9 MiB request.
    let a_msg = big(1_900_000);
    let mut a = TcpStream::connect(proxy.local_addr).await.unwrap();
    a.write_all(&a_msg[..1_500_000]).await.unwrap();
    let p = proxy.proxy.clone();
    eventually("A's bytes are held", move || p.budget().in_use() > 1_000_000).await;
    // B's 1 MiB request does not fit beside it.
    let mut b = TcpStream::connect(proxy.local_addr).await.unwrap();
    b.write_all(&big(1_000_000)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), b.read_to_end(&mut answer)).await.unwrap().unwrap();
    let (header, body, _) = decode_message(&answer, &Limits::REPLY).unwrap();
    assert_eq!((header.kind, header.name.as_str(), header.seqid), (MessageKind::Exception, "ExecuteStatement", 7));
    let text = body.get_str(hs2_proxy::hs2::idl::fields::t_application_exception::MESSAGE).unwrap();
    assert!(text.contains("limits.max_buffered_request_bytes"), "{text}");
    // Small calls never touch the budget.
    assert!(setup.get_info(&session, TGetInfoType::CLI_DBMS_VER).await.is_ok());
    // A finishes and is served; the budget is free again.
    a.write_all(&a_msg[1_500_000..]).await.unwrap();
    let mut conn_a =
        hs2_proxy::conn::ThriftConn::new(Box::new(a), hs2_proxy::thrift::framing::Framing::Unframed, 1 << 30);
    let reply = conn_a.read_message(Limits::REPLY).await.unwrap().expect("A got its answer");
    let (header, _, _) = decode_message(&reply, &Limits::REPLY).unwrap();
    assert_eq!((header.kind, header.seqid), (MessageKind::Reply, 7));
    let p = proxy.proxy.clone();
    eventually("the budget is free", move || p.budget().in_use() == 0).await;
}

/// Defect 8: a call on a known operation with the wrong secret is refused by the proxy, never forwarded.
#[tokio::test]
async fn an_operation_handle_with_a_wrong_secret_is_refused() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, quiet_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let mut op = c.execute(&session, "select 1").await.unwrap();
    c.wait_finished(&op).await.unwrap();
    let before = mocks[0].calls(names::GET_OPERATION_STATUS);
    op.id = HandleId { guid: op.id.guid, secret: Secret([7; 16]) };
    match c.operation_status(&op).await {
        Err(ClientError::Status { message, .. }) => {
            assert!(message.starts_with("Invalid or unknown query handle"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(mocks[0].calls(names::GET_OPERATION_STATUS), before, "the forged call never reached the impalad");
}

/// Defect 9: sessions of unauthenticated clients show OpenSession's user and the delegated user, and the
/// filter finds either.
#[tokio::test]
async fn unauthenticated_sessions_show_their_user_and_effective_user() {
    // impalad checks delegation (`--authorized_proxy_user_config=carol=dave`); the proxy only reports it.
    let mut cfg = hs2_proxy::mock::MockConfig::default();
    cfg.authorized_proxy_users.allow("carol", ["dave"]);
    let mocks = vec![hs2_proxy::mock::MockImpalad::start("127.0.0.1:0", cfg).await.unwrap()];
    let proxy = proxy(&mocks, BackendTransport::Nosasl, quiet_health).await;
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    c.open_session(Some("carol"), &[("impala.doas.user", "dave")]).await.unwrap();
    c.open_session(Some("erin"), &[]).await.unwrap();
    let admin = proxy.admin_addr.unwrap().to_string();
    let sessions = |q: &'static str| {
        let admin = admin.clone();
        async move {
            let (status, body) =
                hs2_proxy::cli_admin::http(&admin, "GET", &format!("/api/sessions{q}"), None).await.unwrap();
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<hs2_proxy::admin::api::SessionsJson>(&body).unwrap().sessions
        }
    };
    let all = sessions("").await;
    let carol = all.iter().find(|s| s.user.as_deref() == Some("carol")).expect("carol's session is listed by user");
    assert_eq!(carol.effective_user.as_deref(), Some("dave"));
    assert_eq!(carol.owner, None, "nobody authenticated");
    let erin = all.iter().find(|s| s.user.as_deref() == Some("erin")).unwrap();
    assert_eq!(erin.effective_user.as_deref(), Some("erin"));
    assert_eq!(sessions("?user=dave").await.len(), 1, "the filter finds the effective user");
    assert_eq!(sessions("?user=carol").await.len(), 1);
    assert_eq!(sessions("?user=nobody").await.len(), 0);
    let table = hs2_proxy::cli_admin::run(
        &hs2_proxy::cli_admin::AdminCall::Sessions { backend: None, user: Some("dave".into()) },
        &hs2_proxy::cli::AdminArgs { admin: Some(admin.clone()), admin_token_file: None, config: None, json: false },
        None,
    )
    .await
    .unwrap();
    assert!(table.contains("carol") && table.contains("dave") && !table.contains("erin"), "{table}");
}

/// The tables learn from a reply before the client can see the reply's end: a client that uses a new
/// handle at once from another connection (Hue's pattern) finds it known, never needing a lookup, and a
/// closed session is gone by the time CloseSession's reply arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_handles_are_known_before_their_reply_ends() {
    let mocks = mocks(1, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, quiet_health).await;
    let mut a = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut b = connect(&proxy, &ClientAuth::NoSasl).await;
    for _ in 0..200 {
        let s = a.open_session(None, &[]).await.unwrap();
        let op = b.execute(&s, "select 1").await.unwrap();
        a.operation_status(&op).await.unwrap();
        b.close_session(&s).await.unwrap();
        assert_eq!(proxy.proxy.session_count(), 0, "forgotten before CloseSession's reply ended");
    }
    let lookups = sample(&metrics(&proxy), r#"hs2_proxy_handle_lookups_total{result="found"}"#);
    assert_eq!(lookups, None, "no handle ever had to be looked up");
}
