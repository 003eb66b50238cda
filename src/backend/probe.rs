//! Asking a backend at the HS2 level: the health probe (which also tells what kind of server it is), and
//! "do you hold this handle?" for handles the proxy does not know (after a restart, or opened through
//! another proxy instance).

use std::time::{Duration, Instant};

use super::connect::{self, Endpoint, OpenError};
use super::health::Evidence;
use super::pool::Credentials;
use crate::config::BackendKind;
use crate::conn::{ConnError, ThriftConn};
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::idl::enums::t_get_info_type::CLI_SERVER_NAME;
use crate::hs2::idl::fields::t_get_catalogs_resp;
use crate::hs2::reply::{read_answer, Answer};
use crate::hs2::requests;
use crate::thrift::Limits;

/// Impala's answer to OpenSession, GetInfo and ExecuteStatement while it shuts down.
pub const SHUTTING_DOWN: &str = "Server is being shut down";

/// Replies to the proxy's own calls are small; anything larger is not the reply asked for.
pub const SMALL_REPLY: Limits = Limits { max_message_bytes: 1 << 20, max_depth: 32, max_container_len: 4096 };

/// What a probe needs to know.
pub struct ProbeTarget<'a> {
    /// Opened like the pool's connections (TCP or TLS, binary or HTTP), but never pooled.
    pub endpoint: Endpoint<'a>,
    pub creds: &'a Credentials,
    pub timeout: Duration,
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub evidence: Evidence,
    /// The server's kind, when its answer told: impalad refuses the all-zero session handle in GetInfo;
    /// Hive and Spark answer GetInfo for any handle.
    pub kind: Option<BackendKind>,
    pub latency: Duration,
}

/// The all-zero handle, which no server holds.
pub fn zero_handle() -> HandleId {
    HandleId { guid: Guid([0; 16]), secret: Secret([0; 16]) }
}

/// Probes a backend on a fresh connection with `GetInfo(CLI_SERVER_NAME)` and an all-zero session
/// handle, which opens nothing.
pub async fn probe(t: &ProbeTarget<'_>) -> ProbeOutcome {
    let started = Instant::now();
    let (evidence, kind) = match tokio::time::timeout(t.timeout, probe_exchange(t)).await {
        Ok(found) => found,
        Err(_) => (Evidence::Failed(format!("no reply within {:?}", t.timeout)), None),
    };
    ProbeOutcome { evidence, kind, latency: started.elapsed() }
}

async fn probe_exchange(t: &ProbeTarget<'_>) -> (Evidence, Option<BackendKind>) {
    let mut conn = match connect::open(&t.endpoint, t.creds, false).await {
        Ok(opened) => opened.conn,
        // The server answered at the protocol level: it is alive, the probe's credentials are not.
        Err(OpenError::AuthRefused(_)) => return (Evidence::Alive, None),
        Err(OpenError::Connect(e)) => return (Evidence::Failed(format!("connect: {e}")), None),
        Err(OpenError::Sasl(e)) => return (Evidence::Failed(format!("SASL: {e}")), None),
        Err(e) => return (Evidence::Failed(e.to_string()), None),
    };
    match call(&mut conn, &requests::get_info(&zero_handle(), CLI_SERVER_NAME, 1)).await {
        Err(e) => (Evidence::Failed(e), None),
        Ok(Answer::Exception(_)) => (Evidence::Alive, None),
        // A server that answers for a handle nobody holds does not check sessions in GetInfo.
        Ok(Answer::Ok(_)) => (Evidence::Alive, Some(BackendKind::Hive)),
        Ok(Answer::Error(text)) if text.contains(SHUTTING_DOWN) => (Evidence::ShuttingDown(text), None),
        // "Invalid session id": impalad refusing the zero handle.
        Ok(Answer::Error(_)) => (Evidence::Alive, Some(BackendKind::Impala)),
    }
}

/// One call on a connection; the reply is decoded whole (these replies are small).
pub async fn call(conn: &mut ThriftConn, bytes: &[u8]) -> Result<Answer, String> {
    let io = async {
        conn.write_message(bytes).await?;
        conn.read_message(SMALL_REPLY).await?.ok_or(ConnError::Eof)
    };
    match io.await {
        Ok(reply) => read_answer(&reply, &SMALL_REPLY),
        // An HTTP backend refused the credentials: it is there, it just refused the call.
        Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Ok(Answer::Exception(e.to_string()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Asks whether the backend behind `conn` holds `session`, with a call that changes nothing where the
/// server allows it: impalad checks the session in GetInfo; Hive and Spark answer GetInfo for any
/// handle, so there (and while the kind is unknown) the proxy runs GetCatalogs, which does check, and
/// closes the operation it opened.
pub async fn holds_session(
    conn: &mut ThriftConn,
    session: &HandleId,
    kind: Option<BackendKind>,
) -> Result<bool, String> {
    if kind == Some(BackendKind::Impala) {
        let reply = call(conn, &requests::get_info(session, CLI_SERVER_NAME, 1)).await?;
        return Ok(matches!(reply, Answer::Ok(_)));
    }
    let Answer::Ok(resp) = call(conn, &requests::get_catalogs(session, 1)).await? else {
        return Ok(false);
    };
    if let Some(op) = resp.get(t_get_catalogs_resp::OPERATION_HANDLE) {
        call(conn, &requests::close_operation_value(op.clone(), 2)).await?;
    }
    Ok(true)
}

/// Asks whether the backend behind `conn` knows `operation` of the client's `operation_type`
/// (GetOperationStatus changes nothing).
pub async fn holds_operation(
    conn: &mut ThriftConn,
    operation: &HandleId,
    operation_type: Option<i32>,
) -> Result<bool, String> {
    let status = requests::get_operation_status(operation, operation_type, 1);
    Ok(matches!(call(conn, &status).await?, Answer::Ok(_)))
}
