//! A minimal async HS2 client: one TCP connection, one call at a time.
//!
//! Used by the integration tests and the benchmark tool. It speaks unframed binary (NOSASL) or SASL PLAIN;
//! requests and replies are Apache Thrift's generated types, encoded and decoded by the `thrift` crate
//! ([`crate::hs2::rpc`]), so that what it sends and what it understands never comes from the proxy's own
//! codec. Simple rather than fast: a benchmark that measures the proxy, not this client, sends pre-encoded
//! requests with [`Hs2Client::call_raw`].
//!
//! - [`columns`]: reading fetched `TColumn`s. No I/O.

pub mod columns;

use std::fmt;
use std::time::Duration;

use thrift::protocol::TSerializable;
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::conn::{ConnError, ThriftConn};
use crate::hs2::handle::HandleId;
use crate::hs2::rpc::hs2::*;
use crate::hs2::rpc::{self, Method, Reply, Response, RpcError};
use crate::sasl::{self, SaslError};
use crate::thrift::framing::Framing;
use crate::thrift::Limits;

pub use columns::ColumnExt;
pub use rpc::session_handle;

/// Largest frame accepted from a server (a SASL data frame never holds more than one reply).
pub const MAX_FRAME_BYTES: u64 = Limits::REPLY.max_message_bytes;
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
    Protocol(#[from] RpcError),
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

/// An operation handle as the client keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHandle {
    pub id: HandleId,
    pub has_result_set: bool,
    pub op_type: TOperationType,
}

impl OpHandle {
    /// The handle as a request carries it.
    pub fn thrift(&self) -> TOperationHandle {
        TOperationHandle::new(THandleIdentifier::from(&self.id), self.op_type, self.has_result_set, None)
    }

    /// Reads a server's handle; `None` unless guid and secret are 16 bytes each.
    pub fn from_thrift(h: &TOperationHandle) -> Option<OpHandle> {
        let id = HandleId::try_from(&h.operation_id).ok()?;
        Some(OpHandle { id, has_result_set: h.has_result_set, op_type: h.operation_type })
    }
}

/// True for a state an operation never leaves.
pub fn is_terminal(state: TOperationState) -> bool {
    use TOperationState as S;
    [S::FINISHED_STATE, S::CANCELED_STATE, S::CLOSED_STATE, S::ERROR_STATE, S::UKNOWN_STATE, S::TIMEDOUT_STATE]
        .contains(&state)
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

    /// True when the connection is still usable for a call: not broken by an earlier failure, and the
    /// server has neither closed it nor sent anything unasked (a pool's check before it reuses one).
    pub fn is_idle_and_open(&mut self) -> bool {
        !self.broken && self.conn.is_idle_and_open()
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

    /// Calls `M` with `req`; returns the response, whatever its status.
    pub async fn call<M: Method>(&mut self, req: &M::Req) -> Result<M::Resp, ClientError> {
        self.call_named(M::NAME, req).await
    }

    /// Calls a method by name, outside [`Method`]'s table (to test how a server refuses a made-up method).
    pub async fn call_named<Q: TSerializable, R: TSerializable>(
        &mut self,
        method: &str,
        req: &Q,
    ) -> Result<R, ClientError> {
        self.seqid = self.seqid.wrapping_add(1);
        let seqid = self.seqid;
        let reply = self.call_raw(&rpc::encode_call_named(method, seqid, req)?).await?;
        match rpc::decode_reply(&reply, method, seqid, &Limits::REPLY)? {
            Reply::Ok(resp) => Ok(resp),
            Reply::Exception(e) => Err(ClientError::Exception(e.message)),
        }
    }

    /// [`call`](Self::call), then turns a non-success `TStatus` into [`ClientError::Status`].
    pub async fn call_ok<M: Method>(&mut self, req: &M::Req) -> Result<M::Resp, ClientError> {
        let resp = self.call::<M>(req).await?;
        check_status(resp.status())?;
        Ok(resp)
    }

    /// Opens a session (protocol V6); `config` goes into the request's configuration map.
    pub async fn open_session(&mut self, user: Option<&str>, config: &[(&str, &str)]) -> Result<HandleId, ClientError> {
        let resp = self.call_ok::<rpc::OpenSession>(&open_session_req(user, config)).await?;
        let handle = resp.session_handle.as_ref().and_then(|h| HandleId::try_from(&h.session_id).ok());
        handle.ok_or_else(|| ClientError::Unexpected("OpenSession reply has no session handle".into()))
    }

    pub async fn close_session(&mut self, session: &HandleId) -> Result<(), ClientError> {
        self.call_ok::<rpc::CloseSession>(&TCloseSessionReq::new(session_handle(session))).await.map(drop)
    }

    /// Runs `statement` asynchronously (`runAsync = true`).
    pub async fn execute(&mut self, session: &HandleId, statement: &str) -> Result<OpHandle, ClientError> {
        let req = TExecuteStatementReq::new(session_handle(session), statement.to_string(), None, true, None);
        let resp = self.call_ok::<rpc::ExecuteStatement>(&req).await?;
        resp.operation_handle
            .as_ref()
            .and_then(OpHandle::from_thrift)
            .ok_or_else(|| ClientError::Unexpected("ExecuteStatement reply has no operation handle".into()))
    }

    /// One GetOperationStatus: the state and, in `ERROR_STATE`, the error text.
    pub async fn operation_status(&mut self, op: &OpHandle) -> Result<(TOperationState, Option<String>), ClientError> {
        let resp = self.call_ok::<rpc::GetOperationStatus>(&TGetOperationStatusReq::new(op.thrift(), None)).await?;
        Ok((resp.operation_state.unwrap_or(TOperationState::UKNOWN_STATE), resp.error_message))
    }

    /// Polls GetOperationStatus until the operation ends; returns the final state.
    /// `ERROR_STATE` becomes [`ClientError::OperationFailed`] with the server's text.
    pub async fn wait_finished(&mut self, op: &OpHandle) -> Result<TOperationState, ClientError> {
        let mut pause = POLL_FIRST;
        loop {
            let (state, error) = self.operation_status(op).await?;
            if state == TOperationState::ERROR_STATE {
                return Err(ClientError::OperationFailed(error.unwrap_or_default()));
            }
            if is_terminal(state) {
                return Ok(state);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Fetches up to `max_rows` rows: the batch's columns and `hasMoreRows`.
    pub async fn fetch(&mut self, op: &OpHandle, max_rows: i64) -> Result<(Vec<TColumn>, bool), ClientError> {
        let resp = self.call_ok::<rpc::FetchResults>(&fetch_req(op, max_rows)).await?;
        // A row set without columns (no result set, or an old protocol) has no data.
        let columns = resp.results.and_then(|r| r.columns).unwrap_or_default();
        Ok((columns, resp.has_more_rows.unwrap_or(false)))
    }

    /// Fetches every row and returns the first column as `i64`s (NULL and non-integers are errors).
    pub async fn fetch_all_i64(&mut self, op: &OpHandle) -> Result<Vec<i64>, ClientError> {
        let mut out = Vec::new();
        loop {
            let (columns, has_more) = self.fetch(op, FETCH_ALL_BATCH).await?;
            if let Some(first) = columns.first() {
                let values = first.as_i64s().filter(|v| (0..v.len()).all(|i| !first.is_null(i)));
                let values = values
                    .ok_or_else(|| ClientError::Unexpected(format!("rows from {} are not integers", out.len())))?;
                out.extend(values);
            }
            if !has_more {
                return Ok(out);
            }
        }
    }

    pub async fn cancel_operation(&mut self, op: &OpHandle) -> Result<(), ClientError> {
        self.call_ok::<rpc::CancelOperation>(&TCancelOperationReq::new(op.thrift())).await.map(drop)
    }

    pub async fn close_operation(&mut self, op: &OpHandle) -> Result<(), ClientError> {
        self.call_ok::<rpc::CloseOperation>(&TCloseOperationReq::new(op.thrift())).await.map(drop)
    }

    /// GetInfo; returns the `TGetInfoValue` union.
    pub async fn get_info(
        &mut self,
        session: &HandleId,
        info_type: TGetInfoType,
    ) -> Result<TGetInfoValue, ClientError> {
        let resp = self.call_ok::<rpc::GetInfo>(&TGetInfoReq::new(session_handle(session), info_type)).await?;
        Ok(resp.info_value)
    }
}

/// A `TOpenSessionReq` for protocol V6.
pub fn open_session_req(user: Option<&str>, config: &[(&str, &str)]) -> TOpenSessionReq {
    let map = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TOpenSessionReq::new(TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6, user.map(str::to_string), None, Some(map))
}

/// FetchResults of the next `max_rows` rows.
pub fn fetch_req(op: &OpHandle, max_rows: i64) -> TFetchResultsReq {
    TFetchResultsReq::new(op.thrift(), TFetchOrientation::FETCH_NEXT, max_rows, None)
}

/// `Ok` for a successful `TStatus` (or a response without one), else [`ClientError::Status`].
pub fn check_status(status: Option<&TStatus>) -> Result<(), ClientError> {
    match status {
        Some(s) if !rpc::is_success(s) => Err(ClientError::Status {
            code: i64::from(s.status_code.0),
            message: s.error_message.clone().unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}
