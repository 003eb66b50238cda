//! Thrift binary protocol and transport framing, sans I/O.
//!
//! - [`scanner`]: a resumable, copy-free walker that finds where one message ends and captures the few
//!   fields the proxy routes by, while the rest of the bytes stream past.
//! - [`value`]: a small dynamic value model that encodes and decodes *complete* messages; used for the
//!   replies the proxy synthesizes, health probes, the mock impalad and tests. Never on the relay path.
//! - [`framing`]: telling transports apart from the first bytes, frame and SASL negotiation codecs.
//!
//! No I/O happens in this module: callers own the sockets and buffers.

pub mod framing;
pub mod scanner;
pub mod value;

use std::fmt;

/// Wire type ids of the binary protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TType {
    Stop = 0,
    Bool = 2,
    Byte = 3,
    Double = 4,
    I16 = 6,
    I32 = 8,
    I64 = 10,
    String = 11,
    Struct = 12,
    Map = 13,
    Set = 14,
    List = 15,
}

impl TType {
    pub fn from_u8(b: u8) -> Option<TType> {
        Some(match b {
            0 => TType::Stop,
            2 => TType::Bool,
            3 => TType::Byte,
            4 => TType::Double,
            6 => TType::I16,
            8 => TType::I32,
            10 => TType::I64,
            11 => TType::String,
            12 => TType::Struct,
            13 => TType::Map,
            14 => TType::Set,
            15 => TType::List,
            _ => return None,
        })
    }

    /// Encoded size of a fixed-width value, `None` for variable-width types.
    pub fn fixed_width(self) -> Option<u64> {
        match self {
            TType::Bool | TType::Byte => Some(1),
            TType::I16 => Some(2),
            TType::I32 => Some(4),
            TType::Double | TType::I64 => Some(8),
            _ => None,
        }
    }
}

/// The message kinds of the binary protocol's strict header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Call = 1,
    Reply = 2,
    Exception = 3,
    Oneway = 4,
}

impl MessageKind {
    pub fn from_u8(b: u8) -> Option<MessageKind> {
        Some(match b {
            1 => MessageKind::Call,
            2 => MessageKind::Reply,
            3 => MessageKind::Exception,
            4 => MessageKind::Oneway,
            _ => return None,
        })
    }
}

/// `80 01`: the version bytes that open every strict binary-protocol message.
pub const BINARY_VERSION_1: u16 = 0x8001;

/// Thrift's RPC envelope: a call's body is the method's arguments struct, where a parameter declared
/// `1: TReq req` (every HS2 method has exactly that one) is field 1...
pub const CALL_ARGUMENT_FIELD: i16 = 1;
/// ...and a reply's body is the result struct, whose field 0 is the return value.
pub const REPLY_SUCCESS_FIELD: i16 = 0;

/// The header of one message: method name, kind and sequence id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    pub name: MethodName,
    pub kind: MessageKind,
    pub seqid: i32,
}

impl MessageHeader {
    pub fn new(name: &str, kind: MessageKind, seqid: i32) -> MessageHeader {
        MessageHeader { name: MethodName::new(name), kind, seqid }
    }
}

/// A message's method name, held inline when it is short (every HS2 method name is): each proxied call
/// reads two headers, and a heap string for each was two of the call's three allocations.
#[derive(Clone, PartialEq, Eq)]
pub struct MethodName(NameRepr);

/// The longest name held inline ("GetPrimaryKeys", "CancelDelegationToken": 21 bytes at most in HS2).
const INLINE_NAME_BYTES: usize = 30;

#[derive(Clone, PartialEq, Eq)]
enum NameRepr {
    Inline { len: u8, bytes: [u8; INLINE_NAME_BYTES] },
    Heap(Box<str>),
}

impl MethodName {
    pub fn new(name: &str) -> MethodName {
        let mut bytes = [0u8; INLINE_NAME_BYTES];
        match bytes.get_mut(..name.len()) {
            Some(head) => {
                head.copy_from_slice(name.as_bytes());
                MethodName(NameRepr::Inline { len: name.len() as u8, bytes })
            }
            None => MethodName(NameRepr::Heap(name.into())),
        }
    }

    /// The name in `bytes`, if they are UTF-8. An ASCII name (every HS2 one) is checked with one cheap
    /// pass, not a full UTF-8 validation: two headers a call made that a tenth of the scanner's cost.
    pub fn from_utf8(bytes: &[u8]) -> Option<MethodName> {
        let mut inline = [0u8; INLINE_NAME_BYTES];
        match inline.get_mut(..bytes.len()) {
            Some(head) if bytes.is_ascii() => {
                head.copy_from_slice(bytes);
                Some(MethodName(NameRepr::Inline { len: bytes.len() as u8, bytes: inline }))
            }
            _ => std::str::from_utf8(bytes).ok().map(MethodName::new),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the bytes were copied whole from a `&str` (`new`) or are ASCII (`from_utf8`).
            NameRepr::Inline { len, bytes } => unsafe { std::str::from_utf8_unchecked(&bytes[..*len as usize]) },
            NameRepr::Heap(name) => name,
        }
    }
}

impl std::ops::Deref for MethodName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for MethodName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MethodName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Bounds on every number a peer controls while a message is scanned or decoded.
///
/// Each one turns a hostile or broken peer into a typed error instead of unbounded memory or recursion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (header and body) accepted, in bytes.
    pub max_message_bytes: u64,
    /// Deepest nesting of structs and containers.
    pub max_depth: usize,
    /// Most elements in one list, set or map.
    pub max_container_len: u32,
}

/// Method names longer than this are not HS2 methods: refuse before buffering them.
pub const MAX_METHOD_NAME_BYTES: usize = 256;

/// At most this many bytes of a captured string are kept; the rest streams past.
/// Error texts are matched on their beginning, handles are 16 bytes.
pub const MAX_CAPTURE_BYTES: usize = 4096;

impl Limits {
    /// Defaults for requests from clients: a statement text is far below this.
    pub const REQUEST: Limits = Limits { max_message_bytes: 64 << 20, max_depth: 64, max_container_len: 1 << 20 };
    /// Defaults for replies from backends: result batches can be large, but they stream through.
    pub const REPLY: Limits = Limits { max_message_bytes: 4 << 30, max_depth: 64, max_container_len: 1 << 27 };
}

/// Why a byte stream is not an acceptable Thrift message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a strict binary-protocol message (first bytes {0:02x} {1:02x})")]
    BadVersion(u8, u8),
    #[error("unknown message kind {0}")]
    BadMessageKind(u8),
    #[error("a {0} message where a call was expected")]
    NotACall(MessageKind),
    #[error("method name of {0} bytes exceeds {MAX_METHOD_NAME_BYTES}")]
    NameTooLong(i64),
    #[error("method name is not UTF-8")]
    NameNotUtf8,
    #[error("unknown field type {0}")]
    BadType(u8),
    #[error("negative length {0}")]
    NegativeLength(i32),
    #[error("message exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("container of {0} elements exceeds the limit of {1}")]
    ContainerTooLong(i64, u32),
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("message ends early")]
    Truncated,
    #[error("{0}")]
    Other(String),
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            MessageKind::Call => "call",
            MessageKind::Reply => "reply",
            MessageKind::Exception => "exception",
            MessageKind::Oneway => "oneway",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod method_name_tests {
    use super::*;

    #[test]
    fn names_of_every_length_read_back_whole() {
        // Inline up to the limit, on the heap past it: the same name either way.
        for len in [0, 1, INLINE_NAME_BYTES - 1, INLINE_NAME_BYTES, INLINE_NAME_BYTES + 1, MAX_METHOD_NAME_BYTES] {
            let name: String = "abcdefghij".chars().cycle().take(len).collect();
            let m = MethodName::new(&name);
            assert_eq!(m.as_str(), name);
            assert_eq!(m, name.as_str());
            assert_eq!(m.to_string(), name);
            assert_eq!(format!("{m:?}"), format!("{name:?}"));
        }
        assert!(matches!(MethodName::new("CancelDelegationToken").0, NameRepr::Inline { .. }));
        // Multi-byte UTF-8 stays whole.
        assert_eq!(MethodName::new("Größe→").as_str(), "Größe→");
        // From bytes: ASCII inline, other UTF-8 checked whole, anything else refused.
        for name in ["GetInfo", "", "Größe→", &"x".repeat(INLINE_NAME_BYTES), &"y".repeat(INLINE_NAME_BYTES + 1)] {
            assert_eq!(MethodName::from_utf8(name.as_bytes()).as_ref().map(MethodName::as_str), Some(name));
        }
        assert_eq!(MethodName::from_utf8(b"Get\xffInfo"), None);
        assert_eq!(MethodName::from_utf8(b"\xe2\x82"), None);
    }

    #[test]
    fn a_long_method_name_survives_the_scanner() {
        let name = "M".repeat(200);
        let mut bytes = vec![0x80, 0x01, 0x00, 0x01];
        bytes.extend_from_slice(&(name.len() as i32).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&7i32.to_be_bytes());
        let (header, used) = scanner::parse_header(&bytes).unwrap().unwrap();
        assert_eq!((header.name.as_str(), header.seqid, used), (name.as_str(), 7, bytes.len()));
    }
}
