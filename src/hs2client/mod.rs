//! A minimal async HS2 client: one TCP connection, one call at a time.
//!
//! Used by the integration tests, the benchmark tool and the proxy's health probes. It speaks unframed
//! binary (NOSASL) or SASL PLAIN, builds requests with [`crate::thrift::value`] and decodes whole
//! replies: simple rather than fast. A benchmark that measures the proxy, not this client, sends
//! pre-encoded requests with [`Hs2Client::call_raw`].
//!
//! - [`wire`]: handle, status and row-set shapes, shared with the mock impalad. No I/O.

pub mod wire;

use std::fmt;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};

use crate::conn::{ConnError, ThriftConn};
use crate::hs2::handle::HandleId;
use crate::hs2::idl::fields as f;
use crate::hs2::idl::{enums, names};
use crate::hs2::requests;
use crate::sasl::{self, SaslError};
use crate::thrift::framing::Framing;
use crate::thrift::value::{decode_message, encode_message, Struct, Value};
use crate::thrift::{Limits, MessageHeader, MessageKind, ProtocolError, TType};

pub use wire::{Column, OpHandle, Status};

/// Largest frame accepted from a server (a SASL data frame never holds more than one reply).
const MAX_FRAME_BYTES: u64 = Limits::REPLY.max_message_bytes;
/// Rows asked for per FetchResults by [`Hs2Client::fetch_all_i64`] (impyla's default).
const FETCH_ALL_BATCH: i64 = 10_240;
/// Polling interval bounds for [`Hs2Client::wait_finished`]: start fast, back off to the cap.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(100);

/// How the client authenticates.
#[derive(Clone)]
pub enum ClientAuth {
    /// Unframed binary protocol, no handshake (Impala's `NOSASL`).
    NoSasl,
    /// SASL PLAIN, then 4-byte-length frames.
    Plain { user: String, password: String },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::NoSasl => f.write_str("NoSasl"),
            ClientAuth::Plain { user, .. } => write!(f, "Plain {{ user: {user:?}, password: <redacted> }}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("SASL: {0}")]
    Sasl(#[from] SaslError),
    #[error("undecodable reply: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the server closed the connection")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// An earlier call failed midway: the stream may hold half a reply, so it cannot carry another call.
    #[error("the connection is unusable after an earlier failure")]
    Broken,
    /// The server answered with a `TApplicationException` (e.g. an unknown method).
    #[error("TApplicationException: {0}")]
    Exception(String),
    /// The response's `TStatus` was not a success.
    #[error("status {code}: {message}")]
    Status { code: i64, message: String },
    /// The operation ended in `ERROR_STATE`; the text is its `errorMessage`.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

pub struct Hs2Client {
    conn: ThriftConn,
    seqid: i32,
    timeout: Option<Duration>,
    broken: bool,
}

impl Hs2Client {
    /// Connects and, for [`ClientAuth::Plain`], authenticates.
    pub async fn connect<A: ToSocketAddrs>(addr: A, auth: &ClientAuth) -> Result<Hs2Client, ClientError> {
        let stream = TcpStream::connect(addr).await.map_err(ClientError::Connect)?;
        // Calls are small request/reply pairs: Nagle would add a delay to every one. Best effort.
        let _ = stream.set_nodelay(true);
        let mut conn = ThriftConn::new(Box::new(stream), Framing::Unframed, MAX_FRAME_BYTES);
        if let ClientAuth::Plain { user, password } = auth {
            sasl::client_handshake(&mut conn, user, password, MAX_FRAME_BYTES).await?;
        }
        Ok(Hs2Client { conn, seqid: 0, timeout: None, broken: false })
    }

    /// A client over a connection opened elsewhere (TLS, HTTP), its authentication already done.
    pub fn over(conn: ThriftConn) -> Hs2Client {
        Hs2Client { conn, seqid: 0, timeout: None, broken: false }
    }

    /// Bounds every later call (write and reply); a call that times out leaves the client [`Broken`].
    ///
    /// [`Broken`]: ClientError::Broken
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The next call gets seqid `next`, later ones count on from it. A test bed tells its clients'
    /// calls from the proxy's own (health probes, handle lookups, clean-up: small seqids) by it.
    pub fn set_next_seqid(&mut self, next: i32) {
        self.seqid = next.wrapping_sub(1);
    }

    /// Sends one pre-encoded message and returns the raw reply message (payload, frames stripped).
    pub async fn call_raw(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.call_raw_bytes(bytes).await.map(Vec::from)
    }

    /// [`Hs2Client::call_raw`] without the copy into a `Vec` (the benchmark reads 16 MiB replies).
    pub async fn call_raw_bytes(&mut self, bytes: &[u8]) -> Result<bytes::Bytes, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        // Cleared only when a whole reply arrived: any failure in between leaves the stream mid-message.
        self.broken = true;
        let conn = &mut self.conn;
        let exchange = async move {
            conn.write_message(bytes).await?;
            conn.read_message(Limits::REPLY).await?.ok_or(ClientError::Closed)
        };
        let reply = match self.timeout {
            None => exchange.await?,
            Some(t) => tokio::time::timeout(t, exchange).await.map_err(|_| ClientError::Timeout(t))??,
        };
        self.broken = false;
        Ok(reply)
    }

    /// Calls `method` with `args {1: req}`; returns the reply's `result.0` (the response struct).
    pub async fn call(&mut self, method: &str, req: Struct) -> Result<Struct, ClientError> {
        self.seqid = self.seqid.wrapping_add(1);
        let seqid = self.seqid;
        let header = MessageHeader::new(method, MessageKind::Call, seqid);
        let bytes = encode_message(&header, &Struct::new().with(1, req.into_value()));
        let reply = self.call_raw(&bytes).await?;
        let (header, mut body, _) = decode_message(&reply, &Limits::REPLY)?;
        if header.name != method || header.seqid != seqid {
            let got = format!("{} #{}", header.name, header.seqid);
            return Err(ClientError::Unexpected(format!("reply {got} to call {method} #{seqid}")));
        }
        match header.kind {
            MessageKind::Reply => match wire::take_field(&mut body, 0) {
                Some(Value::Struct(resp)) => Ok(resp),
                _ => Err(ClientError::Unexpected(format!("{method} reply has no result"))),
            },
            MessageKind::Exception => {
                let text = body.get_str(f::t_application_exception::MESSAGE).unwrap_or_default();
                Err(ClientError::Exception(text.to_string()))
            }
            kind => Err(ClientError::Unexpected(format!("a {kind} message in reply to {method}"))),
        }
    }

    /// [`call`](Self::call), then turns a non-success `TStatus` into [`ClientError::Status`].
    pub async fn call_ok(&mut self, method: &str, req: Struct) -> Result<Struct, ClientError> {
        let resp = self.call(method, req).await?;
        check_status(method, &resp)?;
        Ok(resp)
    }

    /// Opens a session (protocol V6); `config` goes into the request's configuration map.
    pub async fn open_session(&mut self, user: Option<&str>, config: &[(&str, &str)]) -> Result<HandleId, ClientError> {
        let resp = self.call_ok(names::OPEN_SESSION, open_session_req(user, config)).await?;
        resp.get_struct(f::t_open_session_resp::SESSION_HANDLE)
            .and_then(wire::read_handle)
            .ok_or_else(|| ClientError::Unexpected("OpenSession reply has no session handle".into()))
    }

    pub async fn close_session(&mut self, session: &HandleId) -> Result<(), ClientError> {
        self.call_ok(names::CLOSE_SESSION, session_req(session)).await.map(drop)
    }

    /// Runs `statement` asynchronously (`runAsync = true`).
    pub async fn execute(&mut self, session: &HandleId, statement: &str) -> Result<OpHandle, ClientError> {
        use f::t_execute_statement_req as exec;
        let req = session_req(session)
            .with(exec::STATEMENT, Value::string(statement))
            .with(exec::RUN_ASYNC, Value::Bool(true));
        let resp = self.call_ok(names::EXECUTE_STATEMENT, req).await?;
        resp.get_struct(f::t_execute_statement_resp::OPERATION_HANDLE)
            .and_then(wire::read_op_handle)
            .ok_or_else(|| ClientError::Unexpected("ExecuteStatement reply has no operation handle".into()))
    }

    /// One GetOperationStatus: the state and, in `ERROR_STATE`, the error text.
    pub async fn operation_status(&mut self, op: &OpHandle) -> Result<(i32, Option<String>), ClientError> {
        use f::t_get_operation_status_resp as status;
        let resp = self.call_ok(names::GET_OPERATION_STATUS, op_req(op)).await?;
        let state = resp.get_i64(status::OPERATION_STATE).map(|s| s as i32).unwrap_or(wire::op_state::UKNOWN_STATE);
        Ok((state, resp.get_str(status::ERROR_MESSAGE).map(str::to_string)))
    }

    /// Polls GetOperationStatus until the operation ends; returns the final state.
    /// `ERROR_STATE` becomes [`ClientError::OperationFailed`] with the server's text.
    pub async fn wait_finished(&mut self, op: &OpHandle) -> Result<i32, ClientError> {
        let mut pause = POLL_FIRST;
        loop {
            let (state, error) = self.operation_status(op).await?;
            if state == wire::op_state::ERROR_STATE {
                return Err(ClientError::OperationFailed(error.unwrap_or_default()));
            }
            if wire::op_state::is_terminal(state) {
                return Ok(state);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Fetches up to `max_rows` rows: the batch's columns and `hasMoreRows`.
    pub async fn fetch(&mut self, op: &OpHandle, max_rows: i64) -> Result<(Vec<Column>, bool), ClientError> {
        use f::{t_fetch_results_req as req_f, t_fetch_results_resp as resp_f};
        let next = enums::t_fetch_orientation::FETCH_NEXT;
        let req = op_req(op).with(req_f::ORIENTATION, Value::I32(next)).with(req_f::MAX_ROWS, Value::I64(max_rows));
        let mut resp = self.call_ok(names::FETCH_RESULTS, req).await?;
        let has_more = resp.get_bool(resp_f::HAS_MORE_ROWS).unwrap_or(false);
        let columns = match wire::take_field(&mut resp, resp_f::RESULTS) {
            Some(Value::Struct(rowset)) => wire::read_columns(rowset),
            _ => Some(Vec::new()),
        };
        let columns = columns.ok_or_else(|| ClientError::Unexpected("malformed TRowSet".into()))?;
        Ok((columns, has_more))
    }

    /// Fetches every row and returns the first column as `i64`s (NULL and non-integers are errors).
    pub async fn fetch_all_i64(&mut self, op: &OpHandle) -> Result<Vec<i64>, ClientError> {
        let mut out = Vec::new();
        loop {
            let (columns, has_more) = self.fetch(op, FETCH_ALL_BATCH).await?;
            if let Some(first) = columns.into_iter().next() {
                for (i, v) in first.values.iter().enumerate() {
                    match v.as_i64() {
                        Some(x) if !first.is_null(i) => out.push(x),
                        _ => return Err(ClientError::Unexpected(format!("row {} is not an integer", out.len()))),
                    }
                }
            }
            if !has_more {
                return Ok(out);
            }
        }
    }

    pub async fn cancel_operation(&mut self, op: &OpHandle) -> Result<(), ClientError> {
        self.call_ok(names::CANCEL_OPERATION, op_req(op)).await.map(drop)
    }

    pub async fn close_operation(&mut self, op: &OpHandle) -> Result<(), ClientError> {
        self.call_ok(names::CLOSE_OPERATION, op_req(op)).await.map(drop)
    }

    /// GetInfo; returns the `TGetInfoValue` union (`get_str(STRING_VALUE)` for the string answers).
    pub async fn get_info(&mut self, session: &HandleId, info_type: i32) -> Result<Struct, ClientError> {
        let req = session_req(session).with(f::t_get_info_req::INFO_TYPE, Value::I32(info_type));
        let mut resp = self.call_ok(names::GET_INFO, req).await?;
        match wire::take_field(&mut resp, f::t_get_info_resp::INFO_VALUE) {
            Some(Value::Struct(info)) => Ok(info),
            _ => Err(ClientError::Unexpected("GetInfo reply has no infoValue".into())),
        }
    }
}

/// A `TOpenSessionReq` for protocol V6.
pub fn open_session_req(user: Option<&str>, config: &[(&str, &str)]) -> Struct {
    let map = config.iter().map(|(k, v)| (Value::string(k), Value::string(v))).collect();
    use f::t_open_session_req as open;
    Struct::new()
        .with(open::CLIENT_PROTOCOL, Value::I32(wire::PROTOCOL_V6))
        .with_opt(open::USERNAME, user.map(Value::string))
        .with(open::CONFIGURATION, Value::Map(TType::String, TType::String, map))
}

/// A request whose first field is its session handle (every session-level HS2 request has it there).
pub fn session_req(session: &HandleId) -> Struct {
    Struct::new().with(f::t_get_info_req::SESSION_HANDLE, requests::session_handle(session))
}

/// A request whose first field is its operation handle (every operation-level HS2 request has it there).
pub fn op_req(op: &OpHandle) -> Struct {
    Struct::new().with(f::t_fetch_results_req::OPERATION_HANDLE, wire::operation_handle_value(op))
}

/// `Ok` for a successful `TStatus`, else [`ClientError::Status`] (or `Unexpected` when it is missing).
pub fn check_status(method: &str, resp: &Struct) -> Result<(), ClientError> {
    match wire::read_status(resp) {
        Some(s) if s.is_success() => Ok(()),
        Some(Status { code, message }) => Err(ClientError::Status { code, message }),
        None => Err(ClientError::Unexpected(format!("{method} reply has no status"))),
    }
}
