//! Views of requests and replies: the handles and status that routing needs, read by the scanner.
//! No I/O; the original bytes are never re-encoded.

use std::sync::OnceLock;

use bytes::Bytes;

use super::handle::{HandleId, ID_BYTES};
use super::idl::{self, Effect, HandlePaths, MethodSpec};
use crate::thrift::scanner::{FieldPath, Scanner};
use crate::thrift::{Limits, MessageHeader, MessageKind, ProtocolError};

/// A path that matches no field: stands in for a handle a method does not carry.
const NOWHERE: FieldPath = &[];
/// A TApplicationException's message.
const EXCEPTION_MESSAGE: FieldPath = &[idl::fields::t_application_exception::MESSAGE];
/// The reply captures of a method the IDL does not know: only an exception's message, in its slot.
const UNKNOWN_METHOD_REPLY: [FieldPath; 8] =
    [NOWHERE, NOWHERE, NOWHERE, NOWHERE, NOWHERE, NOWHERE, EXCEPTION_MESSAGE, NOWHERE];

/// The capture lists of one method, in fixed slots (see the `SLOT_` constants).
struct Captures {
    request: [FieldPath; 6],
    reply: [FieldPath; 8],
    /// The IDL requires the request's session handle, its operation handle.
    requires: (bool, bool),
}

const SLOT_SESSION_GUID: usize = 0;
const SLOT_SESSION_SECRET: usize = 1;
const SLOT_OP_GUID: usize = 2;
const SLOT_OP_SECRET: usize = 3;
const SLOT_STATUS_CODE: usize = 4;
const SLOT_ERROR_MESSAGE: usize = 5;
const SLOT_EXCEPTION_MESSAGE: usize = 6;
/// Reply only: GetOperationStatus's `operationState`.
const SLOT_OPERATION_STATE: usize = 7;
/// Request only: the statement text, for the operator view.
const SLOT_STATEMENT: usize = 4;
/// Request only: the operation handle's `operationType`.
const SLOT_OP_TYPE: usize = 5;

/// Where a method's request carries a statement (`TExecuteStatementReq.statement`), bounded like every
/// capture by `MAX_CAPTURE_BYTES`.
fn statement_path(method: &str) -> FieldPath {
    use idl::fields::{t_execute_planned_statement_req as planned, t_execute_statement_req as exec};
    const EXECUTE: FieldPath = &[1, exec::STATEMENT];
    const PLANNED: FieldPath = &[1, planned::STATEMENT_REQ, exec::STATEMENT];
    match method {
        idl::names::EXECUTE_STATEMENT => EXECUTE,
        idl::names::EXECUTE_PLANNED_STATEMENT => PLANNED,
        _ => NOWHERE,
    }
}

/// Where a request carries its operation handle's `operationType`: Hive and Spark find an operation by
/// identifier *and* type (their `OperationHandle.equals`), so a lookup must ask with the client's type.
/// The guid path is `<operationHandle>.operationId.guid`; the type is `<operationHandle>.operationType`.
/// Built once per method (see [`captures`]), hence leaked.
fn operation_type_path(h: Option<HandlePaths>) -> FieldPath {
    use idl::fields::t_operation_handle::OPERATION_TYPE;
    let Some(handle) = h.and_then(|h| h.guid.len().checked_sub(2).map(|n| &h.guid[..n])) else { return NOWHERE };
    let mut path = handle.to_vec();
    path.push(OPERATION_TYPE);
    Box::leak(path.into_boxed_slice())
}

/// Where a method's reply carries an operation's state (`TGetOperationStatusResp.operationState`): the
/// proxy learns from it whether a session statement succeeded (`hs2::session_state`).
fn operation_state_path(method: &str) -> FieldPath {
    const STATE: FieldPath = &[0, idl::fields::t_get_operation_status_resp::OPERATION_STATE];
    if method == idl::names::GET_OPERATION_STATUS {
        STATE
    } else {
        NOWHERE
    }
}

fn handle_paths(h: Option<HandlePaths>) -> [FieldPath; 2] {
    h.map(|h| [h.guid, h.secret]).unwrap_or([NOWHERE, NOWHERE])
}

fn captures(index: usize) -> &'static Captures {
    static ALL: OnceLock<Vec<Captures>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        idl::METHODS
            .iter()
            .map(|m| {
                let [sg, ss] = handle_paths(m.request_session);
                let [og, os] = handle_paths(m.request_operation);
                let [rsg, rss] = handle_paths(m.reply_session);
                let [rog, ros] = handle_paths(m.reply_operation);
                let (code, msg) = m.reply_status.map(|s| (s.code, s.message)).unwrap_or((NOWHERE, NOWHERE));
                let statement = statement_path(m.name);
                let op_type = operation_type_path(m.request_operation);
                Captures {
                    request: [sg, ss, og, os, statement, op_type],
                    reply: [rsg, rss, rog, ros, code, msg, EXCEPTION_MESSAGE, operation_state_path(m.name)],
                    requires: (requires(m, m.request_session), requires(m, m.request_operation)),
                }
            })
            .collect()
    });
    &all[index]
}

/// Which kind of handle a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    Session,
    Operation,
}

fn is_call(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::Call | MessageKind::Oneway)
}

/// A whole client request and the handles it names.
#[derive(Debug, Clone)]
pub struct Request {
    pub header: MessageHeader,
    /// `None` for a method the IDL does not know.
    pub method: Option<&'static MethodSpec>,
    pub session: Option<HandleId>,
    pub operation: Option<HandleId>,
    /// The `operationType` of `operation`'s handle, as the client sent it.
    pub operation_type: Option<i32>,
    /// ExecuteStatement's statement (its first `MAX_CAPTURE_BYTES`), for the operator view.
    pub statement: Option<String>,
    /// Where the session handle's guid and secret bytes sit in `bytes`, when the request carries one.
    pub session_at: Option<(usize, usize)>,
    /// The original bytes, forwarded unchanged.
    pub bytes: Bytes,
}

/// Whether `m`'s request struct declares the field holding `paths` (`args.req.<field>...`) required.
fn requires(m: &MethodSpec, paths: Option<HandlePaths>) -> bool {
    let Some(spec) = idl::struct_spec(m.request) else { return false };
    let field = paths.and_then(|p| p.guid.get(1).copied());
    field.is_some_and(|id| spec.fields.iter().any(|f| f.id == id && f.required))
}

/// The captures of a request, by its method's name (none for a method the IDL does not know).
pub fn request_captures(name: &str) -> &'static [FieldPath] {
    idl::method_index(name).map_or(&[], |i| &captures(i).request)
}

/// A scanner that finds both where a request ends and the handles it names, in one pass: its captures
/// follow the method its header names. [`Request::scanned`] reads the request out of it.
pub fn request_scanner(limits: Limits) -> Scanner {
    Scanner::choosing(limits, request_captures)
}

impl Request {
    /// Reads the handles out of one complete request message, in one scan that also checks that the
    /// message ends where `bytes` does.
    pub fn parse(bytes: Bytes, limits: Limits) -> Result<Request, ProtocolError> {
        let mut scanner = request_scanner(limits);
        let fed = scanner.feed(&bytes);
        // A non-call is refused for what it is, even when its body would be refused too.
        if let Some(h) = scanner.header().filter(|h| !is_call(h.kind)) {
            return Err(ProtocolError::NotACall(h.kind));
        }
        if !scanner.is_done() || fed? != bytes.len() {
            return Err(ProtocolError::Truncated);
        }
        Request::scanned(bytes, &scanner)
    }

    /// The request in `bytes`, which `scanner` (a [`request_scanner`]) has just read whole.
    pub fn scanned(bytes: Bytes, scanner: &Scanner) -> Result<Request, ProtocolError> {
        let header = scanner.header().cloned().ok_or(ProtocolError::Truncated)?;
        // A client's reply or exception is no request: impalad's Thrift server would drop the connection,
        // so forwarding it would break an upstream connection and count against a healthy backend.
        if !is_call(header.kind) {
            return Err(ProtocolError::NotACall(header.kind));
        }
        let index = idl::method_index(&header.name);
        let (mut session, mut operation, mut statement, mut operation_type, mut session_at) =
            (None, None, None, None, None);
        if index.is_some() {
            session = HandleId::from_captures(scanner.found(SLOT_SESSION_GUID), scanner.found(SLOT_SESSION_SECRET));
            operation = HandleId::from_captures(scanner.found(SLOT_OP_GUID), scanner.found(SLOT_OP_SECRET));
            operation_type = scanner.found(SLOT_OP_TYPE).and_then(|t| t.as_int()).and_then(|t| i32::try_from(t).ok());
            statement = scanner
                .found(SLOT_STATEMENT)
                .and_then(|s| s.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let at = |slot| scanner.found_offset(slot).and_then(|o| usize::try_from(o).ok());
            session_at = session.and(at(SLOT_SESSION_GUID).zip(at(SLOT_SESSION_SECRET)));
        }
        let method = index.map(|i| &idl::METHODS[i]);
        Ok(Request { header, method, session, operation, operation_type, statement, session_at, bytes })
    }

    /// The handle the IDL requires of this request that it lacks or sends malformed (guid and secret must
    /// be 16 bytes each), if any. A server's Thrift reader refuses such a call by closing the connection
    /// without a reply, which the proxy would take for a broken backend: it answers the client itself.
    pub fn lacks_required_handle(&self) -> Option<HandleKind> {
        let (session, operation) = captures(self.method?.index).requires;
        if session && self.session.is_none() {
            return Some(HandleKind::Session);
        }
        if operation && self.operation.is_none() {
            return Some(HandleKind::Operation);
        }
        None
    }

    /// This request with its session handle replaced by `upstream` in place (guid and secret have fixed
    /// lengths, so no other byte moves): for a session the proxy moved to another backend, whose handle
    /// there differs from the one the client keeps. `None` when the request carries no session handle.
    pub fn with_session_handle(&self, upstream: &HandleId) -> Option<Request> {
        let (g, s) = self.session_at?;
        let mut bytes = self.bytes.to_vec();
        bytes.get_mut(g..g + ID_BYTES)?.copy_from_slice(&upstream.guid.0);
        bytes.get_mut(s..s + ID_BYTES)?.copy_from_slice(&upstream.secret.0);
        Some(Request { session: Some(*upstream), bytes: Bytes::from(bytes), ..self.clone() })
    }

    pub fn name(&self) -> &str {
        &self.header.name
    }

    /// What a successful call does to the proxy's tables (`None` for unknown methods).
    pub fn effect(&self) -> Effect {
        self.method.map_or(Effect::None, |m| m.effect)
    }

    pub fn opens_session(&self) -> bool {
        self.effect() == Effect::OpensSession
    }
}

/// What a reply said, as far as routing cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplySummary {
    /// `TStatus.statusCode`, when the reply has a status.
    pub status_code: Option<i64>,
    /// `TStatus.errorMessage` (its beginning), or a TApplicationException's message.
    pub error: Option<String>,
    pub new_session: Option<HandleId>,
    pub new_operation: Option<HandleId>,
    pub is_exception: bool,
    /// GetOperationStatus's `operationState`.
    pub operation_state: Option<i64>,
    pub bytes: u64,
}

impl ReplySummary {
    /// Succeeded: a status of SUCCESS or SUCCESS_WITH_INFO (or STILL_EXECUTING), and no exception.
    pub fn succeeded(&self) -> bool {
        use idl::enums::t_status_code::{STILL_EXECUTING_STATUS, SUCCESS_STATUS, SUCCESS_WITH_INFO_STATUS};
        let ok = [SUCCESS_STATUS, SUCCESS_WITH_INFO_STATUS, STILL_EXECUTING_STATUS].map(i64::from);
        !self.is_exception && self.status_code.is_some_and(|c| ok.contains(&c))
    }

    /// An error the backend answered with: an exception, or a status of ERROR or worse.
    pub fn is_error(&self) -> bool {
        let error = i64::from(idl::enums::t_status_code::ERROR_STATUS);
        self.is_exception || self.status_code.is_some_and(|c| c >= error)
    }
}

/// Starts a scanner for the reply to `request`.
pub fn reply_scanner(request: &Request, limits: Limits) -> Scanner {
    match request.method {
        Some(m) => Scanner::new(limits, &captures(m.index).reply),
        // A method the IDL does not know still gets its TApplicationException's text read.
        None => Scanner::new(limits, &UNKNOWN_METHOD_REPLY),
    }
}

/// Reads the summary out of a reply scanner that has finished.
pub fn reply_summary(scanner: &Scanner) -> ReplySummary {
    let text = |slot| scanner.found(slot).and_then(|s| s.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
    let is_exception = scanner.header().map(|h| h.kind == MessageKind::Exception).unwrap_or(false);
    let new_op = HandleId::from_captures(scanner.found(SLOT_OP_GUID), scanner.found(SLOT_OP_SECRET));
    ReplySummary {
        status_code: scanner.found(SLOT_STATUS_CODE).and_then(|s| s.as_int()),
        error: if is_exception { text(SLOT_EXCEPTION_MESSAGE) } else { text(SLOT_ERROR_MESSAGE) },
        new_session: HandleId::from_captures(scanner.found(SLOT_SESSION_GUID), scanner.found(SLOT_SESSION_SECRET)),
        new_operation: new_op,
        is_exception,
        operation_state: scanner.found(SLOT_OPERATION_STATE).and_then(|s| s.as_int()),
        bytes: scanner.consumed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::handle::{Guid, Secret};
    use crate::hs2::reply;
    use crate::thrift::value::{encode_message, Struct, Value};

    fn handle_struct(id: &HandleId) -> Value {
        let hid = Struct::new().with(1, Value::Bytes(id.guid.0.to_vec())).with(2, Value::Bytes(id.secret.0.to_vec()));
        Struct::new().with(1, hid.into_value()).into_value()
    }

    #[test]
    fn request_handles_are_found_for_both_kinds() {
        let s = HandleId { guid: Guid([1; 16]), secret: Secret([2; 16]) };
        let o = HandleId { guid: Guid([3; 16]), secret: Secret([4; 16]) };
        let req = Struct::new().with(1, handle_struct(&o)).with(2, handle_struct(&s));
        let body = Struct::new().with(1, req.into_value());
        let bytes = encode_message(&MessageHeader::new("GetExecSummary", MessageKind::Call, 5), &body);
        let r = Request::parse(Bytes::from(bytes), Limits::REQUEST).unwrap();
        assert_eq!((r.session, r.operation), (Some(s), Some(o)));
        assert_eq!(r.method.map(|m| m.name), Some("GetExecSummary"));
    }

    /// The rewrite of a moved session's handle changes exactly its 32 bytes, wherever the handle sits.
    #[test]
    fn a_session_handle_is_rewritten_in_place_and_nothing_else() {
        let client = HandleId { guid: Guid([1; 16]), secret: Secret([2; 16]) };
        let upstream = HandleId { guid: Guid([8; 16]), secret: Secret([9; 16]) };
        let o = HandleId { guid: Guid([3; 16]), secret: Secret([2; 16]) };
        let summary = Struct::new().with(1, handle_struct(&o)).with(2, handle_struct(&client));
        let planned = Struct::new()
            .with(1, Struct::new().with(1, handle_struct(&client)).with(2, Value::string("select 1")).into_value())
            .with(2, Struct::new().into_value());
        for (name, req) in [("GetExecSummary", summary), ("ExecutePlannedStatement", planned)] {
            let bytes = encode_message(
                &MessageHeader::new(name, MessageKind::Call, 5),
                &Struct::new().with(1, req.into_value()),
            );
            let r = Request::parse(Bytes::from(bytes.clone()), Limits::REQUEST).unwrap();
            let moved = r.with_session_handle(&upstream).unwrap();
            assert_eq!(moved.bytes.len(), bytes.len());
            let changed: Vec<usize> = (0..bytes.len()).filter(|i| bytes[*i] != moved.bytes[*i]).collect();
            assert_eq!(changed.len(), 32, "{name}: only the guid and the secret change");
            let again = Request::parse(moved.bytes.clone(), Limits::REQUEST).unwrap();
            assert_eq!(again.session, Some(upstream), "{name}");
            assert_eq!(again.operation, r.operation, "{name}: the operation handle is untouched");
        }
    }

    #[test]
    fn the_operation_type_is_captured_where_the_handle_is() {
        let o = HandleId { guid: Guid([3; 16]), secret: Secret([4; 16]) };
        let hid = Struct::new().with(1, Value::Bytes(o.guid.0.to_vec())).with(2, Value::Bytes(o.secret.0.to_vec()));
        let schemas = idl::enums::t_operation_type::GET_SCHEMAS;
        let handle = Struct::new().with(1, hid.into_value()).with(2, Value::I32(schemas)).with(3, Value::Bool(true));
        let req = Struct::new().with(1, handle.into_value()).with(2, Value::I32(0)).with(3, Value::I64(10));
        let bytes = encode_message(
            &MessageHeader::new("FetchResults", MessageKind::Call, 2),
            &Struct::new().with(1, req.into_value()),
        );
        let r = Request::parse(Bytes::from(bytes), Limits::REQUEST).unwrap();
        assert_eq!((r.operation, r.operation_type), (Some(o), Some(schemas)));
    }

    #[test]
    fn a_required_handle_that_is_missing_or_malformed_is_found() {
        let call = |method: &str, req: Struct| {
            let bytes = encode_message(
                &MessageHeader::new(method, MessageKind::Call, 1),
                &Struct::new().with(1, req.into_value()),
            );
            Request::parse(Bytes::from(bytes), Limits::REQUEST).unwrap()
        };
        let handle = |guid_len: usize| {
            let id = Struct::new().with(1, Value::Bytes(vec![1; guid_len])).with(2, Value::Bytes(vec![2; 16]));
            Struct::new().with(1, id.into_value()).into_value()
        };
        let info = |h: Value| Struct::new().with(1, h).with(2, Value::I32(18));
        assert_eq!(call("GetInfo", info(handle(16))).lacks_required_handle(), None);
        assert_eq!(call("GetInfo", info(handle(15))).lacks_required_handle(), Some(HandleKind::Session));
        assert_eq!(
            call("GetInfo", Struct::new().with(2, Value::I32(18))).lacks_required_handle(),
            Some(HandleKind::Session)
        );
        let fetch = Struct::new().with(1, handle(3)).with(2, Value::I32(0)).with(3, Value::I64(10));
        assert_eq!(call("FetchResults", fetch).lacks_required_handle(), Some(HandleKind::Operation));
        // Optional handles (Impala's GetExecSummary) and calls without one (OpenSession) are fine.
        assert_eq!(call("GetExecSummary", Struct::new()).lacks_required_handle(), None);
        assert_eq!(call("OpenSession", Struct::new().with(1, Value::I32(5))).lacks_required_handle(), None);
    }

    #[test]
    fn execute_statement_text_is_captured_and_bounded() {
        let s = HandleId { guid: Guid([1; 16]), secret: Secret([2; 16]) };
        let parse = |name: &str, req: Struct| {
            let bytes = encode_message(
                &MessageHeader::new(name, MessageKind::Call, 1),
                &Struct::new().with(1, req.into_value()),
            );
            Request::parse(Bytes::from(bytes), Limits::REQUEST).unwrap()
        };
        let exec = |text: &str| Struct::new().with(1, handle_struct(&s)).with(2, Value::string(text));
        let r = parse("ExecuteStatement", exec("select 1"));
        assert_eq!((r.session, r.statement.as_deref()), (Some(s), Some("select 1")));
        let long = "x".repeat(crate::thrift::MAX_CAPTURE_BYTES * 3);
        let r = parse("ExecuteStatement", exec(&long));
        assert_eq!(r.statement.map(|t| t.len()), Some(crate::thrift::MAX_CAPTURE_BYTES));
        let planned = Struct::new().with(1, exec("select 2").into_value()).with(2, Struct::new().into_value());
        assert_eq!(parse("ExecutePlannedStatement", planned).statement.as_deref(), Some("select 2"));
        assert_eq!(parse("GetInfo", Struct::new().with(1, handle_struct(&s))).statement, None);
    }

    #[test]
    fn only_calls_are_requests() {
        let body = Struct::new().with(1, Struct::new().into_value());
        for kind in [MessageKind::Reply, MessageKind::Exception] {
            let bytes = encode_message(&MessageHeader::new("OpenSession", kind, 1), &body);
            assert_eq!(Request::parse(Bytes::from(bytes), Limits::REQUEST).err(), Some(ProtocolError::NotACall(kind)));
        }
        let oneway = encode_message(&MessageHeader::new("OpenSession", MessageKind::Oneway, 1), &body);
        assert!(Request::parse(Bytes::from(oneway), Limits::REQUEST).is_ok());
    }

    #[test]
    fn unknown_methods_parse_without_handles() {
        let body = Struct::new().with(1, Struct::new().into_value());
        let bytes = encode_message(&MessageHeader::new("Frobnicate", MessageKind::Call, 1), &body);
        let r = Request::parse(Bytes::from(bytes), Limits::REQUEST).unwrap();
        assert!(r.method.is_none() && r.session.is_none());
    }

    #[test]
    fn reply_summary_reads_status_and_new_handles() {
        let s = HandleId { guid: Guid([5; 16]), secret: Secret([6; 16]) };
        let status = Struct::new().with(1, Value::I32(0));
        let resp = Struct::new().with(1, status.into_value()).with(2, Value::I32(5)).with(3, handle_struct(&s));
        let bytes = encode_message(
            &MessageHeader::new("OpenSession", MessageKind::Reply, 1),
            &Struct::new().with(0, resp.into_value()),
        );
        let req = Request {
            header: MessageHeader::new("OpenSession", MessageKind::Call, 1),
            method: idl::method("OpenSession"),
            session: None,
            operation: None,
            operation_type: None,
            statement: None,
            session_at: None,
            bytes: Bytes::new(),
        };
        let mut sc = reply_scanner(&req, Limits::REPLY);
        sc.feed(&bytes).unwrap();
        let sum = reply_summary(&sc);
        assert_eq!(sum.new_session, Some(s));
        assert!(sum.succeeded());
        // A synthesized error reply reads back as an error with its text.
        let err = reply::error_reply("OpenSession", 1, "boom");
        let mut sc = reply_scanner(&req, Limits::REPLY);
        sc.feed(&err).unwrap();
        let sum = reply_summary(&sc);
        assert_eq!(
            (sum.status_code, sum.error.as_deref()),
            (Some(idl::enums::t_status_code::ERROR_STATUS.into()), Some("boom"))
        );
    }

    /// GetOperationStatus's operation state is read (only there: OpenSession's field 2 is something else).
    #[test]
    fn the_operation_state_of_get_operation_status_is_read() {
        let reply = |method: &str| {
            let status = Struct::new().with(1, Value::I32(0));
            let resp = Struct::new().with(1, status.into_value()).with(2, Value::I32(5));
            let bytes = encode_message(
                &MessageHeader::new(method, MessageKind::Reply, 1),
                &Struct::new().with(0, resp.into_value()),
            );
            let req = Request {
                header: MessageHeader::new(method, MessageKind::Call, 1),
                method: idl::method(method),
                session: None,
                operation: None,
                operation_type: None,
                statement: None,
                session_at: None,
                bytes: Bytes::new(),
            };
            let mut sc = reply_scanner(&req, Limits::REPLY);
            sc.feed(&bytes).unwrap();
            reply_summary(&sc).operation_state
        };
        assert_eq!(reply("GetOperationStatus"), Some(i64::from(idl::enums::t_operation_state::ERROR_STATE)));
        assert_eq!(reply("OpenSession"), None);
    }
}
