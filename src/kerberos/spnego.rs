//! HTTP Negotiate (SPNEGO, RFC 4559): one `Authorization: Negotiate <base64>` header in, the client's
//! principal and the `WWW-Authenticate: Negotiate <base64>` reply out.
//!
//! The acceptor credentials must hold `HTTP/<host the client connects to>` (what browsers, curl and
//! Python's kerberos module ask for); an acceptor for any principal of the keytab serves both that and
//! SASL's `impala/<host>`. Kerberos through SPNEGO finishes in one round; a mechanism that needs more
//! (NTLM) is refused: HTTP requests here carry no state between them.

use base64::Engine;

use super::context::Step;
use super::gss::{Credential, GssError};

#[derive(Debug, thiserror::Error)]
pub enum SpnegoError {
    #[error("the Authorization header is not `Negotiate <base64 token>`")]
    NotNegotiate,
    #[error("the Negotiate token is not valid base64")]
    BadBase64,
    #[error("Negotiate: {0}")]
    Gss(#[from] GssError),
    #[error("Negotiate: the client's mechanism needs another round trip; only Kerberos is supported")]
    NeedsMoreRounds,
}

/// A client authenticated by one Negotiate header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// `alice@EXAMPLE.TEST`.
    pub principal: String,
    /// For `WWW-Authenticate` on the reply (mutual authentication): `Negotiate <base64>`, or `None` when
    /// the mechanism produced no reply token.
    pub www_authenticate: Option<String>,
}

/// The token of an `Authorization` header value, if it is `Negotiate <token>` (scheme case-insensitive).
pub fn negotiate_token(header: &str) -> Result<Vec<u8>, SpnegoError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(SpnegoError::NotNegotiate)?;
    if !scheme.eq_ignore_ascii_case("Negotiate") {
        return Err(SpnegoError::NotNegotiate);
    }
    base64::engine::general_purpose::STANDARD.decode(token.trim()).map_err(|_| SpnegoError::BadBase64)
}

/// Accepts the token of one `Authorization: Negotiate` header value. Blocking (the replay cache is a
/// file): call it from `spawn_blocking` on a busy runtime.
pub fn accept(acceptor: &Credential, header: &str) -> Result<Negotiated, SpnegoError> {
    let token = negotiate_token(header)?;
    match acceptor.server_context().step(&token)? {
        Step::Continue(_) => Err(SpnegoError::NeedsMoreRounds),
        Step::Established { token, peer } => Ok(Negotiated {
            principal: peer,
            www_authenticate: (!token.is_empty())
                .then(|| format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token))),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(negotiate_token("Negotiate YWJj").unwrap(), b"abc");
        assert_eq!(negotiate_token("  negotiate   YWJj ").unwrap(), b"abc");
        assert!(matches!(negotiate_token("Basic YWJj"), Err(SpnegoError::NotNegotiate)));
        assert!(matches!(negotiate_token("Negotiate"), Err(SpnegoError::NotNegotiate)));
        assert!(matches!(negotiate_token("Negotiate !!!"), Err(SpnegoError::BadBase64)));
    }
}
