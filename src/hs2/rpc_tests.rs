//! The proxy's own codec against Apache Thrift's: messages encoded by the `thrift` crate read with the
//! proxy's scanner (split at every byte), and the proxy's synthesized replies decoded by generated code.

use bytes::Bytes;

use super::*;
use crate::hs2::call::{reply_scanner, reply_summary, Request};
use crate::hs2::reply;
use crate::hs2::rpc::impala::{TGetExecSummaryReq, TGetExecSummaryResp};

fn ids() -> (HandleId, HandleId) {
    (HandleId::random(), HandleId::random())
}

fn operation(id: &HandleId) -> TOperationHandle {
    TOperationHandle::new(THandleIdentifier::from(id), TOperationType::EXECUTE_STATEMENT, true, None)
}

#[test]
fn calls_encoded_by_apache_thrift_show_their_handles_to_the_scanner() {
    let (session, op) = ids();
    let req = TExecuteStatementReq::new(session_handle(&session), "select 1".to_string(), None, true, None);
    let parsed = Request::parse(Bytes::from(encode_call::<ExecuteStatement>(7, &req).unwrap()), Limits::REQUEST);
    let parsed = parsed.unwrap();
    assert_eq!((parsed.name(), parsed.header.seqid), ("ExecuteStatement", 7));
    assert_eq!((parsed.session, parsed.statement.as_deref()), (Some(session), Some("select 1")));
    let both = TGetExecSummaryReq::new(operation(&op), session_handle(&session), None);
    let parsed = Request::parse(Bytes::from(encode_call::<GetExecSummary>(8, &both).unwrap()), Limits::REQUEST);
    let parsed = parsed.unwrap();
    assert_eq!((parsed.session, parsed.operation), (Some(session), Some(op)));
}

#[test]
fn replies_encoded_by_apache_thrift_scan_split_at_every_byte() {
    let (session, op) = ids();
    let req = TExecuteStatementReq::new(session_handle(&session), "select 1".to_string(), None, None, None);
    let request = Request::parse(Bytes::from(encode_call::<ExecuteStatement>(3, &req).unwrap()), Limits::REQUEST);
    let request = request.unwrap();
    let resp = TExecuteStatementResp::new(ok(), operation(&op));
    let mut bytes = encode_reply_header("ExecuteStatement", 3).unwrap();
    bytes.extend(encode_result(&resp).unwrap());
    for step in 1..=bytes.len() {
        let mut scanner = reply_scanner(&request, Limits::REPLY);
        let (mut at, mut end) = (0, 0);
        while !scanner.is_done() && end < bytes.len() {
            // `step` more bytes arrive; what the scanner left unconsumed is fed again with them.
            end = (end + step).min(bytes.len());
            at += scanner.feed(&bytes[at..end]).unwrap();
        }
        assert!(scanner.is_done(), "step {step}");
        let summary = reply_summary(&scanner);
        assert_eq!((summary.new_operation, summary.status_code), (Some(op), Some(0)), "step {step}");
    }
}

/// Every method's error reply from the proxy decodes with the generated response type (all required
/// fields present), and says ERROR with the text; GetQueryId (no status) gets an exception.
fn error_reply_decodes<M: Method>() {
    let bytes = reply::error_reply(M::NAME, 5, "boom");
    match decode_reply::<M::Resp>(&bytes, M::NAME, 5, &Limits::REPLY) {
        Ok(Reply::Ok(resp)) => {
            let status = resp.status().unwrap_or_else(|| panic!("{}: no status", M::NAME));
            assert_eq!(status.status_code, TStatusCode::ERROR_STATUS, "{}", M::NAME);
            assert_eq!(status.error_message.as_deref(), Some("boom"), "{}", M::NAME);
        }
        Ok(Reply::Exception(e)) => assert!(M::Resp::failed(ok()).is_none() && e.message == "boom", "{}", M::NAME),
        Err(e) => panic!("{}: {e}", M::NAME),
    }
}

#[test]
fn the_proxys_error_replies_decode_with_generated_code() {
    macro_rules! each {
        ($($m:ident),*) => {{ $(error_reply_decodes::<$m>();)* [$(stringify!($m)),*].len() }};
    }
    let checked = each!(
        OpenSession,
        CloseSession,
        GetInfo,
        ExecuteStatement,
        GetTypeInfo,
        GetCatalogs,
        GetSchemas,
        GetTables,
        GetTableTypes,
        GetColumns,
        GetFunctions,
        GetPrimaryKeys,
        GetCrossReference,
        GetOperationStatus,
        CancelOperation,
        CloseOperation,
        GetResultSetMetadata,
        FetchResults,
        GetDelegationToken,
        CancelDelegationToken,
        RenewDelegationToken,
        GetQueryId,
        SetClientInfo,
        UploadData,
        DownloadData,
        GetLog,
        GetExecSummary,
        GetRuntimeProfile,
        PingImpalaHS2Service,
        CloseImpalaOperation,
        ExecutePlannedStatement,
        GetBackendConfig,
        GetExecutorMembership
    );
    assert_eq!(checked, METHODS.len());
}

#[test]
fn exceptions_cross_both_ways() {
    let ours = reply::application_exception("Nope", 9, 1, "Invalid method name: 'Nope'");
    match decode_reply::<TGetExecSummaryResp>(&ours, "Nope", 9, &Limits::REPLY).unwrap() {
        Reply::Exception(e) => {
            assert_eq!(
                (e.kind, e.message.as_str()),
                (ApplicationErrorKind::UnknownMethod, "Invalid method name: 'Nope'")
            )
        }
        Reply::Ok(_) => panic!("not an exception"),
    }
    let theirs = encode_exception("Nope", 9, ApplicationErrorKind::InternalError, "boom").unwrap();
    match reply::read_answer(&theirs, &Limits::REPLY).unwrap() {
        reply::Answer::Exception(text) => assert_eq!(text, "boom"),
        other => panic!("{other:?}"),
    }
    let wrong = decode_reply::<TGetExecSummaryResp>(&ours, "Nope", 10, &Limits::REPLY);
    assert!(matches!(wrong, Err(RpcError::Mismatch { .. })));
}

#[test]
fn handles_convert_and_short_ids_are_refused() {
    let (id, _) = ids();
    assert_eq!(HandleId::try_from(&THandleIdentifier::from(&id)).ok(), Some(id));
    assert!(HandleId::try_from(&THandleIdentifier::new(vec![1; 15], vec![2; 16])).is_err());
}

#[test]
fn decoding_is_bounded() {
    let (session, _) = ids();
    let req = TExecuteStatementReq::new(session_handle(&session), "x".repeat(100), None, None, None);
    let call = encode_call::<ExecuteStatement>(1, &req).unwrap();
    let (_, body) = decode_header(&call, &Limits::REQUEST).unwrap();
    let small = Limits { max_message_bytes: 50, ..Limits::REQUEST };
    assert!(decode_args::<TExecuteStatementReq>(body, &small).is_err(), "a string above the limit");
    assert_eq!(decode_args::<TExecuteStatementReq>(body, &Limits::REQUEST).unwrap(), req);
    assert!(decode_args::<TExecuteStatementReq>(&body[..body.len() - 3], &Limits::REQUEST).is_err());
}
