//! SASL over TSaslTransport, PLAIN and GSSAPI (Kerberos): the server side (clients authenticating to the
//! proxy, and the mock impalad) and the client side (the proxy authenticating to a backend).
//!
//! The mechanism in the client's START decides ([`server_read_start`]); GSSAPI's exchange is the sans-I/O
//! machine of `kerberos::sasl_gssapi`, driven here. Impala and Hive never wrap SASL data (QOP `auth`), so
//! after `COMPLETE` the connection carries plain 4-byte-length frames. Passwords are never logged:
//! [`PlainCredentials`] redacts itself.

use crate::conn::{ConnError, ThriftConn};
use crate::kerberos::principal::ShortNames;
use crate::kerberos::sasl_gssapi::{self, ClientOutput, Ending, GssapiClient, GssapiError, GssapiServer, ServerOutput};
use crate::kerberos::Credential;
use crate::thrift::framing::{Framing, PlainCredentials, SaslMessage, SaslStatus};

/// Negotiation messages are small (a Kerberos AP-REQ is ~1 KiB, more with a large PAC).
pub const MAX_NEGOTIATION_BYTES: u64 = 64 * 1024;

/// Most negotiation messages a GSSAPI exchange may take (Kerberos needs 3 from each side).
const MAX_GSSAPI_ROUNDS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("SASL mechanism {0:?} is not supported here (supported: {1})")]
    UnsupportedMechanism(String, &'static str),
    #[error("malformed SASL negotiation: {0}")]
    Malformed(String),
    /// The peer said BAD or ERROR; the text is the peer's.
    #[error("authentication refused: {0}")]
    Refused(String),
    /// GSSAPI failed on this side (server: the client was told this text).
    #[error("{0}")]
    Gssapi(#[from] GssapiError),
}

/// What a client's START asked for.
#[derive(Debug)]
pub enum Mechanism {
    /// PLAIN, with its response already read: check it, then call [`server_finish`].
    Plain(PlainCredentials),
    /// GSSAPI: continue with [`server_accept_gssapi`].
    Gssapi,
}

/// Server side, first step when GSSAPI may be offered: reads START and, for PLAIN, the response. With
/// `gssapi` false a GSSAPI client is refused as any unknown mechanism is.
pub async fn server_read_start(conn: &mut ThriftConn, gssapi: bool) -> Result<Mechanism, SaslError> {
    let supported = if gssapi { "PLAIN, GSSAPI" } else { "PLAIN" };
    let mechanism = read_start(conn, supported).await?;
    if mechanism == sasl_gssapi::MECHANISM && gssapi {
        return Ok(Mechanism::Gssapi);
    }
    if mechanism != "PLAIN" {
        return Err(refuse(conn, SaslError::UnsupportedMechanism(mechanism, supported)).await);
    }
    read_plain_response(conn).await.map(Mechanism::Plain)
}

/// Sends BAD with `error`'s text (best effort: the error is what matters) and returns it.
async fn refuse(conn: &mut ThriftConn, error: SaslError) -> SaslError {
    let _ = conn.write_raw(&SaslMessage::new(SaslStatus::Bad, error.to_string().as_bytes()).encode()).await;
    error
}

/// Server side, first half: reads the mechanism and the PLAIN response. The caller checks the
/// credentials and then calls [`server_finish`].
pub async fn server_read_credentials(conn: &mut ThriftConn) -> Result<PlainCredentials, SaslError> {
    let mechanism = read_start(conn, "PLAIN").await?;
    if mechanism != "PLAIN" {
        return Err(refuse(conn, SaslError::UnsupportedMechanism(mechanism, "PLAIN")).await);
    }
    read_plain_response(conn).await
}

/// Reads START; returns the mechanism it names.
async fn read_start(conn: &mut ThriftConn, supported: &'static str) -> Result<String, SaslError> {
    let start = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
    if start.status != SaslStatus::Start {
        let e = SaslError::Malformed(format!("expected START, got {:?} (supported: {supported})", start.status));
        return Err(e);
    }
    Ok(String::from_utf8_lossy(&start.payload).into_owned())
}

/// Reads PLAIN's response message.
async fn read_plain_response(conn: &mut ThriftConn) -> Result<PlainCredentials, SaslError> {
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

/// GSS-API calls block (the replay cache is a file; an initiator may ask the KDC for tickets): they run
/// on the blocking pool, the machine moving there and back.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A client authenticated by Kerberos.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosUser {
    /// `alice@EXAMPLE.TEST`.
    pub principal: String,
    /// By the `auth_to_local` rules: `alice`. Sessions belong to this name.
    pub short_name: String,
    /// How the client ended the negotiation (Java: COMPLETE and an empty authzid; pure-sasl: OK and its
    /// principal), for debug logs.
    pub ending: Ending,
}

/// Server side after START named GSSAPI: runs the Kerberos exchange with `acceptor` and maps the
/// principal with `names`; on success the connection is framed. A failure (a bad ticket, a principal no
/// rule maps) is told to the client as BAD with the reason.
pub async fn server_accept_gssapi(
    conn: &mut ThriftConn,
    acceptor: &Credential,
    names: &ShortNames,
    max_frame: u64,
) -> Result<KerberosUser, SaslError> {
    let mut machine = GssapiServer::new(acceptor.server_context());
    for _ in 0..MAX_GSSAPI_ROUNDS {
        let msg = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
        let out;
        (machine, out) = blocking(move || {
            let out = machine.step(&msg);
            (machine, out)
        })
        .await;
        match out {
            Ok(ServerOutput::Send(reply)) => conn.write_raw(&reply.encode()).await?,
            Ok(ServerOutput::Complete { reply, principal, ending }) => {
                let short_name = match names.short_name(&principal) {
                    Ok(name) => name,
                    Err(e) => return Err(refuse(conn, SaslError::Refused(e.to_string())).await),
                };
                conn.write_raw(&reply.encode()).await?;
                conn.set_framing(Framing::Framed, max_frame);
                return Ok(KerberosUser { principal, short_name, ending });
            }
            // The client already knows why it gave up.
            Err(GssapiError::Refused(text)) => return Err(SaslError::Refused(text)),
            Err(e) => return Err(refuse(conn, e.into()).await),
        }
    }
    Err(refuse(conn, SaslError::Malformed("too many GSSAPI negotiation messages".into())).await)
}

/// Client side: authenticates `conn` with Kerberos as `initiator` to the service `target`
/// (`impala/host@REALM`); on success the connection is framed.
pub async fn client_handshake_gssapi(
    conn: &mut ThriftConn,
    initiator: &Credential,
    target: &str,
    max_frame: u64,
) -> Result<(), SaslError> {
    // Acquiring the credentials again may fetch a TGT from the KDC: off the runtime too.
    let (initiator, target) = (initiator.clone(), target.to_string());
    let (mut machine, [start, first]) = blocking(move || -> Result<_, GssapiError> {
        let mut machine = GssapiClient::new(initiator.client_context(&target)?);
        let opening = machine.start()?;
        Ok((machine, opening))
    })
    .await?;
    let mut hello = start.encode();
    hello.extend_from_slice(&first.encode());
    conn.write_raw(&hello).await?;
    for _ in 0..MAX_GSSAPI_ROUNDS {
        let msg = conn.read_sasl_message(MAX_NEGOTIATION_BYTES).await?;
        let out;
        (machine, out) = blocking(move || {
            let out = machine.step(&msg);
            (machine, out)
        })
        .await;
        match out {
            Ok(ClientOutput::Send(reply)) => conn.write_raw(&reply.encode()).await?,
            // The server's BAD/ERROR text, as for PLAIN.
            Err(GssapiError::Refused(text)) => return Err(SaslError::Refused(text)),
            Err(e) => return Err(e.into()),
            Ok(ClientOutput::Done) => {
                conn.set_framing(Framing::Framed, max_frame);
                return Ok(());
            }
        }
    }
    Err(SaslError::Malformed("too many GSSAPI negotiation messages".into()))
}
