//! HS2 over HTTP, both sides: each Thrift call is one POST whose body is the request message and whose
//! response body is the reply message (Impala's hs2-http, Hive's `transport.mode=http`).
//!
//! - [`upstream`]: an HTTP backend connection shaped like a byte stream, so that `conn::ThriftConn`,
//!   the pool and the relay work over it unchanged.
//! - [`client`]: the one small HTTP client (the CLI's admin calls, impalad's web port).
//! - Basic authentication headers, both ways (here).
//!
//! The client-facing HTTP server is `frontend::http`.

pub mod client;
pub mod upstream;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A user and password from a Basic `Authorization` header; the password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Basic {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

/// Longest `Authorization` value read (a Basic header with long LDAP names fits easily).
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// The `Authorization: Basic ...` value for a user and password.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Reads `Authorization: Basic <base64(user:password)>`. `Ok(None)` without the header; `Err` for a
/// header that is there but unusable (another scheme, bad base64, no colon).
pub fn parse_basic(value: Option<&[u8]>) -> Result<Option<Basic>, String> {
    let Some(value) = value else { return Ok(None) };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err("the Authorization header is too long".into());
    }
    let text = std::str::from_utf8(value).map_err(|_| "the Authorization header is not text".to_string())?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!("{scheme:?} authentication is not supported; use Basic (LDAP/PLAIN)"));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| "the Basic credentials are not base64".to_string())?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8".to_string())?;
    let (user, password) = decoded.split_once(':').ok_or("the Basic credentials have no ':'".to_string())?;
    if user.is_empty() {
        return Err("the Basic credentials have an empty user name".into());
    }
    Ok(Some(Basic { user: user.to_string(), password: password.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_round_trips_and_refuses_what_it_cannot_use() {
        let creds = Basic { user: "alice".into(), password: "s:cret".into() };
        let header = basic_authorization(&creds.user, &creds.password);
        assert_eq!(parse_basic(Some(header.as_bytes())).unwrap(), Some(creds));
        assert_eq!(parse_basic(None).unwrap(), None);
        assert!(parse_basic(Some(b"Bearer abc")).unwrap_err().contains("Bearer"));
        assert!(parse_basic(Some(b"Basic !!!")).is_err());
        assert!(parse_basic(Some(format!("Basic {}", STANDARD.encode("nocolon")).as_bytes())).is_err());
        assert!(parse_basic(Some(format!("Basic {}", STANDARD.encode(":pw")).as_bytes())).is_err());
        assert!(parse_basic(Some(&vec![b'a'; MAX_AUTHORIZATION_BYTES + 1])).is_err());
    }
}
