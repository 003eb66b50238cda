//! `backend_auth.trusted_header`: Impala's trusted hop over HTTP (`--trusted_auth_header`). The proxy
//! authenticates clients itself (Kerberos, or its own cookie) and asserts each user to impalad's hs2-http
//! port with `Authorization: Basic <user>:` plus the header impalad trusts; impalad then takes the Basic
//! user as the connected user without checking anything else (`HandleTrustedAuthHeader` in impalad's
//! `be/src/rpc/authentication.cc`). Validated here, with the keys it depends on. No I/O.

use http::HeaderName;

use super::{bad, BackendTransport, Config, ConfigError, UpstreamTransport};

pub const KEY: &str = "backend_auth.trusted_header";

/// Header names that cannot be the trusted one. impalad's `THttpServer::parseHeader` matches
/// `Transfer-Encoding`, `Content-Length`, `X-Forwarded-For`, `Authorization`, `Cookie` and `Expect`
/// before the trusted header, so those never count as it; every HTTP/1.1 request carries `Host`, and the
/// proxy sends `Content-Type`, `Accept`, `User-Agent` and `Connection` itself. With any of these as
/// `--trusted_auth_header`, impalad would trust no request, or every client's.
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "accept",
    "user-agent",
    "connection",
    "expect",
    "authorization",
    "cookie",
    "x-forwarded-for",
];

/// Parses the header name as written (any case: impalad compares it case-insensitively).
pub fn parse(name: Option<String>) -> Result<Option<HeaderName>, ConfigError> {
    let Some(name) = name else { return Ok(None) };
    let header = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| bad(KEY, format!("{name:?} is not an HTTP header name")))?;
    if RESERVED.contains(&header.as_str()) {
        let why = format!("{name:?} cannot be the trusted header: every request has it, or impalad reads it first");
        return Err(bad(KEY, why));
    }
    Ok(Some(header))
}

/// The keys the trusted hop depends on, once the rest is valid; errors name the key to change.
pub fn check(c: &Config) -> Result<(), ConfigError> {
    let auth = &c.backend_auth;
    if auth.trusted_header.is_none() {
        return Ok(());
    }
    if auth.transport != BackendTransport::Sasl {
        let why = "needs backend_auth.transport = \"sasl\": every call is a POST with Basic <user>: and the header";
        return Err(bad(KEY, why));
    }
    if auth.delegate {
        let why = "not with backend_auth.trusted_header: each session's own user is asserted to impalad";
        return Err(bad("backend_auth.delegate", why));
    }
    if let Some(b) = c.backends.iter().find(|b| b.upstream.transport != UpstreamTransport::Http) {
        let why = format!(
            "{}: backend_auth.trusted_header needs transport = \"http\" on every backend (impalad's hs2-http \
             port, 28000: it honours the header nowhere else)",
            b.addr
        );
        return Err(bad("backends", why));
    }
    // The proxy vouches for every user it names: it must be able to authenticate clients itself.
    let accepts_kerberos = c.kerberos.as_ref().is_some_and(|k| k.acceptor.is_some());
    if !accepts_kerberos && c.http.cookie_secret.is_none() {
        let why = "needs [kerberos] keytab: the proxy authenticates clients itself (SASL GSSAPI, HTTP Negotiate), \
                   since impalad checks nothing (or http.cookie_secret_file, for cookies of instances that do)";
        return Err(bad(KEY, why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_checked() {
        let name = parse(Some("X-Trusted-Proxy-Auth-Header".into())).unwrap().unwrap();
        assert_eq!(name.as_str(), "x-trusted-proxy-auth-header");
        assert_eq!(parse(None).unwrap(), None);
        for bad_name in ["", "two words", "X-Forwarded-For", "authorization", "Host", "Cookie"] {
            let e = parse(Some(bad_name.into())).unwrap_err();
            assert_eq!(e.key, KEY, "{bad_name:?}");
        }
    }
}
