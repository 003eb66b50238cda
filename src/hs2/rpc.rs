//! HS2 calls and replies through Apache Thrift's binary protocol (the `thrift` crate) over in-memory
//! buffers, with the generated types of [`super::generated`]: the test bed's codec. No I/O.
//!
//! The envelope is what the compiler's own `*_args`/`*_result` structs write (those are private to the
//! generated code): a call is `message(CALL) args { 1: req }`, a reply `message(REPLY) result { 0: resp }`,
//! a failure `message(EXCEPTION) TApplicationException`. [`Method`] ties a method's name to its request and
//! response types, so that a caller cannot send one method's request under another's name.
//!
//! Every decode is bounded by [`Limits`] through the crate's `TConfiguration` (string and container sizes,
//! nesting depth), and reads a complete message the caller already holds: the `thrift` crate cannot resume a
//! partial parse, so sockets stay in [`crate::conn`].

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TMessageIdentifier, TMessageType,
    TOutputProtocol, TSerializable, TStructIdentifier, TType,
};
use thrift::{ApplicationError, ApplicationErrorKind, TConfiguration};

use super::generated::hs2::*;
use super::handle::{Guid, HandleId, Secret, ID_BYTES};
use crate::thrift::Limits;

pub use super::generated::{hs2, impala};

/// One HS2 method: its name on the wire and the types of its request and response.
pub trait Method {
    const NAME: &'static str;
    type Req: TSerializable;
    type Resp: Response;
}

/// A response type: where its `TStatus` is, and how a failed call is answered.
pub trait Response: TSerializable {
    /// The response's status (every HS2 response has one, except GetQueryId's).
    fn status(&self) -> Option<&TStatus>;
    /// The response with `status` and every other required field at its zero value, as servers answer a
    /// call that failed; `None` for a response without a status (the failure is then an exception).
    fn failed(status: TStatus) -> Option<Self>;
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    Thrift(#[from] thrift::Error),
    #[error("a {0:?} message where a {1:?} was expected")]
    Kind(TMessageType, TMessageType),
    #[error("reply {got} to call {want}")]
    Mismatch { got: String, want: String },
    #[error("{0} has no field {1}")]
    Missing(&'static str, i16),
}

/// What a reply said: the response, or the server's `TApplicationException`.
#[derive(Debug)]
pub enum Reply<R> {
    Ok(R),
    Exception(ApplicationError),
}

/// The crate's decoding bounds from ours.
fn config(limits: &Limits) -> TConfiguration {
    let bytes = usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX);
    TConfiguration::builder()
        .max_string_size(Some(bytes))
        .max_container_size(Some(limits.max_container_len as usize))
        .max_recursion_depth(Some(limits.max_depth))
        .build()
        // Only a frame size above the message size is refused, and neither is set here.
        .unwrap_or_default()
}

fn writer(out: &mut Vec<u8>) -> TBinaryOutputProtocol<&mut Vec<u8>> {
    TBinaryOutputProtocol::with_config(out, true, config(&Limits::REPLY))
}

/// `struct { id: value }`, the shape of both `args` and `result`.
fn write_wrapper<T: TSerializable>(o: &mut dyn TOutputProtocol, name: &str, id: i16, value: &T) -> thrift::Result<()> {
    o.write_struct_begin(&TStructIdentifier::new(name))?;
    o.write_field_begin(&TFieldIdentifier::new(name, TType::Struct, id))?;
    value.write_to_out_protocol(o)?;
    o.write_field_end()?;
    o.write_field_stop()?;
    o.write_struct_end()
}

/// Reads `struct { id: T, ... }`, skipping other fields; `None` when field `id` is absent.
fn read_wrapper<T: TSerializable>(i: &mut dyn TInputProtocol, id: i16) -> thrift::Result<Option<T>> {
    i.read_struct_begin()?;
    let mut value = None;
    loop {
        let field = i.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        match field.id {
            Some(f) if f == id && field.field_type == TType::Struct => value = Some(T::read_from_in_protocol(i)?),
            _ => i.skip(field.field_type)?,
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    Ok(value)
}

/// A call of `M` with sequence id `seqid`.
pub fn encode_call<M: Method>(seqid: i32, req: &M::Req) -> Result<Vec<u8>, RpcError> {
    encode_call_named(M::NAME, seqid, req)
}

/// A call of a method by name (one outside [`Method`]'s table, to test how servers refuse it).
pub fn encode_call_named<T: TSerializable>(method: &str, seqid: i32, req: &T) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    let o = &mut writer(&mut out);
    o.write_message_begin(&TMessageIdentifier::new(method, TMessageType::Call, seqid))?;
    write_wrapper(o, "args", 1, req)?;
    o.write_message_end()?;
    Ok(out)
}

/// Reads a reply to the call `method` #`seqid` whose response is a `R`.
pub fn decode_reply<R: TSerializable>(
    bytes: &[u8],
    method: &str,
    seqid: i32,
    limits: &Limits,
) -> Result<Reply<R>, RpcError> {
    let mut rest = bytes;
    let mut i = TBinaryInputProtocol::with_config(&mut rest, true, config(limits));
    let header = i.read_message_begin()?;
    if header.name != method || header.sequence_number != seqid {
        let got = format!("{} #{}", header.name, header.sequence_number);
        return Err(RpcError::Mismatch { got, want: format!("{method} #{seqid}") });
    }
    match header.message_type {
        TMessageType::Reply => read_wrapper(&mut i, 0)?.map(Reply::Ok).ok_or(RpcError::Missing("result", 0)),
        TMessageType::Exception => {
            Ok(Reply::Exception(thrift::Error::read_application_error_from_in_protocol(&mut i)?))
        }
        other => Err(RpcError::Kind(other, TMessageType::Reply)),
    }
}

/// A message's header, and the bytes of its body.
pub fn decode_header<'a>(bytes: &'a [u8], limits: &Limits) -> Result<(TMessageIdentifier, &'a [u8]), RpcError> {
    let mut rest = bytes;
    let header = TBinaryInputProtocol::with_config(&mut rest, true, config(limits)).read_message_begin()?;
    Ok((header, rest))
}

/// The request in a call's body (`args { 1: req }`).
pub fn decode_args<T: TSerializable>(body: &[u8], limits: &Limits) -> Result<T, RpcError> {
    let mut rest = body;
    let mut i = TBinaryInputProtocol::with_config(&mut rest, true, config(limits));
    read_wrapper(&mut i, 1)?.ok_or(RpcError::Missing("args", 1))
}

/// The header of a reply to `method` #`seqid`; a reply is this followed by a [`encode_result`] body.
pub fn encode_reply_header(method: &str, seqid: i32) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    writer(&mut out).write_message_begin(&TMessageIdentifier::new(method, TMessageType::Reply, seqid))?;
    Ok(out)
}

/// A reply's body: `result { 0: resp }`.
pub fn encode_result<R: TSerializable>(resp: &R) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    write_wrapper(&mut writer(&mut out), "result", 0, resp)?;
    Ok(out)
}

/// A `TApplicationException` answering `method` #`seqid`.
pub fn encode_exception(
    method: &str,
    seqid: i32,
    kind: ApplicationErrorKind,
    message: &str,
) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    let o = &mut writer(&mut out);
    o.write_message_begin(&TMessageIdentifier::new(method, TMessageType::Exception, seqid))?;
    thrift::Error::write_application_error_to_out_protocol(&ApplicationError::new(kind, message), o)?;
    o.write_message_end()?;
    Ok(out)
}

impl From<&HandleId> for THandleIdentifier {
    fn from(id: &HandleId) -> THandleIdentifier {
        THandleIdentifier::new(id.guid.0.to_vec(), id.secret.0.to_vec())
    }
}

impl TryFrom<&THandleIdentifier> for HandleId {
    type Error = RpcError;

    /// Guid and secret must be 16 bytes each.
    fn try_from(id: &THandleIdentifier) -> Result<HandleId, RpcError> {
        let guid: [u8; ID_BYTES] = id.guid.as_slice().try_into().map_err(|_| RpcError::Missing("guid", 1))?;
        let secret: [u8; ID_BYTES] = id.secret.as_slice().try_into().map_err(|_| RpcError::Missing("secret", 2))?;
        Ok(HandleId { guid: Guid(guid), secret: Secret(secret) })
    }
}

/// `TSessionHandle { sessionId }`.
pub fn session_handle(id: &HandleId) -> TSessionHandle {
    TSessionHandle::new(THandleIdentifier::from(id))
}

/// `TStatus` SUCCESS.
pub fn ok() -> TStatus {
    TStatus::new(TStatusCode::SUCCESS_STATUS, None, None, None, None)
}

/// `TStatus` ERROR with `message`, as Impala fills it (SQLSTATE `HY000`, error code 0).
pub fn error_status(message: &str) -> TStatus {
    let sqlstate = crate::hs2::reply::SQLSTATE_GENERAL_ERROR.to_string();
    TStatus::new(TStatusCode::ERROR_STATUS, None, sqlstate, 0, message.to_string())
}

/// True for SUCCESS, SUCCESS_WITH_INFO and STILL_EXECUTING (which is not a failure).
pub fn is_success(status: &TStatus) -> bool {
    use TStatusCode as C;
    [C::SUCCESS_STATUS, C::SUCCESS_WITH_INFO_STATUS, C::STILL_EXECUTING_STATUS].contains(&status.status_code)
}

#[path = "rpc_methods.rs"]
mod methods;
pub use methods::*;

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
