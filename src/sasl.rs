//! SASL PLAIN over TSaslTransport: the server side (clients authenticating to the proxy, and the mock
//! impalad) and the client side (the proxy authenticating to a backend).
//!
//! Only PLAIN is spoken. Impala and Hive never wrap SASL data (QOP `auth`), so after `COMPLETE` the
//! connection carries plain 4-byte-length frames. Passwords are never logged: [`PlainCredentials`] redacts
//! itself.

use crate::conn::{ConnError, ThriftConn};
use crate::thrift::framing::{Framing, PlainCredentials, SaslMessage, SaslStatus};

/// Negotiation messages are small; anything larger is not SASL PLAIN.
pub const MAX_NEGOTIATION_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("SASL mechanism {0:?} is not supported (only PLAIN; Kerberos/GSSAPI is not supported yet)")]
    UnsupportedMechanism(String),
    #[error("malformed SASL negotiation: {0}")]
    Malformed(String),
    /// The peer said BAD or ERROR; the text is the peer's.
    #[error("authentication refused: {0}")]
    Refused(String),
}

/// Server side, first half: reads the mechanism and the PLAIN response. The caller checks the
/// credentials and then calls [`server_finish`].
pub async fn server_read_credentials(conn: &mut ThriftConn) -> Result<PlainCredentials, SaslError> {
    let start = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
    if start.status != SaslStatus::Start {
        return Err(SaslError::Malformed(format!("expected START, got {:?}", start.status)));
    }
    let mechanism = String::from_utf8_lossy(&start.payload).into_owned();
    if mechanism != "PLAIN" {
        let text = SaslError::UnsupportedMechanism(mechanism.clone()).to_string();
        conn.write_raw(&SaslMessage::new(SaslStatus::Bad, text.as_bytes()).encode()).await?;
        return Err(SaslError::UnsupportedMechanism(mechanism));
    }
    let response = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
    if !matches!(response.status, SaslStatus::Ok | SaslStatus::Complete) {
        let text = format!("expected the PLAIN response, got {:?}", response.status);
        conn.write_raw(&SaslMessage::new(SaslStatus::Bad, text.as_bytes()).encode()).await?;
        return Err(SaslError::Malformed(text));
    }
    match PlainCredentials::parse(&response.payload) {
        Ok(creds) => Ok(creds),
        Err(e) => {
            let text = format!("malformed SASL PLAIN response: {e}");
            conn.write_raw(&SaslMessage::new(SaslStatus::Bad, text.as_bytes()).encode()).await?;
            Err(SaslError::Malformed(text))
        }
    }
}

/// Server side, second half: `Ok` completes the handshake (data frames follow), `Err(text)` refuses with
/// a message the client shows (Java: "Peer indicated failure: text").
pub async fn server_finish(
    conn: &mut ThriftConn,
    verdict: Result<(), String>,
    max_frame: u64,
) -> Result<(), SaslError> {
    match verdict {
        Ok(()) => {
            conn.write_raw(&SaslMessage::new(SaslStatus::Complete, b"").encode()).await?;
            conn.set_framing(Framing::Framed, max_frame);
            Ok(())
        }
        Err(text) => {
            conn.write_raw(&SaslMessage::new(SaslStatus::Bad, text.as_bytes()).encode()).await?;
            Err(SaslError::Refused(text))
        }
    }
}

/// Client side: authenticates `conn` with PLAIN; on success the connection is framed.
pub async fn client_handshake(
    conn: &mut ThriftConn,
    user: &str,
    password: &str,
    max_frame: u64,
) -> Result<(), SaslError> {
    let mut hello = SaslMessage::new(SaslStatus::Start, b"PLAIN").encode();
    hello.extend_from_slice(&SaslMessage::new(SaslStatus::Ok, &PlainCredentials::encode(user, password)).encode());
    conn.write_raw(&hello).await?;
    let reply = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
    match reply.status {
        SaslStatus::Complete => {
            conn.set_framing(Framing::Framed, max_frame);
            Ok(())
        }
        SaslStatus::Bad | SaslStatus::Error => {
            Err(SaslError::Refused(String::from_utf8_lossy(&reply.payload).into_owned()))
        }
        other => Err(SaslError::Malformed(format!("unexpected {other:?} in reply to PLAIN"))),
    }
}
