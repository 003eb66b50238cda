//! The bad-input matrix of docs/reliability.md, each row through real sockets against the real proxy
//! binary (`bad_input/bed.rs`): what the bad client gets (an error it can read, or a close the proxy
//! logs), that a bystander's session keeps working while the bad connection is open and after, and that
//! the proxy's descriptors, connections, busy upstream connections and buffered bytes come back to their
//! baseline. Thrift, framing and SASL here; HTTP, slow clients, floods and TLS in `bad_input/listeners.rs`.
//! Rows already covered elsewhere are named in docs/reliability.md, not repeated.

#[path = "bad_input/bed.rs"]
mod bed;
mod common;
#[path = "bad_input/listeners.rs"]
mod listeners;

use std::time::Duration;

use bed::{until_closed, Bed, AT_ONCE, HANDSHAKE};
use hs2_proxy::backend::probe::zero_handle;
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
const CLI_DBMS_VER: TGetInfoType = TGetInfoType::CLI_DBMS_VER;
use hs2_proxy::hs2::requests;
use hs2_proxy::thrift::framing::{Framing, PlainCredentials, SaslMessage, SaslStatus};
use hs2_proxy::thrift::value::decode_message;
use hs2_proxy::thrift::{Limits, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STOP: u8 = 0;
const STRUCT: u8 = 12;
const STRING: u8 = 11;
const LIST: u8 = 15;
/// Long enough that "refused at once" cannot be the stall timeout at work.
const LONG: Duration = Duration::from_secs(30);

/// A strict binary-protocol message header.
fn header(name: &str, kind: u8, seqid: i32) -> Vec<u8> {
    let mut b = vec![0x80, 0x01, 0x00, kind];
    b.extend_from_slice(&(name.len() as i32).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&seqid.to_be_bytes());
    b
}

fn field(ty: u8, id: i16) -> Vec<u8> {
    let mut b = vec![ty];
    b.extend_from_slice(&id.to_be_bytes());
    b
}

/// A GetInfo call whose session guid is a string of declared length `len` (and no bytes after).
fn get_info_with_guid_length(len: i32) -> Vec<u8> {
    let mut b = header("GetInfo", 1, 7);
    for _ in 0..3 {
        b.extend(field(STRUCT, 1)); // args.req, req.sessionHandle, sessionHandle.sessionId
    }
    b.extend(field(STRING, 1));
    b.extend_from_slice(&len.to_be_bytes());
    b
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut b = (msg.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(msg);
    b
}

fn good_call(seqid: i32) -> Vec<u8> {
    requests::get_info(&zero_handle(), CLI_DBMS_VER.0, seqid)
}

/// The TApplicationException the proxy answered with: its seqid and text.
fn exception(reply: &[u8]) -> (i32, String) {
    let (h, body, _) = decode_message(reply, &Limits::REPLY).expect("a whole Thrift message");
    assert_eq!(h.kind, MessageKind::Exception, "{h:?}");
    (h.seqid, body.get_str(1).unwrap_or_default().to_string())
}

/// Truncated messages and frames: the connection is closed (logged) once the client ends it; a
/// truncated request left open does not disturb anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_messages_and_frames_close_only_their_connection() {
    let mut bed = Bed::start_with("", HANDSHAKE, LONG).await;
    let call = good_call(1);
    let mut unframed = bed.raw().await;
    unframed.write_all(&call[..call.len() / 2]).await.unwrap();
    let mut framed_conn = bed.raw().await;
    let mut half_frame = framed(&call);
    half_frame.truncate(4 + call.len() / 2);
    framed_conn.write_all(&half_frame).await.unwrap();
    bed.bystander_works().await;
    for s in [&mut unframed, &mut framed_conn] {
        s.shutdown().await.unwrap();
        let (got, _) = until_closed(s, Duration::from_secs(5)).await;
        assert!(got.is_empty(), "nothing to answer");
    }
    bed.logged(&["client connection closed", "connection closed in the middle of a message"]).await;
    bed.back_to_baseline().await;
}

/// A frame over `limits.max_frame_bytes`, and a framed length of 2 GiB (negative as an i32), on framed and
/// SASL connections: closed at once, before any of the promised bytes, and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_2_gib_frame_lengths_are_refused_at_once() {
    let mut bed = Bed::start_with("[limits]\nmax_frame_bytes = 65536", HANDSHAKE, LONG).await;
    for len in [65_537u32, 0x8000_0000, u32::MAX] {
        let mut s = bed.raw().await;
        // A good call first: the connection is framed and works.
        s.write_all(&framed(&good_call(1))).await.unwrap();
        let mut frame_len = [0u8; 4];
        s.read_exact(&mut frame_len).await.unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(frame_len) as usize];
        s.read_exact(&mut reply).await.unwrap();
        assert!(decode_message(&reply, &Limits::REPLY).is_ok(), "the good call is answered");
        s.write_all(&len.to_be_bytes()).await.unwrap();
        let (_, took) = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(took < AT_ONCE * 4, "closed at once, not after a stall: {took:?}");
        bed.logged(&["client connection closed", &format!("frame of {len} bytes")]).await;
    }
    // The same after a SASL handshake: data frames have the same 4-byte length.
    let mut s = bed.raw().await;
    let mut hello = SaslMessage::new(SaslStatus::Start, b"PLAIN").encode();
    hello.extend(SaslMessage::new(SaslStatus::Ok, &PlainCredentials::encode("mallory", "pw")).encode());
    hello.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    s.write_all(&hello).await.unwrap();
    let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got.first(), Some(&(SaslStatus::Complete as u8)), "the handshake itself succeeded");
    assert!(took < AT_ONCE * 4, "{took:?}");
    bed.bystander_works().await;
    bed.back_to_baseline().await;
}

/// Lengths a peer controls: a negative method-name length (no header can be read: a logged close), a
/// negative string length, a string longer than `limits.max_request_bytes`, a list of 2^31 - 1 elements
/// (the header was read: a TApplicationException with the request's seqid that names the problem, then
/// a close). All at once, without waiting for the promised bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_and_oversized_lengths_are_refused_without_waiting() {
    let mut bed = Bed::start_with("", HANDSHAKE, LONG).await;
    let mut name = vec![0x80, 0x01, 0x00, 0x01];
    name.extend_from_slice(&(-1i32).to_be_bytes());
    let mut s = bed.raw().await;
    s.write_all(&name).await.unwrap();
    let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_empty() && took < AT_ONCE * 4, "{took:?}");
    bed.logged(&["client connection closed", "method name of -1 bytes"]).await;

    let mut list = header("GetInfo", 1, 9);
    list.extend(field(LIST, 1));
    list.push(STRING);
    list.extend_from_slice(&i32::MAX.to_be_bytes());
    let cases = [
        (get_info_with_guid_length(-1), 7, "negative length -1"),
        (get_info_with_guid_length(1 << 30), 7, "exceeds the limit of 67108864 bytes"),
        (list, 9, "container of 2147483647 elements exceeds the limit"),
    ];
    for (bytes, seqid, text) in cases {
        let mut s = bed.raw().await;
        s.write_all(&bytes).await.unwrap();
        let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(took < AT_ONCE * 4, "{text}: {took:?}");
        let (sid, message) = exception(&got);
        assert_eq!(sid, seqid);
        assert!(message.contains(text), "{message}");
    }
    bed.back_to_baseline().await;
}

/// Structs nested deeper than `limits.max_depth` (64): refused with a TApplicationException that says
/// so; nothing recursed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused() {
    let mut bed = Bed::start("").await;
    let mut b = header("GetInfo", 1, 3);
    for _ in 0..10_000 {
        b.extend(field(STRUCT, 1));
    }
    b.extend(std::iter::repeat_n(STOP, 10_001));
    let mut s = bed.raw().await;
    s.write_all(&b).await.unwrap();
    let (got, _) = until_closed(&mut s, Duration::from_secs(5)).await;
    let (seqid, message) = exception(&got);
    assert_eq!(seqid, 3);
    assert!(message.contains("nesting deeper than 64"), "{message}");
    bed.back_to_baseline().await;
}

/// A message that is not a call (a client sending a reply or an exception): impalad's Thrift server
/// closes such a connection, so forwarding it breaks an upstream connection and counts against a
/// healthy backend; enough of them mark every backend down and fail every session over. The proxy
/// must refuse it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_calls_never_reach_a_backend() {
    let mut bed = Bed::start("").await;
    // Twenty at once: faster than the probe that each failure asks for can answer "alive".
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let mut b = header("OpenSession", 2 + i % 2, 11);
        b.extend(field(STRUCT, 1));
        b.push(STOP);
        b.push(STOP);
        let raw = bed.raw().await;
        sent.push(tokio::spawn(async move {
            let mut c = hs2_proxy::conn::ThriftConn::new(Box::new(raw), Framing::Unframed, 1 << 20);
            c.write_message(&b).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(5), c.read_message(Limits::REPLY)).await {
                Ok(Ok(Some(reply))) => format!("{:?}", hs2_proxy::hs2::reply::read_answer(&reply, &Limits::REPLY)),
                Ok(other) => format!("closed: {other:?}"),
                Err(_) => "nothing within 5 s".to_string(),
            }
        }));
    }
    let mut answers = Vec::new();
    for t in sent {
        answers.push(t.await.unwrap());
    }
    let (_, backends) = hs2_proxy::cli_admin::http(&bed.admin.to_string(), "GET", "/api/backends", None).await.unwrap();
    assert!(!backends.contains("\"down\""), "a client's bad messages took a backend down: {backends}\n{answers:#?}");
    let (_, metrics) = hs2_proxy::cli_admin::http(&bed.admin.to_string(), "GET", "/metrics", None).await.unwrap();
    let against: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("hs2_proxy_rpc_errors_total") && l.contains("kind=\"broken\""))
        .collect();
    assert!(against.is_empty(), "counted against a backend: {against:?}\n{answers:#?}\n{}", bed.log());
    bed.logged(&["client connection closed", "a reply message where a call was expected"]).await;
    bed.bystander_works().await;
    bed.back_to_baseline().await;
}

/// SASL negotiation that is garbage: a START whose length is 2 GiB, a first message that is not START,
/// an unknown status byte, PLAIN without its NUL separators. Refused (BAD with the reason where the
/// negotiation got that far), closed, logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_sasl_and_plain_without_nul_separators_are_refused() {
    let mut bed = Bed::start("").await;
    let mut huge = vec![SaslStatus::Start as u8];
    huge.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    let complete_first = SaslMessage::new(SaslStatus::Complete, b"PLAIN").encode();
    let mut no_nul = SaslMessage::new(SaslStatus::Start, b"PLAIN").encode();
    no_nul.extend(SaslMessage::new(SaslStatus::Ok, b"mallory-and-a-password").encode());
    let cases: [(&[u8], Option<&str>, &str); 4] = [
        (&huge, None, "frame of 2147483648 bytes"),
        // Not a SASL START, not any transport: a logged close.
        (&complete_first, None, "unrecognized first bytes [05"),
        (&[1, 0, 0, 0, 5, b'P', b'L', b'A', b'I', b'N', 9, 0, 0, 0, 0], None, "unknown SASL status byte 9"),
        (&no_nul, Some("malformed SASL PLAIN response"), "malformed SASL PLAIN response"),
    ];
    for (bytes, told, logged) in cases {
        let mut s = bed.raw().await;
        s.write_all(bytes).await.unwrap();
        let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(took < AT_ONCE * 4, "{logged}: {took:?}");
        if let Some(text) = told {
            assert_eq!(got.first(), Some(&(SaslStatus::Bad as u8)), "{logged}: {got:02x?}");
            assert!(String::from_utf8_lossy(&got[5..]).contains(text), "{}", String::from_utf8_lossy(&got));
        }
        bed.logged(&["client connection refused", logged]).await;
        bed.bystander_works().await;
    }
    bed.back_to_baseline().await;
}

/// A SASL handshake replayed on a connection that already completed one: the second START arrives
/// where a data frame is expected and is not a Thrift message. Closed at once, logged; never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_sasl_handshake_is_not_a_request() {
    let mut bed = Bed::start_with("", HANDSHAKE, LONG).await;
    let mut hello = SaslMessage::new(SaslStatus::Start, b"PLAIN").encode();
    hello.extend(SaslMessage::new(SaslStatus::Ok, &PlainCredentials::encode("mallory", "pw")).encode());
    let mut twice = hello.clone();
    twice.extend_from_slice(&hello);
    let mut s = bed.raw().await;
    s.write_all(&twice).await.unwrap();
    let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(got, SaslMessage::new(SaslStatus::Complete, b"").encode(), "one COMPLETE, nothing else");
    assert!(took < AT_ONCE * 4, "{took:?}");
    bed.logged(&["client connection closed", "not a strict binary-protocol message"]).await;
    let before: u64 = bed.mocks.iter().map(|m| m.calls("<unknown>")).sum();
    assert_eq!(before, 0);
    bed.back_to_baseline().await;
}

/// A handle whose guid is not 16 bytes is no handle: the call goes where a call without a handle goes,
/// and the impalad answers it (here: "Invalid session id"), an error the client can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_handle_gets_an_hs2_error() {
    let mut bed = Bed::start("").await;
    let mut b = get_info_with_guid_length(15);
    b.extend_from_slice(&[7; 15]);
    b.extend([STOP, STOP, STOP, STOP]);
    let mut c = hs2_proxy::conn::ThriftConn::new(
        Box::new(bed.raw().await),
        hs2_proxy::thrift::framing::Framing::Unframed,
        1 << 20,
    );
    c.write_message(&b).await.unwrap();
    let reply = c.read_message(Limits::REPLY).await.unwrap().expect("an answer");
    let (h, _, _) = decode_message(&reply, &Limits::REPLY).unwrap();
    assert_eq!((h.kind, h.seqid), (MessageKind::Reply, 7));
    let answer =
        hs2_proxy::hs2::rpc::decode_reply::<hs2_proxy::hs2::rpc::hs2::TGetInfoResp>(&reply, &h.name, 7, &Limits::REPLY);
    let Ok(hs2_proxy::hs2::rpc::Reply::Ok(answer)) = answer else { panic!("a GetInfo reply: {answer:?}") };
    let message = answer.status.error_message.unwrap_or_default();
    assert!(message.starts_with("Invalid session id"), "{message}");
    drop(c);
    bed.back_to_baseline().await;
}
