//! The mock impalad through real sockets, driven by our HS2 client: Impala's session semantics, its extra
//! calls, error texts, SASL, fault injection and small SASL frames.

use std::time::Duration;

use hs2_proxy::hs2::handle::{Guid, HandleId};
use hs2_proxy::hs2::reply::{invalid_query_text, invalid_session_text};
use hs2_proxy::hs2::rpc::hs2::{TGetInfoType as info_type, TOperationState as op_state, *};
use hs2_proxy::hs2::rpc::impala::*;
use hs2_proxy::hs2::rpc::{self, Reply};
use hs2_proxy::hs2client::{
    fetch_req, open_session_req, session_handle, ClientAuth, ClientError, ColumnExt, Hs2Client, OpHandle,
};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::sasl::SaslError;
use hs2_proxy::thrift::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

async fn start(cfg: MockConfig) -> MockImpalad {
    MockImpalad::start("127.0.0.1:0", cfg).await.expect("bind")
}

async fn connect(mock: &MockImpalad, auth: &ClientAuth) -> Hs2Client {
    let mut c = Hs2Client::connect(mock.local_addr(), auth).await.expect("connect");
    c.set_timeout(Some(CALL_TIMEOUT));
    c
}

fn plain(user: &str, password: &str) -> ClientAuth {
    ClientAuth::Plain { user: user.into(), password: password.into() }
}

fn status_message(e: ClientError) -> String {
    match e {
        ClientError::Status { code: 3, message } => message,
        other => panic!("expected an ERROR status, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_outlives_its_connection_and_pages_through_a_range() {
    let mock = start(MockConfig::default()).await;
    let mut first = connect(&mock, &ClientAuth::NoSasl).await;
    let session = first.open_session(Some("alice"), &[("idle_session_timeout", "900")]).await.unwrap();
    drop(first);
    assert!(mock.has_session(&session.guid));
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"));

    let mut second = connect(&mock, &ClientAuth::NoSasl).await;
    let op = second.execute(&session, "select id from range(25000);").await.unwrap();
    assert!(op.has_result_set);
    assert_eq!(op.id.secret, session.secret, "Impala: an operation's secret is its session's secret");
    assert_eq!(second.wait_finished(&op).await.unwrap(), op_state::FINISHED_STATE);
    let meta = second.call_ok::<rpc::GetResultSetMetadata>(&TGetResultSetMetadataReq::new(op.thrift())).await.unwrap();
    assert_eq!(meta.schema.map(|s| s.columns.len()), Some(1));

    let mut ids = Vec::new();
    let mut pages = Vec::new();
    loop {
        let (columns, more) = second.fetch(&op, 10_000).await.unwrap();
        pages.push((columns[0].len(), more));
        ids.extend(columns[0].as_i64s().unwrap());
        if !more {
            break;
        }
    }
    assert_eq!(pages, vec![(10_000, true), (10_000, true), (5_000, false)]);
    assert!(ids.iter().copied().eq(0..25_000));
    assert_eq!(mock.open_operations(), 1);
    second.close_operation(&op).await.unwrap();
    assert_eq!(mock.open_operations(), 0);
    second.close_session(&session).await.unwrap();
    assert!(!mock.has_session(&session.guid));
    assert_eq!(mock.calls("FetchResults"), 3);
}

#[tokio::test]
async fn impala_calls_and_replies_decode() {
    let mock = start(MockConfig { name: "impalad-7".into(), ..MockConfig::default() }).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let open = c.call_ok::<rpc::OpenSession>(&open_session_req(None, &[])).await.unwrap();
    assert_eq!(open.server_protocol_version, TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6);
    let config = open.configuration.unwrap();
    assert_eq!(config.get("http_addr").map(String::as_str), Some("impalad-7:25000"));
    let session = HandleId::try_from(&open.session_handle.unwrap().session_id).unwrap();

    let server_name = c.get_info(&session, info_type::CLI_SERVER_NAME).await.unwrap();
    assert_eq!(server_name, TGetInfoValue::StringValue("Impala".into()));
    assert!(matches!(c.get_info(&session, info_type::CLI_DBMS_VER).await.unwrap(), TGetInfoValue::StringValue(_)));
    let handle = || session_handle(&session);
    let ping = c.call_ok::<rpc::PingImpalaHS2Service>(&TPingImpalaHS2ServiceReq::new(handle())).await.unwrap();
    assert_eq!(ping.webserver_address.as_deref(), Some("http://impalad-7:25000"));
    assert!(ping.version.unwrap().starts_with("impalad version"));
    c.call_ok::<rpc::GetBackendConfig>(&TGetBackendConfigReq::new(handle())).await.unwrap();
    let members = c.call_ok::<rpc::GetExecutorMembership>(&TGetExecutorMembershipReq::new(handle())).await.unwrap();
    assert_eq!(members.executor_membership.hostnames.len(), 1);

    let op = c.execute(&session, "select 42").await.unwrap();
    assert_eq!(c.fetch_all_i64(&op).await.unwrap(), vec![42]);
    let summary = TGetExecSummaryReq::new(op.thrift(), handle(), None);
    let summary = c.call_ok::<rpc::GetExecSummary>(&summary).await.unwrap().summary.unwrap();
    assert_eq!(summary.state, TExecState::FINISHED);
    let profile = TGetRuntimeProfileReq::new(op.thrift(), handle(), None, None);
    let text = c.call_ok::<rpc::GetRuntimeProfile>(&profile).await.unwrap().profile.unwrap();
    assert!(text.starts_with(&format!("Query (id={}):\n  Summary:", op.id.guid.impala_id())), "{text}");
    let log = c.call_ok::<rpc::GetLog>(&TGetLogReq::new(op.thrift())).await.unwrap();
    assert_eq!(log.log, "");
    c.call_ok::<rpc::CloseImpalaOperation>(&TCloseImpalaOperationReq::new(op.thrift())).await.unwrap();
    let gone = c.operation_status(&op).await.unwrap_err();
    assert_eq!(status_message(gone), invalid_query_text(&op.id.guid));

    let tables = TGetTablesReq::new(handle(), None, None, None, None);
    let tables = c.call_ok::<rpc::GetTables>(&tables).await.unwrap().operation_handle.unwrap();
    let tables = OpHandle::from_thrift(&tables).unwrap();
    assert_eq!(tables.op_type, TOperationType::GET_TABLES);
    let (columns, more) = c.fetch(&tables, 100).await.unwrap();
    assert_eq!((columns.len(), columns[0].len(), more), (5, 0, false));

    match c.call_named::<_, TGetInfoResp>("Frobnicate", &TCloseSessionReq::new(handle())).await {
        Err(ClientError::Exception(m)) => assert_eq!(m, "Invalid method name: 'Frobnicate'"),
        other => panic!("expected an application exception, got {other:?}"),
    }
    let err = c.execute(&session, "select * from nowhere").await.unwrap_err();
    assert!(status_message(err).starts_with("AnalysisException"));
}

#[tokio::test]
async fn unknown_handles_get_impalas_texts() {
    let mock = start(MockConfig::default()).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let stranger = HandleId::random();
    let err = c.execute(&stranger, "select 1").await.unwrap_err();
    assert_eq!(status_message(err), invalid_session_text(&stranger.guid));
    let zero = HandleId { guid: Guid([0; 16]), secret: hs2_proxy::hs2::handle::Secret([0; 16]) };
    let err = c.get_info(&zero, info_type::CLI_DBMS_VER).await.unwrap_err();
    assert_eq!(status_message(err), "Invalid session id: 0000000000000000:0000000000000000");
    // A real guid with a wrong secret is just as unknown.
    let session = c.open_session(None, &[]).await.unwrap();
    let forged = HandleId { guid: session.guid, secret: stranger.secret };
    assert_eq!(status_message(c.close_session(&forged).await.unwrap_err()), invalid_session_text(&session.guid));
    let op = OpHandle { id: HandleId::random(), has_result_set: true, op_type: TOperationType::EXECUTE_STATEMENT };
    assert_eq!(status_message(c.fetch(&op, 10).await.unwrap_err()), invalid_query_text(&op.id.guid));
}

#[tokio::test]
async fn sasl_refuses_a_wrong_password_and_a_foreign_session() {
    let users = vec![("alice".to_string(), "pw-a".to_string()), ("bob".to_string(), "pw-b".to_string())];
    let mock = start(MockConfig { auth: MockAuth::Plain { users: Some(users) }, ..MockConfig::default() }).await;
    match Hs2Client::connect(mock.local_addr(), &plain("alice", "wrong")).await {
        Err(ClientError::Sasl(SaslError::Refused(text))) => assert!(text.contains("Invalid username or password")),
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    let mut alice = connect(&mock, &plain("alice", "pw-a")).await;
    let session = alice.open_session(Some("someone-else"), &[]).await.unwrap();
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("alice"), "the SASL user wins");
    let mut bob = connect(&mock, &plain("bob", "pw-b")).await;
    let err = bob.execute(&session, "select 1").await.unwrap_err();
    assert_eq!(
        status_message(err),
        "The user authorized on the connection 'bob' does not match the session's user 'alice'"
    );
    // Alice may use her session from another connection.
    let mut alice2 = connect(&mock, &plain("alice", "pw-a")).await;
    let op = alice2.execute(&session, "select 5").await.unwrap();
    assert_eq!(alice2.fetch_all_i64(&op).await.unwrap(), vec![5]);
}

#[tokio::test]
async fn a_draining_impalad_says_so_first() {
    let mock = start(MockConfig::default()).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    mock.set_shutting_down(true);
    let draining = |e: ClientError| assert!(status_message(e).starts_with("Server is being shut down: "));
    draining(c.open_session(None, &[]).await.unwrap_err());
    draining(c.get_info(&HandleId::random(), info_type::CLI_SERVER_NAME).await.unwrap_err());
    draining(c.execute(&session, "select 1").await.unwrap_err());
    mock.set_shutting_down(false);
    c.execute(&session, "select 1").await.unwrap();
}

#[tokio::test]
async fn blobs_follow_their_pattern_through_seven_byte_frames() {
    let cfg = MockConfig { auth: MockAuth::Plain { users: None }, write_frame_bytes: Some(7), ..MockConfig::default() };
    let mock = start(cfg).await;
    let mut c = connect(&mock, &plain("anyone", "anything")).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&session, "SELECT payload FROM blobs(30, 300)").await.unwrap();
    let mut row = 0usize;
    loop {
        let (columns, more) = c.fetch(&op, 7).await.unwrap();
        for bytes in columns[0].as_bytes().unwrap() {
            assert_eq!(bytes.len(), 300);
            assert!(bytes.iter().enumerate().all(|(k, b)| *b as usize == (row + k) % 251), "row {row}");
            row += 1;
        }
        if !more {
            break;
        }
    }
    assert_eq!(row, 30);
    let op = c.execute(&session, "select id from range(3000)").await.unwrap();
    assert!(c.fetch_all_i64(&op).await.unwrap().into_iter().eq(0..3000));
}

#[tokio::test]
async fn sleep_runs_in_the_background_and_options_stick_to_the_session() {
    let mock = start(MockConfig::default()).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&session, "select sleep(150)").await.unwrap();
    assert_eq!(c.operation_status(&op).await.unwrap().0, op_state::RUNNING_STATE);
    assert_eq!(c.wait_finished(&op).await.unwrap(), op_state::FINISHED_STATE);
    let (columns, _) = c.fetch(&op, 10).await.unwrap();
    assert_eq!(columns[0].as_bools(), Some(&[true][..]));

    let set = c.execute(&session, "set mem_limit=2g").await.unwrap();
    assert!(!set.has_result_set);
    let other = c.open_session(None, &[]).await.unwrap();
    for (s, want) in [(&session, "2g"), (&other, "0")] {
        let op = c.execute(s, "set all").await.unwrap();
        let (cols, _) = c.fetch(&op, 100).await.unwrap();
        let at = cols[0].as_strs().unwrap().iter().position(|v| *v == "MEM_LIMIT").unwrap();
        assert_eq!(cols[1].as_strs().unwrap()[at], want);
    }
    let fail = c.execute(&session, "select fail()").await.unwrap();
    assert!(matches!(c.wait_finished(&fail).await, Err(ClientError::OperationFailed(_))));
}

#[tokio::test]
async fn crash_breaks_the_reply_and_stop_kills_everything() {
    let mock = start(MockConfig::default()).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let session = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&session, "select crash()").await.unwrap();
    assert!(matches!(c.fetch(&op, 1000).await, Err(ClientError::Conn(_) | ClientError::Closed)));
    assert!(matches!(c.fetch(&op, 1000).await, Err(ClientError::Broken)));

    // Garbage closes only its own connection.
    let mut raw = tokio::net::TcpStream::connect(mock.local_addr()).await.unwrap();
    raw.write_all(b"\x80\x01\x00\x01\xff\xff\xff\xffnot thrift").await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw.read(&mut buf).await.unwrap(), 0);

    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    c.execute(&session, "select 1").await.unwrap();
    // The server notices closed connections on its own schedule: wait for the count to settle.
    for _ in 0..100 {
        if mock.connections() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(mock.connections(), 1);
    mock.stop().await;
    assert_eq!(mock.connections(), 0);
    assert!(mock.sessions().is_empty());
    assert!(c.execute(&session, "select 1").await.is_err());
    assert!(Hs2Client::connect(mock.local_addr(), &ClientAuth::NoSasl).await.is_err());
    assert!(mock.connections_accepted() >= 3);
}

/// Benchmark mode: equal batch shapes come from one prepared body; replies still decode and page.
#[tokio::test]
async fn fast_mode_reuses_prepared_batches() {
    let cfg = hs2_proxy::mock::MockConfig { fast: true, ..hs2_proxy::mock::MockConfig::default() };
    let mock = MockImpalad::start("127.0.0.1:0", cfg).await.unwrap();
    let mut c = Hs2Client::connect(mock.local_addr(), &ClientAuth::NoSasl).await.unwrap();
    let s = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&s, "select payload from blobs(6, 1000)").await.unwrap();
    let fetch = rpc::encode_call::<rpc::FetchResults>(7, &fetch_req(&op, 2)).unwrap();
    let first = c.call_raw(&fetch).await.unwrap();
    let second = c.call_raw(&fetch).await.unwrap();
    assert_eq!(first, second, "the same shape is the same prepared reply");
    let (columns, more) = c.fetch(&op, 2).await.unwrap();
    assert_eq!((columns[0].len(), more), (2, false), "the last batch says no more rows");
    match rpc::decode_reply::<TFetchResultsResp>(&first, "FetchResults", 7, &Limits::REPLY).expect("a valid reply") {
        Reply::Ok(resp) => assert_eq!(resp.has_more_rows, Some(true)),
        Reply::Exception(e) => panic!("{e:?}"),
    }
}

/// The one STRING a statement returns (`select current_user()`).
async fn one_string(c: &mut Hs2Client, session: &HandleId, statement: &str) -> String {
    let op = c.execute(session, statement).await.unwrap();
    let (columns, _) = c.fetch(&op, 10).await.unwrap();
    columns[0].as_strs().expect("a string")[0].to_string()
}

/// Impala's delegation without Kerberos: `impala.doas.user` needs an authorised proxy user (impalad's
/// `--authorized_proxy_user_config`); `current_user()` is the effective user, `user()` the connected one.
#[tokio::test]
async fn delegation_follows_the_authorized_proxy_user_config() {
    let proxy_users = hs2_proxy::kerberos::delegation::ProxyUsers::parse_impala_flag("hue=*").unwrap();
    let cfg = MockConfig {
        auth: MockAuth::Plain { users: None },
        authorized_proxy_users: proxy_users,
        ..MockConfig::default()
    };
    let mock = start(cfg).await;
    let mut hue = connect(&mock, &plain("hue", "pw")).await;
    let session = hue.open_session(None, &[("impala.doas.user", "alice")]).await.unwrap();
    assert_eq!(one_string(&mut hue, &session, "select current_user()").await, "alice");
    assert_eq!(one_string(&mut hue, &session, "select user()").await, "hue");
    assert_eq!(mock.session_user(&session.guid).as_deref(), Some("hue"), "sessions belong to the connected user");
    let mut bob = connect(&mock, &plain("bob", "pw")).await;
    let refused = bob.open_session(None, &[("impala.doas.user", "alice")]).await.unwrap_err();
    assert_eq!(status_message(refused), "User 'bob' is not authorized to delegate to 'alice'.");
    // Without a config nobody delegates; without delegation current_user() is the connected user.
    let mock = start(MockConfig::default()).await;
    let mut c = connect(&mock, &ClientAuth::NoSasl).await;
    let refused = c.open_session(Some("hue"), &[("impala.doas.user", "alice")]).await.unwrap_err();
    assert_eq!(
        status_message(refused),
        "User 'hue' is not authorized to delegate to 'alice'. User delegation is disabled."
    );
    let session = c.open_session(Some("carol"), &[]).await.unwrap();
    assert_eq!(one_string(&mut c, &session, "select current_user()").await, "carol");
}

/// The ledger a soak reads: calls naming handles the mock does not hold are recorded with their method and
/// seqid; calls on its own handles and the probe's all-zero handle are not.
#[tokio::test]
async fn calls_naming_handles_the_mock_does_not_hold_are_recorded() {
    let (a, b) = (start(MockConfig::default()).await, start(MockConfig::default()).await);
    let mut ca = connect(&a, &ClientAuth::NoSasl).await;
    let mut cb = connect(&b, &ClientAuth::NoSasl).await;
    let on_b = cb.open_session(None, &[]).await.unwrap();
    let op_b = cb.execute(&on_b, "select 1").await.unwrap();
    let mine = ca.open_session(None, &[]).await.unwrap();
    ca.get_info(&mine, info_type::CLI_DBMS_VER).await.unwrap();
    ca.set_next_seqid(1000);
    assert!(ca.execute(&on_b, "select 1").await.is_err(), "a's answer for b's session");
    assert!(ca.operation_status(&op_b).await.is_err());
    let zero = HandleId { guid: Guid([0; 16]), secret: hs2_proxy::hs2::handle::Secret([0; 16]) };
    assert!(ca.get_info(&zero, info_type::CLI_SERVER_NAME).await.is_err());
    let seen = a.take_unknown_handles();
    let got: Vec<_> = seen.iter().map(|u| (u.guid, u.kind, u.method.as_str(), u.seqid)).collect();
    use hs2_proxy::mock::HandleKind::{Operation, Session};
    assert_eq!(
        got,
        vec![(on_b.guid, Session, "ExecuteStatement", 1000), (op_b.id.guid, Operation, "GetOperationStatus", 1001)]
    );
    assert!(b.holds(&on_b.guid) && b.holds(&op_b.id.guid) && !a.holds(&on_b.guid));
    assert_eq!(a.unknown_handle_counts(), (2, 0));
    assert!(a.take_unknown_handles().is_empty(), "taken");
    assert!(b.take_unknown_handles().is_empty());
    assert_eq!(b.operations_of(&on_b.guid).len(), 1);
    assert_eq!(a.sessions_opened().iter().map(|(g, _)| *g).collect::<Vec<_>>(), vec![mine.guid]);
}
