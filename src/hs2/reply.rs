//! Replies the proxy writes itself: HS2 error replies valid for each method's IDL. No I/O.
//!
//! A client that sent a call must get a reply it can parse, even when the proxy cannot route the call.
//! For a method whose response carries a `TStatus`, the reply is that response with the status set to
//! ERROR and every other *required* field filled with a zero value from the IDL schema (Hive JDBC
//! validates required fields). Methods without a status (GetQueryId) and methods the IDL does not know
//! get a `TApplicationException`, which every Thrift client raises as an error.

use super::handle::Guid;
use super::idl::enums::{t_application_exception_type as app, t_status_code};
use super::idl::fields::{t_application_exception, t_status};
use super::idl::{self, StructKind, Ty};
use crate::thrift::value::{decode_message, encode_message, Struct, Value};
use crate::thrift::{Limits, MessageHeader, MessageKind, TType, REPLY_SUCCESS_FIELD};

/// The SQLSTATE Impala uses for general errors.
pub const SQLSTATE_GENERAL_ERROR: &str = "HY000";

/// Nesting bound while filling required fields (the HS2 schemas are shallow).
const MAX_FILL_DEPTH: usize = 8;

/// Impala's text for a session it does not hold; Hue re-opens a session when it sees it.
pub fn invalid_session_text(guid: &Guid) -> String {
    format!("Invalid session id: {}", guid.impala_id())
}

/// Impala 4's text for an unknown query handle.
pub fn invalid_query_text(guid: &Guid) -> String {
    format!("Invalid or unknown query handle: {}.", guid.impala_id())
}

/// A `TStatus` struct.
pub fn status(code: i32, message: Option<&str>) -> Struct {
    let s = Struct::new().with(t_status::STATUS_CODE, Value::I32(code));
    match message {
        None => s,
        Some(m) => s
            .with(t_status::SQL_STATE, Value::string(SQLSTATE_GENERAL_ERROR))
            .with(t_status::ERROR_CODE, Value::I32(0))
            .with(t_status::ERROR_MESSAGE, Value::string(m)),
    }
}

/// What a small reply said: success, an error status with its text, or an exception.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// SUCCESS or SUCCESS_WITH_INFO; the response struct.
    Ok(Struct),
    /// Any other status; its `errorMessage`.
    Error(String),
    /// A `TApplicationException`; its message.
    Exception(String),
}

/// Reads a whole reply message to one of the proxy's own calls (probes, lookups, operator actions).
pub fn read_answer(reply: &[u8], limits: &Limits) -> Result<Answer, String> {
    let (header, body, _) = decode_message(reply, limits).map_err(|e| format!("bad reply: {e}"))?;
    if header.kind == MessageKind::Exception {
        let text = body.get_str(t_application_exception::MESSAGE).unwrap_or("exception");
        return Ok(Answer::Exception(text.to_string()));
    }
    let resp = body.get_struct(REPLY_SUCCESS_FIELD).cloned().unwrap_or_default();
    let status_field = idl::method(&header.name).and_then(|m| m.status_field).unwrap_or(1);
    let status = resp.get_struct(status_field);
    let ok = [t_status_code::SUCCESS_STATUS, t_status_code::SUCCESS_WITH_INFO_STATUS].map(i64::from);
    match status.and_then(|s| s.get_i64(t_status::STATUS_CODE)) {
        Some(code) if ok.contains(&code) => Ok(Answer::Ok(resp)),
        _ => Ok(Answer::Error(status.and_then(|s| s.get_str(t_status::ERROR_MESSAGE)).unwrap_or_default().to_string())),
    }
}

/// An error reply to the call `method` with sequence id `seqid`.
pub fn error_reply(method: &str, seqid: i32, message: &str) -> Vec<u8> {
    let spec = idl::method(method);
    let (Some(spec), Some(status_field)) = (spec, spec.and_then(|m| m.status_field)) else {
        let kind = if spec.is_some() { app::INTERNAL_ERROR } else { app::UNKNOWN_METHOD };
        return application_exception(method, seqid, kind, message);
    };
    let mut resp = required_fields(spec.response, 0);
    resp.fields.retain(|(id, _)| *id != status_field);
    resp.fields.insert(0, (status_field, status(t_status_code::ERROR_STATUS, Some(message)).into_value()));
    let body = Struct::new().with(REPLY_SUCCESS_FIELD, resp.into_value());
    encode_message(&MessageHeader::new(method, MessageKind::Reply, seqid), &body)
}

/// The reply to a request the proxy cannot read to its end (too large, malformed, over budget): the
/// stream position is lost, so the connection closes after it.
pub fn protocol_error(method: &str, seqid: i32, message: &str) -> Vec<u8> {
    application_exception(method, seqid, app::PROTOCOL_ERROR, message)
}

/// A `TApplicationException` reply; `kind` is a `TApplicationExceptionType`.
pub fn application_exception(method: &str, seqid: i32, kind: i32, message: &str) -> Vec<u8> {
    let body = Struct::new()
        .with(t_application_exception::MESSAGE, Value::string(message))
        .with(t_application_exception::TYPE, Value::I32(kind));
    encode_message(&MessageHeader::new(method, MessageKind::Exception, seqid), &body)
}

/// A struct holding zero values for the required fields of `name` (a union gets its first field).
pub fn required_fields(name: &str, depth: usize) -> Struct {
    let Some(spec) = idl::struct_spec(name) else { return Struct::new() };
    let mut s = Struct::new();
    for f in spec.fields {
        let wanted = f.required || (spec.kind == StructKind::Union && s.fields.is_empty());
        if wanted && depth < MAX_FILL_DEPTH {
            s.fields.push((f.id, zero(&f.ty, depth + 1)));
        }
    }
    s
}

fn zero(ty: &Ty, depth: usize) -> Value {
    match ty {
        Ty::Bool => Value::Bool(false),
        Ty::Byte => Value::Byte(0),
        Ty::I16 => Value::I16(0),
        Ty::I32 => Value::I32(0),
        Ty::I64 => Value::I64(0),
        Ty::Double => Value::Double(0.0),
        Ty::Bytes => Value::Bytes(Vec::new()),
        Ty::Enum(name) => {
            let first = idl::ENUMS.iter().find(|e| e.name == *name).and_then(|e| e.values.first());
            Value::I32(first.map(|(_, v)| *v).unwrap_or(0))
        }
        Ty::Struct(name) => required_fields(name, depth).into_value(),
        Ty::List(t) => Value::List(wire_type(t), Vec::new()),
        Ty::Set(t) => Value::Set(wire_type(t), Vec::new()),
        Ty::Map(k, v) => Value::Map(wire_type(k), wire_type(v), Vec::new()),
    }
}

fn wire_type(ty: &Ty) -> TType {
    match ty {
        Ty::Bool => TType::Bool,
        Ty::Byte => TType::Byte,
        Ty::I16 => TType::I16,
        Ty::I32 | Ty::Enum(_) => TType::I32,
        Ty::I64 => TType::I64,
        Ty::Double => TType::Double,
        Ty::Bytes => TType::String,
        Ty::Struct(_) => TType::Struct,
        Ty::List(_) => TType::List,
        Ty::Set(_) => TType::Set,
        Ty::Map(..) => TType::Map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (MessageHeader, Struct) {
        let (h, b, used) = decode_message(bytes, &Limits::REPLY).unwrap();
        assert_eq!(used, bytes.len());
        (h, b)
    }

    #[test]
    fn every_method_gets_a_reply_with_its_required_fields() {
        for m in idl::METHODS {
            let (h, body) = decode(&error_reply(m.name, 9, "no"));
            assert_eq!((h.name.as_str(), h.seqid), (m.name, 9));
            let Some(status_field) = m.status_field else {
                assert_eq!(h.kind, MessageKind::Exception, "{}", m.name);
                continue;
            };
            assert_eq!(h.kind, MessageKind::Reply);
            let resp = body.get_struct(0).unwrap();
            let st = resp.get_struct(status_field).unwrap();
            let code = st.get_i64(t_status::STATUS_CODE);
            assert_eq!(
                (code, st.get_str(t_status::ERROR_MESSAGE)),
                (Some(t_status_code::ERROR_STATUS.into()), Some("no"))
            );
            assert_eq!(read_answer(&error_reply(m.name, 9, "no"), &Limits::REPLY), Ok(Answer::Error("no".into())));
            for f in idl::struct_spec(m.response).unwrap().fields.iter().filter(|f| f.required) {
                assert!(resp.get(f.id).is_some(), "{}: required field {} missing", m.name, f.name);
            }
        }
    }

    #[test]
    fn get_info_error_has_its_union_set() {
        let (_, body) = decode(&error_reply(idl::names::GET_INFO, 1, "x"));
        let info = body.get_struct(0).and_then(|r| r.get_struct(2)).unwrap();
        assert_eq!(info.fields.len(), 1, "a union holds exactly one field");
    }

    #[test]
    fn unknown_methods_get_an_application_exception() {
        let (h, body) = decode(&error_reply("Nope", 3, "unknown"));
        assert_eq!(h.kind, MessageKind::Exception);
        let (msg, kind) = (body.get_str(t_application_exception::MESSAGE), body.get_i64(t_application_exception::TYPE));
        assert_eq!((msg, kind), (Some("unknown"), Some(app::UNKNOWN_METHOD.into())));
    }

    #[test]
    fn hue_healing_texts() {
        let g = Guid([0; 16]);
        assert_eq!(invalid_session_text(&g), "Invalid session id: 0000000000000000:0000000000000000");
        assert!(invalid_query_text(&g).starts_with("Invalid or unknown query handle: "));
    }
}
