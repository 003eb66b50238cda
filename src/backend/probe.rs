//! Asking a backend at the HS2 level: the health probe, and "do you hold this session?" for handles
//! the proxy does not know (after a restart, or opened through another proxy instance).

use std::time::{Duration, Instant};

use super::connect::{self, Endpoint, OpenError};
use super::health::Evidence;
use super::pool::{Credentials, Upstream};
use crate::config::BackendKind;
use crate::conn::{ConnError, ThriftConn};
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::requests;
use crate::thrift::value::{decode_message, Struct};
use crate::thrift::{Limits, MessageKind};

/// `TGetInfoType.CLI_SERVER_NAME`: one of the two info types every HS2 server answers.
pub const CLI_SERVER_NAME: i32 = 13;
/// Impala's answer to OpenSession, GetInfo and ExecuteStatement while it shuts down.
pub const SHUTTING_DOWN: &str = "Server is being shut down";

/// Probe replies are small; anything larger is not a GetInfo reply.
const PROBE_LIMITS: Limits = Limits { max_message_bytes: 1 << 20, max_depth: 32, max_container_len: 4096 };

/// What a probe needs to know.
pub struct ProbeTarget<'a> {
    /// Opened like the pool's connections (TCP or TLS, binary or HTTP), but never pooled.
    pub endpoint: Endpoint<'a>,
    pub creds: &'a Credentials,
    pub timeout: Duration,
}

/// Probes a backend on a fresh connection with `GetInfo(CLI_SERVER_NAME)` and an all-zero session
/// handle, which opens nothing. Returns the evidence and how long it took.
pub async fn probe(t: &ProbeTarget<'_>) -> (Evidence, Duration) {
    let started = Instant::now();
    let evidence = match tokio::time::timeout(t.timeout, probe_exchange(t)).await {
        Ok(e) => e,
        Err(_) => Evidence::Failed(format!("no reply within {:?}", t.timeout)),
    };
    (evidence, started.elapsed())
}

async fn probe_exchange(t: &ProbeTarget<'_>) -> Evidence {
    let mut conn = match connect::open(&t.endpoint, t.creds, false).await {
        Ok(opened) => opened.conn,
        // The server answered at the protocol level: it is alive, the probe's credentials are not.
        Err(OpenError::AuthRefused(_)) => return Evidence::Alive,
        Err(OpenError::Connect(e)) => return Evidence::Failed(format!("connect: {e}")),
        Err(OpenError::Sasl(e)) => return Evidence::Failed(format!("SASL: {e}")),
        Err(e) => return Evidence::Failed(e.to_string()),
    };
    let zero = HandleId { guid: Guid([0; 16]), secret: Secret([0; 16]) };
    match call(&mut conn, &requests::get_info(&zero, CLI_SERVER_NAME, 1)).await {
        Err(e) => Evidence::Failed(e),
        Ok(Reply::Exception) | Ok(Reply::Ok(_)) => Evidence::Alive,
        Ok(Reply::Error(text)) if text.contains(SHUTTING_DOWN) => Evidence::ShuttingDown(text),
        // "Invalid session id" and the like: a working server refusing the zero handle.
        Ok(Reply::Error(_)) => Evidence::Alive,
    }
}

enum Reply {
    Ok(Struct),
    Error(String),
    /// A TApplicationException: the server is there, it just refused the call.
    Exception,
}

/// One call on a connection; the reply is decoded whole (these replies are small).
async fn call(conn: &mut ThriftConn, bytes: &[u8]) -> Result<Reply, String> {
    let io = async {
        conn.write_message(bytes).await?;
        conn.read_message(PROBE_LIMITS).await?.ok_or(ConnError::Eof)
    };
    let reply = match io.await {
        Ok(reply) => reply,
        // An HTTP backend refused the credentials: it is there, it just refused the call.
        Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(Reply::Exception),
        Err(e) => return Err(e.to_string()),
    };
    let (header, body, _) = decode_message(&reply, &PROBE_LIMITS).map_err(|e| format!("bad reply: {e}"))?;
    if header.kind == MessageKind::Exception {
        return Ok(Reply::Exception);
    }
    let resp = body.get_struct(0).cloned().unwrap_or_default();
    let status = resp.get_struct(1);
    match status.and_then(|s| s.get_i64(1)) {
        Some(0) | Some(1) => Ok(Reply::Ok(resp)),
        _ => Ok(Reply::Error(status.and_then(|s| s.get_str(5)).unwrap_or_default().to_string())),
    }
}

/// Asks whether the backend behind `up` holds `session`, with a call that changes nothing where the
/// server allows it: impalad validates the session in GetInfo; Hive and Spark answer GetInfo for any
/// handle, so there the proxy runs GetCatalogs and closes the operation it opened.
pub async fn holds_session(up: &mut Upstream, session: &HandleId, kind: BackendKind) -> Result<bool, String> {
    match kind {
        BackendKind::Impala => {
            let reply = call(&mut up.conn, &requests::get_info(session, CLI_SERVER_NAME, 1)).await?;
            Ok(matches!(reply, Reply::Ok(_)))
        }
        BackendKind::Hive => {
            let req = Struct::new().with(1, requests::session_handle(session));
            let Reply::Ok(resp) = call(&mut up.conn, &requests::call("GetCatalogs", 1, req)).await? else {
                return Ok(false);
            };
            if let Some(op) = resp.get(2) {
                let close = Struct::new().with(1, op.clone());
                call(&mut up.conn, &requests::call("CloseOperation", 2, close)).await?;
            }
            Ok(true)
        }
    }
}

/// Asks whether the backend behind `up` knows `operation` (GetOperationStatus changes nothing).
pub async fn holds_operation(up: &mut Upstream, operation: &HandleId) -> Result<bool, String> {
    let req = Struct::new().with(1, requests::operation_handle(operation));
    Ok(matches!(call(&mut up.conn, &requests::call("GetOperationStatus", 1, req)).await?, Reply::Ok(_)))
}
