//! Targets over Thrift messages: the resumable scanner fed in random splits, `Request::parse`, and the
//! replies the proxy synthesizes. Each compares with the dynamic decoder (`thrift::value`), read through
//! [`crate::model`].

use bytes::Bytes;
use hs2_proxy::hs2::call::{reply_scanner, reply_summary, Request};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::idl::{self, HandlePaths};
use hs2_proxy::hs2::reply::error_reply as synthesize;
use hs2_proxy::thrift::scanner::{FieldPath, Scalar, Scanner};
use hs2_proxy::thrift::value::{decode_message, Struct, Value};
use hs2_proxy::thrift::{Limits, MessageHeader, MessageKind, ProtocolError, MAX_CAPTURE_BYTES, MAX_METHOD_NAME_BYTES};

use super::input::{self, contains, control, Splits};
use super::model::{self, reader_bytes, reader_value, same_capture};

/// Where a scan ended: the error, or how far it got and what it found.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<(), ProtocolError>,
    pub consumed: u64,
    pub done: bool,
    pub header: Option<MessageHeader>,
    pub found: Vec<Option<Scalar>>,
}

impl Outcome {
    fn of(s: &Scanner, n: usize, result: Result<(), ProtocolError>) -> Outcome {
        Outcome {
            result,
            consumed: s.consumed(),
            done: s.is_done(),
            header: s.header().cloned(),
            found: (0..n).map(|i| s.found(i).cloned()).collect(),
        }
    }

    /// Same result; and when both succeeded, the same boundary, header and captures.
    fn assert_agrees(&self, other: &Outcome, what: &str) {
        assert_eq!(self.result, other.result, "{what}: results differ");
        if self.result.is_err() {
            return;
        }
        assert_eq!((self.consumed, self.done), (other.consumed, other.done), "{what}: boundaries differ");
        assert_eq!(self.header, other.header, "{what}: headers differ");
        for (i, (a, b)) in self.found.iter().zip(&other.found).enumerate() {
            assert!(same_capture(a.as_ref(), b.as_ref()), "{what}: capture {i} differs: {a:?} vs {b:?}");
        }
    }
}

/// One feed of the whole input.
pub fn scan_whole(msg: &[u8], limits: Limits, caps: &'static [FieldPath]) -> Outcome {
    let mut s = Scanner::new(limits, caps);
    let result = s.feed(msg).map(|n| {
        assert!(n <= msg.len(), "feed used {n} of {} bytes", msg.len());
        assert_eq!(s.consumed(), n as u64, "consumed() disagrees with what feed returned");
    });
    Outcome::of(&s, caps.len(), result)
}

/// The input fed as a socket delivers it: piece by piece, unconsumed bytes kept in front of the next read.
pub fn scan_split(msg: &[u8], limits: Limits, caps: &'static [FieldPath], splits: Splits) -> Outcome {
    let mut s = Scanner::new(limits, caps);
    let (mut pending, mut total) = (Vec::new(), 0u64);
    for piece in splits.pieces(msg) {
        pending.extend_from_slice(piece);
        let was_done = s.is_done();
        let n = match s.feed(&pending) {
            Ok(n) => n,
            Err(e) => return Outcome::of(&s, caps.len(), Err(e)),
        };
        assert!(n <= pending.len(), "feed used {n} of {} bytes", pending.len());
        assert!(!was_done || n == 0, "a finished scanner consumed {n} more bytes");
        pending.drain(..n);
        total += n as u64;
        assert_eq!(s.consumed(), total, "consumed() disagrees with the sum of feeds");
        // Streaming: once the header is in, nothing wider than one fixed-width value is held back.
        if s.header().is_some() && !s.is_done() {
            assert!(pending.len() < 8, "held back {} bytes after the header", pending.len());
        }
    }
    Outcome::of(&s, caps.len(), Ok(()))
}

/// Every capture is bounded, and a captured string is a piece of the input.
fn check_captures_bounded(o: &Outcome, msg: &[u8]) {
    assert!(o.consumed <= msg.len() as u64, "consumed {} of {} bytes", o.consumed, msg.len());
    for v in o.found.iter().flatten() {
        if let Scalar::Bytes(b) = v {
            assert!(b.len() <= MAX_CAPTURE_BYTES, "a capture of {} bytes", b.len());
            assert!(contains(msg, b), "a captured string that is not in the input");
        }
    }
}

/// The scanner and the decoder agree on where the message ends, what is at each path, and the limits.
fn check_against_decoder(o: &Outcome, msg: &[u8], limits: &Limits, caps: &[FieldPath]) {
    let loose = input::lenient(limits);
    match (&o.result, o.done) {
        (Ok(()), true) => {
            let n = o.consumed as usize;
            let (header, body, used) = match decode_message(&msg[..n], &loose) {
                Ok(d) => d,
                Err(e) => panic!("the scanner accepted {n} bytes that the decoder refuses: {e}"),
            };
            assert_eq!(used, n, "the decoder ends the message elsewhere");
            assert_eq!(Some(&header), o.header.as_ref());
            for (i, path) in caps.iter().enumerate() {
                let want = reader_value(&body, path);
                assert!(
                    same_capture(o.found[i].as_ref(), want.as_ref()),
                    "capture {path:?}: {:?} vs {want:?}",
                    o.found[i]
                );
            }
            let body = Value::Struct(body);
            assert!(model::frame_depth(&body) <= limits.max_depth, "depth limit {} not enforced", limits.max_depth);
            let longest = model::longest_container(&body) as u64;
            assert!(longest <= u64::from(limits.max_container_len), "a container of {longest} elements passed");
            assert!(n as u64 <= limits.max_message_bytes, "a message of {n} bytes passed");
        }
        (Ok(()), false) => {
            assert!(decode_message(msg, &loose).is_err(), "the scanner wants more bytes for a whole message");
        }
        (Err(e), _) => check_refusal(e, msg, limits, &loose),
    }
}

/// A refusal is either broken bytes (the decoder refuses them too) or a limit the message really breaks.
fn check_refusal(e: &ProtocolError, msg: &[u8], limits: &Limits, loose: &Limits) {
    let Ok((_, body, used)) = decode_message(msg, loose) else { return };
    let body = Value::Struct(body);
    match e {
        ProtocolError::TooDeep(d) => assert!(model::frame_depth(&body) > *d, "TooDeep({d}) for a shallower message"),
        ProtocolError::ContainerTooLong(..) => {
            assert!(
                model::longest_container(&body) as u64 > u64::from(limits.max_container_len),
                "{e}: no such container"
            )
        }
        ProtocolError::TooLarge(max) => {
            let big = used.max(model::longest_string(&body)) as u64;
            assert!(big > *max, "{e} for a message of {used} bytes");
        }
        other => panic!("the scanner refused a message the decoder reads ({used} bytes): {other}"),
    }
}

/// Target `scanner_splits`: control bytes `[limits, captures, seed lo, seed hi]`, then the message.
pub fn scanner_splits(data: &[u8]) {
    let (ctl, msg) = control::<4>(data);
    let limits = input::limits(ctl[0]);
    let caps = input::captures(ctl[1]);
    let whole = scan_whole(msg, limits, caps);
    let split = scan_split(msg, limits, caps, Splits::new(u16::from_le_bytes([ctl[2], ctl[3]])));
    whole.assert_agrees(&split, "whole vs split");
    check_captures_bounded(&whole, msg);
    check_captures_bounded(&split, msg);
    check_against_decoder(&whole, msg, &limits, caps);
}

/// Where the statement text sits (mirrors `hs2::call`, which keeps it private).
fn statement_path(method: &str) -> FieldPath {
    match method {
        "ExecuteStatement" => &[1, 2],
        "ExecutePlannedStatement" => &[1, 1, 2],
        _ => &[],
    }
}

/// The handle the scanner should report for `paths` (its semantics: last struct, last scalar), and
/// what a typed Thrift reader would read there.
fn expected_handle(body: &Struct, paths: Option<HandlePaths>) -> (Option<HandleId>, Option<HandleId>) {
    let Some(p) = paths else { return (None, None) };
    let scanned = HandleId::from_captures(reader_value(body, p.guid).as_ref(), reader_value(body, p.secret).as_ref());
    let read = |path| reader_bytes(body, path).map(Scalar::Bytes);
    (scanned, HandleId::from_captures(read(p.guid).as_ref(), read(p.secret).as_ref()))
}

/// Target `request_parse`: one client request, as the proxy reads it (default request limits).
pub fn request_parse(data: &[u8]) {
    let limits = Limits::REQUEST;
    let parsed = Request::parse(Bytes::copy_from_slice(data), limits);
    let decoded = decode_message(data, &input::lenient(&limits));
    let r = match parsed {
        Ok(r) => r,
        Err(e) => {
            if let Ok((header, body, used)) = decoded {
                // A reply or exception sent as a request is refused on purpose (impalad would drop the
                // connection), and only for that reason.
                if !matches!(header.kind, MessageKind::Call | MessageKind::Oneway) {
                    assert!(matches!(e, ProtocolError::NotACall(k) if k == header.kind), "a non-call refused as {e}");
                    return;
                }
                let body = Value::Struct(body);
                let within = model::frame_depth(&body) <= limits.max_depth
                    && model::longest_container(&body) as u64 <= u64::from(limits.max_container_len);
                assert!(used != data.len() || !within, "a whole, well-formed request was refused: {e}");
            }
            return;
        }
    };
    assert_eq!(&r.bytes[..], data, "the request's bytes changed");
    let (header, body, used) = decoded.unwrap_or_else(|e| panic!("parsed a request the decoder refuses: {e}"));
    assert_eq!((used, &header), (data.len(), &r.header));
    let spec = idl::method(&header.name);
    assert_eq!(r.method.map(|m| m.name), spec.map(|m| m.name));
    let Some(spec) = spec else {
        assert!(r.session.is_none() && r.operation.is_none() && r.statement.is_none());
        return;
    };
    for (what, got, paths) in
        [("session", r.session, spec.request_session), ("operation", r.operation, spec.request_operation)]
    {
        let (scanned, read) = expected_handle(&body, paths);
        assert_eq!(got, scanned, "{}: the {what} handle differs from the decoded message", spec.name);
        if got.is_some() {
            assert_eq!(got, read, "{}: routed by a {what} handle the backend would not read", spec.name);
        }
    }
    let text = match reader_value(&body, statement_path(spec.name)) {
        Some(Scalar::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    };
    assert_eq!(r.statement, text, "{}: statement", spec.name);
}

/// Target `error_reply`: control bytes `[method, seqid x4, seed lo, seed hi]`, then the message text (for
/// an unknown method: its name, a NUL, the text).
pub fn error_reply(data: &[u8]) {
    let (ctl, rest) = control::<7>(data);
    let seqid = i32::from_le_bytes([ctl[1], ctl[2], ctl[3], ctl[4]]);
    let methods = idl::METHODS;
    let pick = ctl[0] as usize % (methods.len() + 1);
    let (name, text) = match methods.get(pick) {
        Some(m) => (m.name.to_string(), String::from_utf8_lossy(rest).into_owned()),
        None => {
            // Only names the proxy has read from a header reach it: at most MAX_METHOD_NAME_BYTES.
            let (n, t) = rest.split_at(rest.iter().position(|b| *b == 0).unwrap_or(rest.len()));
            let n = String::from_utf8_lossy(&n[..n.len().min(MAX_METHOD_NAME_BYTES / 4)]).into_owned();
            (n, String::from_utf8_lossy(t.get(1..).unwrap_or(&[])).into_owned())
        }
    };
    let bytes = synthesize(&name, seqid, &text);
    let (header, _, used) = decode_message(&bytes, &Limits::REPLY).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((used, header.name.as_str(), header.seqid), (bytes.len(), name.as_str(), seqid));
    let spec = idl::method(&name);
    let with_status = spec.and_then(|m| m.reply_status).is_some();
    let kind = if with_status { MessageKind::Reply } else { MessageKind::Exception };
    assert_eq!(header.kind, kind, "{name}");
    let request = Request {
        header: MessageHeader::new(&name, MessageKind::Call, seqid),
        method: spec,
        session: None,
        operation: None,
        operation_type: None,
        statement: None,
        session_at: None,
        bytes: Bytes::new(),
    };
    let mut scanner = reply_scanner(&request, Limits::REPLY);
    assert_eq!(scanner.feed(&bytes), Ok(bytes.len()), "{name}: the scanner ends the reply elsewhere");
    assert!(scanner.is_done());
    let summary = reply_summary(&scanner);
    let prefix = &text.as_bytes()[..text.len().min(MAX_CAPTURE_BYTES)];
    assert_eq!(summary.error.as_deref(), Some(&*String::from_utf8_lossy(prefix)), "{name}: error text");
    assert_eq!(
        summary.status_code,
        with_status.then_some(i64::from(idl::enums::t_status_code::ERROR_STATUS)),
        "{name}: status"
    );
    assert_eq!(summary.is_exception, !with_status);
    assert!(!summary.succeeded() && summary.new_session.is_none() && summary.new_operation.is_none(), "{name}");
    assert_eq!(summary.bytes, bytes.len() as u64);
    // The same reply read in pieces (as the relay reads a backend's) ends at the same byte.
    let split = scan_split(&bytes, Limits::REPLY, &[], Splits::new(u16::from_le_bytes([ctl[5], ctl[6]])));
    assert_eq!((split.result, split.consumed, split.done), (Ok(()), bytes.len() as u64, true), "{name}: split");
}
