//! Opening one upstream connection: TCP, TLS when the backend says `tls = true`, then the binary
//! protocol (with SASL PLAIN when `backend_auth.transport = "sasl"`) or HTTP (one POST per call, Basic
//! auth with the same credentials; with `backend_auth.trusted_header`, `Basic <user>:` and that header,
//! Impala's trusted hop). Used by the pool and the health probe; the result is a `ThriftConn` either way,
//! so nothing above this knows which transport carries the calls.

use std::io;

use tokio::net::TcpStream;

use crate::config::{BackendTransport, UpstreamConfig, UpstreamTransport};
use crate::conn::{ConnError, Io, ThriftConn};
use crate::hs2::idl::enums::t_get_info_type::CLI_SERVER_NAME;
use crate::hs2::requests;
use crate::http::upstream::{CallHeaders, HttpIo, Target};
use crate::kerberos::Credential;
use crate::sasl::{self, SaslError};
use crate::thrift::framing::Framing;

pub use crate::identity::Credentials;

/// One backend, as far as connecting goes.
pub struct Endpoint<'a> {
    /// `host:port`, resolved at each connect.
    pub addr: &'a str,
    pub auth: BackendTransport,
    pub upstream: &'a UpstreamConfig,
    pub max_frame: u64,
    /// With `auth = gssapi`: the proxy's initiator and this backend's service principal.
    pub kerberos: Option<&'a KerberosUpstream>,
    /// `backend_auth.trusted_header` (HTTP only): the header impalad's `--trusted_auth_header` names.
    pub trusted_header: Option<&'a http::HeaderName>,
}

/// How the proxy authenticates to one backend with Kerberos.
#[derive(Clone, Debug)]
pub struct KerberosUpstream {
    /// The proxy's own initiator credentials (`kerberos.client_principal`).
    pub initiator: Credential,
    /// The backend's service principal (`kerberos.backend_principal` with `_HOST` replaced).
    pub target: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// TCP or TLS failed: nothing reached the backend.
    #[error("{0}")]
    Connect(io::Error),
    /// The backend refused the credentials (SASL BAD, or HTTP 401).
    #[error("{0}")]
    AuthRefused(String),
    #[error("{0}")]
    Sasl(SaslError),
    #[error("HTTP: {0}")]
    Http(String),
}

/// An open upstream connection; `headers` is set for HTTP backends.
pub struct Opened {
    pub conn: ThriftConn,
    pub headers: Option<CallHeaders>,
}

/// Connects to the backend. `check_creds`: for HTTP backends that authenticate, make one call at once
/// (GetInfo with an all-zero handle, which opens nothing) so that wrong credentials fail here, as they
/// do in the SASL handshake of a binary connection.
pub async fn open(ep: &Endpoint<'_>, creds: &Credentials, check_creds: bool) -> Result<Opened, OpenError> {
    let tcp = TcpStream::connect(ep.addr).await.map_err(OpenError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &ep.upstream.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| OpenError::Connect(io::Error::new(e.kind(), format!("TLS handshake: {e}"))))?;
            Box::new(stream)
        }
    };
    match ep.upstream.transport {
        UpstreamTransport::Binary => {
            let mut conn = ThriftConn::new(io, Framing::Unframed, ep.max_frame);
            let handshake = match (ep.auth, ep.kerberos) {
                (BackendTransport::Nosasl, _) => Ok(()),
                (BackendTransport::Sasl, _) => {
                    sasl::client_handshake(&mut conn, &creds.user, &creds.password, ep.max_frame).await
                }
                (BackendTransport::Gssapi, Some(k)) => {
                    sasl::client_handshake_gssapi(&mut conn, &k.initiator, &k.target, ep.max_frame).await
                }
                (BackendTransport::Gssapi, None) => Err(SaslError::Malformed("no Kerberos credentials".into())),
            };
            handshake.map_err(|e| match e {
                SaslError::Refused(message) => OpenError::AuthRefused(message),
                e => OpenError::Sasl(e),
            })?;
            Ok(Opened { conn, headers: None })
        }
        UpstreamTransport::Http => {
            let authenticates = ep.auth == BackendTransport::Sasl;
            // The trusted hop's documented form is `Basic <user>:`: impalad ignores any password there.
            let password = if ep.trusted_header.is_some() { "" } else { creds.password.as_str() };
            let target = Target {
                host: ep.addr.to_string(),
                path: ep.upstream.http_path.clone(),
                authorization: authenticates.then(|| crate::http::basic_authorization(&creds.user, password)),
                trusted_header: ep.trusted_header.cloned(),
            };
            let (io, headers) = HttpIo::handshake(io, &target).await.map_err(|e| OpenError::Http(e.to_string()))?;
            let mut conn = ThriftConn::new(Box::new(io), Framing::Unframed, ep.max_frame);
            if check_creds && authenticates {
                check_credentials(&mut conn).await.map_err(|e| match (e, ep.trusted_header) {
                    (OpenError::AuthRefused(m), Some(h)) => OpenError::AuthRefused(format!(
                        "{m}: is impalad started with --trusted_auth_header={h} (and LDAP or Kerberos enabled)?"
                    )),
                    (e, _) => e,
                })?;
            }
            Ok(Opened { conn, headers: Some(headers) })
        }
    }
}

async fn check_credentials(conn: &mut ThriftConn) -> Result<(), OpenError> {
    let call = requests::get_info(&super::probe::zero_handle(), CLI_SERVER_NAME, 0);
    let exchange = async {
        conn.write_message(&call).await?;
        conn.read_message(super::probe::SMALL_REPLY).await?.ok_or(ConnError::Eof)
    };
    match exchange.await {
        Ok(_) => Ok(()),
        Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(OpenError::AuthRefused(e.to_string()))
        }
        Err(e) => Err(OpenError::Http(e.to_string())),
    }
}
