//! Configuration of the transports around HS2: TLS and HTTP on the listeners (`[tls]`, `[http]`), and
//! per backend the upstream transport (`transport`, `http_path`, `tls`, `ca_file`, ...).
//!
//! Same pattern as the rest of `config`: serde structs as written, validated into typed values whose
//! errors name the key. Certificate files are loaded once here so that a bad file stops the start; the
//! listener re-reads them later when they change (see `tls::ServerTls`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{bad, ConfigError};
use crate::tls::{UpstreamTls, UpstreamTlsSettings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTls {
    /// PEM certificate chain (leaf first) served on every listener.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
    /// Also accept connections without TLS. Default false.
    pub allow_plaintext: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHttp {
    /// Serve HS2 over HTTP (POSTs) on the listeners, told apart from binary by the first bytes.
    pub enabled: Option<bool>,
    /// An extra listener, like impalad's hs2-http port (28000). It serves every transport too.
    pub listen: Option<String>,
    /// Only POSTs to this path are served; default any path, as impalad does.
    pub path: Option<String>,
    pub cookie_name: Option<String>,
    pub cookie_max_age: Option<String>,
    /// A file whose first line keys the cookie signatures, so that cookies survive restarts.
    pub cookie_secret_file: Option<PathBuf>,
}

/// Per-backend transport keys, written next to `addr` in a backend table.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileUpstream {
    pub transport: Option<UpstreamTransport>,
    pub http_path: Option<String>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub tls_verify: Option<bool>,
}

/// TLS on the listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListenConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Plaintext connections are refused unless this is set.
    pub allow_plaintext: bool,
}

/// The key of the proxy's cookie signatures; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret(pub Vec<u8>);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(<redacted>)")
    }
}

/// Cookie name impalad uses, and the proxy by default: clients that keep only `impala.auth`
/// (impala-shell) then reuse the proxy's cookie. impalad's own cookies never reach clients.
pub const DEFAULT_COOKIE_NAME: &str = "impala.auth";

/// HS2 over HTTP on the client side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Default true.
    pub enabled: bool,
    /// The extra listener, if any.
    pub listen: Option<SocketAddr>,
    /// `None`: any path (impalad's behaviour).
    pub path: Option<String>,
    /// Default `impala.auth`.
    pub cookie_name: String,
    /// Default 1 day, like impalad's `--max_cookie_lifetime_s`.
    pub cookie_max_age: Duration,
    /// `None`: a random key per process (cookies end with the process; clients then send their password
    /// once more, which impyla and impala-shell do by themselves on a 401).
    pub cookie_secret: Option<CookieSecret>,
}

/// How the proxy speaks to one backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTransport {
    /// The binary protocol (unframed, or SASL as `backend_auth.transport` says). impalad port 21050.
    #[default]
    Binary,
    /// One HTTP POST per call (impalad port 28000, Hive/Spark `transport.mode=http`). With
    /// `backend_auth.transport = "sasl"` each POST carries the caller's credentials as Basic auth.
    Http,
}

/// Upstream transport of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub transport: UpstreamTransport,
    /// The POST path for `transport = "http"`. Default `/cliservice` (Hive's; impalad takes any).
    pub http_path: String,
    pub tls: Option<UpstreamTls>,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig { transport: UpstreamTransport::Binary, http_path: "/cliservice".into(), tls: None }
    }
}

pub fn validate_tls(t: FileTls) -> Result<Option<TlsListenConfig>, ConfigError> {
    let (cert_file, key_file) = match (t.cert_file, t.key_file) {
        (None, None) => {
            if t.allow_plaintext.is_some() {
                return Err(bad("tls.allow_plaintext", "needs tls.cert_file and tls.key_file"));
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return Err(bad("tls.key_file", "required with tls.cert_file")),
        (None, Some(_)) => return Err(bad("tls.cert_file", "required with tls.key_file")),
    };
    crate::tls::server_config(&cert_file, &key_file).map_err(|e| bad("tls.cert_file", e))?;
    Ok(Some(TlsListenConfig { cert_file, key_file, allow_plaintext: t.allow_plaintext.unwrap_or(false) }))
}

pub fn validate_http(h: FileHttp) -> Result<HttpConfig, ConfigError> {
    let enabled = h.enabled.unwrap_or(true);
    let listen = match &h.listen {
        None => None,
        Some(_) if !enabled => return Err(bad("http.listen", "set, but http.enabled is false")),
        Some(t) => Some(t.parse().map_err(|_| bad("http.listen", format!("{t:?} is not an ip:port")))?),
    };
    if let Some(p) = &h.path {
        if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("http.path", format!("{p:?} is not a path starting with /")));
        }
    }
    let cookie_name = h.cookie_name.unwrap_or_else(|| DEFAULT_COOKIE_NAME.into());
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if cookie_name.is_empty() || !cookie_name.chars().all(token_char) {
        return Err(bad("http.cookie_name", format!("{cookie_name:?} is not a cookie name")));
    }
    let cookie_max_age = super::durations::COOKIE_MAX_AGE.read(h.cookie_max_age)?;
    let cookie_secret = match &h.cookie_secret_file {
        None => None,
        Some(path) => Some(read_secret(path)?),
    };
    Ok(HttpConfig { enabled, listen, path: h.path, cookie_name, cookie_max_age, cookie_secret })
}

fn read_secret(path: &Path) -> Result<CookieSecret, ConfigError> {
    let key = "http.cookie_secret_file";
    let text = std::fs::read_to_string(path).map_err(|e| bad(key, format!("{}: {e}", path.display())))?;
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.len() < 16 {
        return Err(bad(key, format!("{}: the first line must hold at least 16 characters", path.display())));
    }
    Ok(CookieSecret(secret.as_bytes().to_vec()))
}

/// Validates one backend's transport keys; errors read `backends: <addr>: <key>: <reason>`.
pub fn validate_upstream(addr: &str, u: FileUpstream) -> Result<UpstreamConfig, ConfigError> {
    let err = |key: &str, reason: String| bad("backends", format!("{addr}: {key}: {reason}"));
    let transport = u.transport.unwrap_or_default();
    let http_path = u.http_path.unwrap_or_else(|| "/cliservice".into());
    if !http_path.starts_with('/') || http_path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("http_path", format!("{http_path:?} is not a path starting with /")));
    }
    let tls_keys = u.ca_file.is_some()
        || u.cert_file.is_some()
        || u.key_file.is_some()
        || u.tls_server_name.is_some()
        || u.tls_verify.is_some();
    if !u.tls.unwrap_or(false) {
        if tls_keys {
            return Err(err(
                "tls",
                "ca_file, cert_file, key_file, tls_server_name and tls_verify need tls = true".into(),
            ));
        }
        return Ok(UpstreamConfig { transport, http_path, tls: None });
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let settings = UpstreamTlsSettings {
        server_name: u.tls_server_name.as_deref().unwrap_or(host),
        ca_file: u.ca_file.as_deref(),
        cert_file: u.cert_file.as_deref(),
        key_file: u.key_file.as_deref(),
        verify: u.tls_verify.unwrap_or(true),
    };
    let tls = UpstreamTls::new(&settings).map_err(|(key, reason)| err(key, reason))?;
    Ok(UpstreamConfig { transport, http_path, tls: Some(tls) })
}

#[cfg(test)]
mod tests {
    use super::super::FileConfig;
    use super::*;

    fn err(text: &str) -> String {
        FileConfig::parse(text).and_then(FileConfig::validate).unwrap_err().to_string()
    }

    #[test]
    fn listener_keys_are_checked_and_named() {
        let c = FileConfig::parse("").and_then(FileConfig::validate).unwrap();
        assert_eq!(c.tls, None);
        assert!(c.http.enabled && c.http.listen.is_none() && c.http.path.is_none());
        assert_eq!((c.http.cookie_name.as_str(), c.http.cookie_max_age), ("impala.auth", Duration::from_secs(86400)));
        assert!(err("[tls]\ncert_file = \"/x.pem\"").starts_with("tls.key_file: "));
        assert!(err("[tls]\nallow_plaintext = true").starts_with("tls.allow_plaintext: "));
        assert!(err("[tls]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/k\"").starts_with("tls.cert_file: "));
        assert!(err("[http]\nlisten = \"x\"").starts_with("http.listen: "));
        assert!(err("[http]\nenabled = false\nlisten = \"127.0.0.1:1\"").starts_with("http.listen: "));
        assert!(err("[http]\npath = \"cliservice\"").starts_with("http.path: "));
        assert!(err("[http]\ncookie_name = \"a b\"").starts_with("http.cookie_name: "));
        assert!(err("[http]\ncookie_max_age = \"0s\"").starts_with("http.cookie_max_age: "));
        assert!(err("[http]\ncookie_secret_file = \"/nonexistent\"").starts_with("http.cookie_secret_file: "));
        assert!(err("[http]\nport = 1").contains("port"));
    }

    #[test]
    fn backend_transport_keys_are_checked_and_named() {
        let one = |table: &str| FileConfig::parse(&format!("backends = [{table}]")).and_then(FileConfig::validate);
        let c = one("{ addr = \"h:28000\", transport = \"http\", http_path = \"/x\" }").unwrap();
        assert_eq!(c.backends[0].upstream.transport, UpstreamTransport::Http);
        assert_eq!(c.backends[0].upstream.http_path, "/x");
        let c = one("\"h:21050\"").unwrap();
        assert_eq!(c.backends[0].upstream, UpstreamConfig::default());
        let e = one("{ addr = \"h:1\", tls = true }").unwrap_err().to_string();
        assert!(e.starts_with("backends: h:1: ca_file: "), "{e}");
        let e = one("{ addr = \"h:1\", ca_file = \"/ca.pem\" }").unwrap_err().to_string();
        assert!(e.starts_with("backends: h:1: tls: "), "{e}");
        let e = one("{ addr = \"h:1\", http_path = \"x\" }").unwrap_err().to_string();
        assert!(e.starts_with("backends: h:1: http_path: "), "{e}");
        let c = one("{ addr = \"h:1\", tls = true, tls_verify = false }").unwrap();
        assert!(c.backends[0].upstream.tls.as_ref().is_some_and(|t| !t.verify));
        assert!(one("{ addr = \"h:1\", transport = \"carrier-pigeon\" }").is_err());
    }

    #[test]
    fn a_certificate_pair_and_a_secret_file_load() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (c, k, s) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("secret"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        std::fs::write(&s, "0123456789abcdef0123\n").unwrap();
        let text = format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n[http]\ncookie_secret_file = {:?}",
            c.display().to_string(),
            k.display().to_string(),
            s.display().to_string()
        );
        let config = FileConfig::parse(&text).and_then(FileConfig::validate).unwrap();
        assert_eq!(config.tls.as_ref().map(|t| t.allow_plaintext), Some(false));
        assert!(config.http.cookie_secret.is_some());
        assert!(!format!("{config:?}").contains("0123456789"), "the secret never prints");
        let swapped =
            format!("[tls]\ncert_file = {:?}\nkey_file = {:?}", k.display().to_string(), c.display().to_string());
        assert!(err(&swapped).starts_with("tls.cert_file: "));
    }
}
