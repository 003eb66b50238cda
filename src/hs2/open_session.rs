//! What an OpenSession request says about who the session is for: the `username` (which impalad uses on
//! unauthenticated connections) and the configuration map (query options, delegation keys). No I/O.
//!
//! OpenSession is once per session and small, so it is decoded whole with the dynamic codec; the bytes
//! forwarded upstream stay the client's own.

use super::idl::fields::{t_open_session_req, t_open_session_resp};
use crate::thrift::value::{decode_message, encode_message, Struct, Value};
use crate::thrift::{Limits, ProtocolError, TType, CALL_ARGUMENT_FIELD};

/// Configuration keys that name a delegated (effective) user: Impala's, then Hive's and Spark's.
pub const DELEGATION_KEYS: &[&str] = &["impala.doas.user", "hive.server2.proxy.user"];

/// The parts of `TOpenSessionReq` the proxy acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenSessionView {
    pub username: Option<String>,
    /// Key/value pairs in the order the client sent them; non-text entries are skipped.
    pub configuration: Vec<(String, String)>,
}

impl OpenSessionView {
    /// Decodes an OpenSession call message (`args { 1: TOpenSessionReq }`).
    pub fn parse(message: &[u8], limits: &Limits) -> Result<OpenSessionView, ProtocolError> {
        let (_, args, _) = decode_message(message, limits)?;
        let Some(req) = args.get_struct(CALL_ARGUMENT_FIELD) else { return Ok(OpenSessionView::default()) };
        let username = req.get_str(t_open_session_req::USERNAME).filter(|u| !u.is_empty()).map(str::to_string);
        let configuration = req
            .get(t_open_session_req::CONFIGURATION)
            .and_then(Value::as_map)
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
            .collect();
        Ok(OpenSessionView { username, configuration })
    }

    /// The value of a configuration key, if sent.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.configuration.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The user the session is opened on behalf of, when the client delegates.
    pub fn delegated_user(&self) -> Option<&str> {
        DELEGATION_KEYS.iter().find_map(|k| self.config(k)).filter(|u| !u.is_empty())
    }
}

/// The OpenSession call `message` with its delegation rewritten: every key of [`DELEGATION_KEYS`] the
/// client sent is dropped (compared case-insensitively, as impalad does) and each of `keys` set to `user`.
/// The rest of the request is kept as sent; the message is re-encoded (OpenSession is small and once per
/// session).
pub fn with_delegation(message: &[u8], limits: &Limits, keys: &[&str], user: &str) -> Result<Vec<u8>, ProtocolError> {
    let (header, mut args, _) = decode_message(message, limits)?;
    let mut req = match args.fields.iter().position(|(id, _)| *id == CALL_ARGUMENT_FIELD) {
        Some(i) => match args.fields.remove(i).1 {
            Value::Struct(s) => s,
            _ => return Err(ProtocolError::Truncated),
        },
        None => Struct::new(),
    };
    let mut entries = match req.fields.iter().position(|(id, _)| *id == t_open_session_req::CONFIGURATION) {
        Some(i) => match req.fields.remove(i).1 {
            Value::Map(_, _, entries) => entries,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let delegates = |k: &Value| k.as_str().is_some_and(|k| DELEGATION_KEYS.iter().any(|d| d.eq_ignore_ascii_case(k)));
    entries.retain(|(k, _)| !delegates(k));
    entries.extend(keys.iter().map(|key| (Value::string(key), Value::string(user))));
    req.fields.push((t_open_session_req::CONFIGURATION, Value::Map(TType::String, TType::String, entries)));
    args.fields.insert(0, (CALL_ARGUMENT_FIELD, req.into_value()));
    Ok(encode_message(&header, &args))
}

/// The field of `TOpenSessionResp` that holds the new session handle (for tests and the mock).
pub const RESP_SESSION_HANDLE: i16 = t_open_session_resp::SESSION_HANDLE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::idl::names;
    use crate::thrift::{MessageHeader, MessageKind};

    fn open(username: Option<&str>, conf: &[(&str, &str)]) -> Vec<u8> {
        let map = conf.iter().map(|(k, v)| (Value::string(k), Value::string(v))).collect();
        let req = Struct::new()
            .with(t_open_session_req::CLIENT_PROTOCOL, Value::I32(5))
            .with_opt(t_open_session_req::USERNAME, username.map(Value::string))
            .with(t_open_session_req::CONFIGURATION, Value::Map(TType::String, TType::String, map));
        let body = Struct::new().with(1, req.into_value());
        encode_message(&MessageHeader::new(names::OPEN_SESSION, MessageKind::Call, 1), &body)
    }

    #[test]
    fn the_user_and_the_delegated_user_are_read() {
        let v =
            OpenSessionView::parse(&open(Some("carol"), &[("impala.doas.user", "dave")]), &Limits::REQUEST).unwrap();
        assert_eq!(v.username.as_deref(), Some("carol"));
        assert_eq!(v.delegated_user(), Some("dave"));
        let v = OpenSessionView::parse(&open(None, &[("hive.server2.proxy.user", "erin")]), &Limits::REQUEST).unwrap();
        assert_eq!((v.username.as_deref(), v.delegated_user()), (None, Some("erin")));
        let v = OpenSessionView::parse(&open(Some(""), &[("idle_session_timeout", "900")]), &Limits::REQUEST).unwrap();
        assert_eq!(
            (v.username.as_deref(), v.delegated_user(), v.config("idle_session_timeout")),
            (None, None, Some("900"))
        );
        assert!(OpenSessionView::parse(b"junk", &Limits::REQUEST).is_err());
    }

    #[test]
    fn delegation_is_rewritten_and_the_rest_kept() {
        let sent = open(Some("hue"), &[("idle_session_timeout", "900"), ("Impala.DoAs.User", "mallory")]);
        let out = with_delegation(&sent, &Limits::REQUEST, &["hive.server2.proxy.user"], "alice").unwrap();
        let v = OpenSessionView::parse(&out, &Limits::REQUEST).unwrap();
        assert_eq!(v.username.as_deref(), Some("hue"));
        assert_eq!(v.config("idle_session_timeout"), Some("900"));
        assert_eq!(v.config("Impala.DoAs.User"), None, "the client's own key is gone");
        assert_eq!(v.delegated_user(), Some("alice"));
        let (h, _, used) = decode_message(&out, &Limits::REQUEST).unwrap();
        assert_eq!((h.name.as_str(), h.seqid, used), (names::OPEN_SESSION, 1, out.len()));
        let bare = encode_message(
            &MessageHeader::new(names::OPEN_SESSION, MessageKind::Call, 3),
            &Struct::new().with(1, Struct::new().with(1, Value::I32(5)).into_value()),
        );
        let out = with_delegation(&bare, &Limits::REQUEST, &["impala.doas.user"], "bob").unwrap();
        assert_eq!(OpenSessionView::parse(&out, &Limits::REQUEST).unwrap().delegated_user(), Some("bob"));
        // A backend of unknown kind gets both keys: each server ignores the other's.
        let out = with_delegation(&sent, &Limits::REQUEST, DELEGATION_KEYS, "carol").unwrap();
        let v = OpenSessionView::parse(&out, &Limits::REQUEST).unwrap();
        assert_eq!((v.config("impala.doas.user"), v.config("hive.server2.proxy.user")), (Some("carol"), Some("carol")));
        assert_eq!(v.config("Impala.DoAs.User"), None);
    }
}
