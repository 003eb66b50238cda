//! Configuration: the TOML file and command-line flags (flags win) become one validated [`Config`].
//!
//! [`FileConfig`] is what serde reads, strings and all; [`FileConfig::validate`] turns it into typed values
//! (`SocketAddr`, `Duration`, non-zero counts) and names the key of the first bad value. Nothing
//! downstream re-validates. Every default is documented here and in `docker/hs2-proxy.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::thrift::Limits;

pub mod kerberos;
mod transport;
pub use transport::*;

/// A configuration error: one line naming the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), reason: reason.into() }
}

/// How the proxy talks to backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendTransport {
    /// Unframed binary protocol, no authentication (impalad without `--ldap`/Kerberos).
    Nosasl,
    /// SASL PLAIN (impalad with LDAP, or a Hive/Spark server in its default mode).
    Sasl,
}

/// The TOML file as written. Durations are strings like `"500ms"`, `"30s"`, `"15m"`, `"1h"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Client listener. Default `127.0.0.1:21050`.
    pub listen: Option<String>,
    /// Backends as `host:port` strings, or tables `{ addr = "...", weight = N }`.
    pub backends: Vec<FileBackend>,
    pub backend_auth: FileBackendAuth,
    pub limits: FileLimits,
    pub pool: FilePool,
    pub sessions: FileSessions,
    pub timeouts: FileTimeouts,
    pub health: FileHealth,
    pub admin: FileAdmin,
    pub tls: FileTls,
    pub http: FileHttp,
    pub kerberos: Option<kerberos::FileKerberos>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileAdmin {
    /// Admin HTTP listener (API, status page, metrics): `ip:port`, or `"off"`. Default `127.0.0.1:25100`.
    pub listen: Option<String>,
    /// A file whose first line is the bearer token the admin API requires. Default: no token.
    pub token_file: Option<PathBuf>,
}

/// The default admin listener: loopback only, next to impalad's own web ports (25000, 25010, 25020).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:25100";

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The admin HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// `None` when turned off (`listen = "off"`). Default `127.0.0.1:25100`: loopback, so that only
    /// this machine reaches it unless the operator says otherwise.
    pub listen: Option<SocketAddr>,
    /// Required as `Authorization: Bearer <token>` on `/api/*`, `/metrics` and the status page's data.
    pub token: Option<AdminToken>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileBackend {
    Addr(String),
    Table {
        addr: String,
        weight: Option<u32>,
        kind: Option<BackendKind>,
        metrics_url: Option<String>,
        /// `transport`, `http_path`, `tls`, `ca_file`, `cert_file`, `key_file`, `tls_server_name`, `tls_verify`.
        #[serde(flatten)]
        upstream: FileUpstream,
    },
}

/// What kind of HS2 server a backend is: it decides how the proxy asks whether the server holds a
/// session it does not know (after a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// impalad: GetInfo validates the session and changes nothing.
    #[default]
    Impala,
    /// HiveServer2 / Spark Thrift Server: GetInfo does not validate the session, so the proxy runs
    /// GetCatalogs and closes the operation at once.
    Hive,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileHealth {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

/// Health probe settings (HAProxy-like defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between probes of one backend. Default 2 s.
    pub interval: Duration,
    /// A probe without a reply within this fails. Default 2 s.
    pub timeout: Duration,
    /// Good probes in a row that bring a backend back. Default 2.
    pub rise: u32,
    /// Failed probes in a row that take a backend down. Default 3.
    pub fall: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileBackendAuth {
    /// `nosasl` (default) or `sasl`.
    pub transport: Option<BackendTransport>,
    /// The user the proxy authenticates as when the client did not (NOSASL clients); default `anonymous`.
    pub user: Option<String>,
    /// A file holding that user's password (first line).
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    pub max_request_bytes: Option<u64>,
    pub max_reply_bytes: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub max_depth: Option<usize>,
    pub max_container_len: Option<u32>,
    pub max_client_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePool {
    pub max_per_backend: Option<usize>,
    pub wait_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSessions {
    pub disconnected_grace: Option<String>,
    pub reap_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTimeouts {
    pub handshake: Option<String>,
    pub client_idle: Option<String>,
    pub backend_reply: Option<String>,
}

/// One backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port`, resolved at connect time so that DNS changes are followed.
    pub addr: String,
    pub weight: u32,
    pub kind: BackendKind,
    /// impalad's `/jsonmetrics` URL (`http://host:25000/jsonmetrics`): when set, the impalad's own count of
    /// open HS2 sessions joins the balancing, so sessions opened around the proxy count too. Off by default.
    pub metrics_url: Option<String>,
    /// Binary or HTTP, with or without TLS. Default binary without TLS.
    pub upstream: UpstreamConfig,
}

impl BackendConfig {
    pub fn new(addr: &str) -> BackendConfig {
        BackendConfig {
            addr: addr.to_string(),
            weight: 1,
            kind: BackendKind::Impala,
            metrics_url: None,
            upstream: UpstreamConfig::default(),
        }
    }
}

/// Credentials the proxy uses upstream for clients that did not authenticate.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceCredentials {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

/// Upstream connection pool settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Upstream connections per backend, all users together. Default 32: half of impalad's default
    /// `--fe_service_threads` (64), so that clients going around the proxy (impala-shell, a second proxy
    /// instance) still get a thread. Calls beyond it wait up to `wait_timeout` for a free connection.
    pub max_per_backend: usize,
    /// How long a call waits for a free upstream connection before it gets an error. Default 10 s.
    pub wait_timeout: Duration,
    /// Idle upstream connections that carry no live session are closed after this. Default 5 min.
    pub idle_timeout: Duration,
    /// TCP connect plus SASL handshake. Default 5 s.
    pub connect_timeout: Duration,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub backends: Vec<BackendConfig>,
    pub backend_transport: BackendTransport,
    pub service_credentials: ServiceCredentials,
    pub request_limits: Limits,
    pub reply_limits: Limits,
    /// Largest frame accepted on framed and SASL transports. Default 128 MiB.
    pub max_frame_bytes: u64,
    /// Client connections served at once; more are accepted and closed at once. Default 10,000.
    pub max_client_connections: usize,
    pub pool: PoolConfig,
    /// A session no client connection has used since its last one closed is closed upstream after this.
    /// Default 15 min, like impalad's `--disconnected_session_timeout`.
    pub disconnected_grace: Duration,
    /// How often disconnected sessions are checked. Default 30 s.
    pub reap_interval: Duration,
    /// A new client connection must finish its transport handshake (first bytes, SASL) within this.
    /// Default 30 s.
    pub handshake_timeout: Duration,
    /// A client connection with no request for this long is closed. Default 1 h.
    pub client_idle_timeout: Duration,
    /// A backend that sends no reply byte for this long fails the call. Default 1 h.
    pub backend_reply_timeout: Duration,
    pub health: HealthConfig,
    pub admin: AdminConfig,
    /// TLS on the listeners (`[tls]`); `None` without a certificate.
    pub tls: Option<TlsListenConfig>,
    pub http: HttpConfig,
    /// `[kerberos]`; `None` without the section.
    pub kerberos: Option<kerberos::KerberosConfig>,
}

/// Settings given on the command line; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub backends: Vec<String>,
    pub backend_transport: Option<BackendTransport>,
    pub backend_user: Option<String>,
    pub backend_password_file: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub http_listen: Option<String>,
}

impl FileConfig {
    /// Reads a TOML file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let key = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad(&key, e.to_string()))?;
        FileConfig::parse(&text).map_err(|e| bad(&key, e.reason))
    }

    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1);
            let reason = e.message().replace('\n', " ");
            bad(
                "config",
                match line {
                    Some(l) => format!("line {l}: {reason}"),
                    None => reason,
                },
            )
        })
    }

    pub fn apply(&mut self, o: Overrides) {
        if o.listen.is_some() {
            self.listen = o.listen;
        }
        if !o.backends.is_empty() {
            self.backends = o.backends.into_iter().map(FileBackend::Addr).collect();
        }
        if o.backend_transport.is_some() {
            self.backend_auth.transport = o.backend_transport;
        }
        if o.backend_user.is_some() {
            self.backend_auth.user = o.backend_user;
        }
        if o.backend_password_file.is_some() {
            self.backend_auth.password_file = o.backend_password_file;
        }
        if o.admin_listen.is_some() {
            self.admin.listen = o.admin_listen;
        }
        if o.tls_cert_file.is_some() {
            self.tls.cert_file = o.tls_cert_file;
        }
        if o.tls_key_file.is_some() {
            self.tls.key_file = o.tls_key_file;
        }
        if o.http_listen.is_some() {
            self.http.listen = o.http_listen;
        }
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:21050".into());
        let listen = listen_text.parse().map_err(|_| bad("listen", format!("{listen_text:?} is not an ip:port")))?;
        let backends = self.backends.into_iter().map(validate_backend).collect::<Result<Vec<_>, _>>()?;
        let password = match &self.backend_auth.password_file {
            None => String::new(),
            Some(p) => read_password(p)?,
        };
        let user = self.backend_auth.user.unwrap_or_else(|| "anonymous".into());
        let admin = validate_admin(self.admin)?;
        let tls = validate_tls(self.tls)?;
        let http = validate_http(self.http)?;
        let kerberos = self.kerberos.map(kerberos::FileKerberos::validate).transpose()?;
        let l = self.limits;
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(bad(key, "must be greater than 0")),
            v => Ok(v.unwrap_or(default)),
        };
        let max_depth = positive("limits.max_depth", l.max_depth.map(|v| v as u64), 64)? as usize;
        let max_container_len = positive("limits.max_container_len", l.max_container_len.map(u64::from), 1 << 27)?
            .min(u32::MAX as u64) as u32;
        let request_limits = Limits {
            max_message_bytes: positive("limits.max_request_bytes", l.max_request_bytes, 64 << 20)?,
            max_depth,
            max_container_len,
        };
        let reply_limits = Limits {
            max_message_bytes: positive("limits.max_reply_bytes", l.max_reply_bytes, 4 << 30)?,
            max_depth,
            max_container_len,
        };
        let pool = PoolConfig {
            max_per_backend: positive("pool.max_per_backend", self.pool.max_per_backend.map(|v| v as u64), 32)?
                as usize,
            wait_timeout: duration("pool.wait_timeout", self.pool.wait_timeout, "10s")?,
            idle_timeout: duration("pool.idle_timeout", self.pool.idle_timeout, "5m")?,
            connect_timeout: duration("pool.connect_timeout", self.pool.connect_timeout, "5s")?,
        };
        Ok(Config {
            listen,
            backends,
            backend_transport: self.backend_auth.transport.unwrap_or(BackendTransport::Nosasl),
            service_credentials: ServiceCredentials { user, password },
            request_limits,
            reply_limits,
            max_frame_bytes: positive("limits.max_frame_bytes", l.max_frame_bytes, 128 << 20)?,
            max_client_connections: positive(
                "limits.max_client_connections",
                l.max_client_connections.map(|v| v as u64),
                10_000,
            )? as usize,
            pool,
            disconnected_grace: duration("sessions.disconnected_grace", self.sessions.disconnected_grace, "15m")?,
            reap_interval: duration("sessions.reap_interval", self.sessions.reap_interval, "30s")?,
            handshake_timeout: duration("timeouts.handshake", self.timeouts.handshake, "30s")?,
            client_idle_timeout: duration("timeouts.client_idle", self.timeouts.client_idle, "1h")?,
            backend_reply_timeout: duration("timeouts.backend_reply", self.timeouts.backend_reply, "1h")?,
            health: HealthConfig {
                interval: duration("health.interval", self.health.interval, "2s")?,
                timeout: duration("health.timeout", self.health.timeout, "2s")?,
                rise: positive("health.rise", self.health.rise.map(u64::from), 2)? as u32,
                fall: positive("health.fall", self.health.fall.map(u64::from), 3)? as u32,
            },
            admin,
            tls,
            http,
            kerberos,
        })
    }
}

fn validate_backend(b: FileBackend) -> Result<BackendConfig, ConfigError> {
    let (addr, weight, kind, metrics_url, upstream) = match b {
        FileBackend::Addr(a) => (a, 1, BackendKind::Impala, None, FileUpstream::default()),
        FileBackend::Table { addr, weight, kind, metrics_url, upstream } => {
            (addr, weight.unwrap_or(1), kind.unwrap_or_default(), metrics_url, upstream)
        }
    };
    if let Some(url) = &metrics_url {
        if crate::backend::metrics::parse_http_url(url).is_none() {
            return Err(bad("backends", format!("{addr}: metrics_url {url:?} is not http://host:port/path")));
        }
    }
    let valid = match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    };
    if !valid {
        return Err(bad("backends", format!("{addr:?} is not host:port")));
    }
    if weight == 0 {
        return Err(bad("backends", format!("{addr}: weight must be at least 1")));
    }
    let upstream = validate_upstream(&addr, upstream)?;
    Ok(BackendConfig { addr, weight, kind, metrics_url, upstream })
}

fn validate_admin(a: FileAdmin) -> Result<AdminConfig, ConfigError> {
    let text = a.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
    let listen = match text.as_str() {
        "off" => None,
        t => Some(t.parse().map_err(|_| bad("admin.listen", format!("{t:?} is not an ip:port or \"off\"")))?),
    };
    let token = match &a.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad("admin.token_file", format!("{}: {e}", path.display())))?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(bad("admin.token_file", format!("{}: the first line is empty", path.display())));
            }
            Some(AdminToken(token))
        }
    };
    Ok(AdminConfig { listen, token })
}

fn read_password(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("backend_auth.password_file", format!("{}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    parse_duration(&text).ok_or_else(|| bad(key, format!("{text:?} is not a duration (use e.g. 500ms, 30s, 15m, 1h)")))
}

/// Parses `500ms`, `30s`, `15m`, `1h`, `2d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = FileConfig::parse("").unwrap().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:21050");
        assert_eq!(c.pool.max_per_backend, 32);
        assert_eq!(c.disconnected_grace, Duration::from_secs(900));
        assert_eq!(c.backend_transport, BackendTransport::Nosasl);
        assert_eq!(c.request_limits.max_message_bytes, 64 << 20);
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
        assert_eq!(c.admin.token, None);
    }

    #[test]
    fn the_documented_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/hs2-proxy.toml");
        let c = FileConfig::load(&path).and_then(FileConfig::validate).unwrap();
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
    }

    #[test]
    fn the_admin_listener_can_be_turned_off_and_the_token_never_prints() {
        let c = FileConfig::parse("[admin]\nlisten = \"off\"").unwrap().validate().unwrap();
        assert_eq!(c.admin.listen, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\nignored\n").unwrap();
        let text = format!("[admin]\ntoken_file = {:?}", path.display().to_string());
        let c = FileConfig::parse(&text).unwrap().validate().unwrap();
        assert_eq!(c.admin.token, Some(AdminToken("s3cret-token".into())));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn file_keys_and_flags_combine() {
        let mut f = FileConfig::parse(
            r#"
            listen = "0.0.0.0:1"
            backends = ["a:1", { addr = "b:2", weight = 3 }]
            [pool]
            wait_timeout = "250ms"
            [sessions]
            disconnected_grace = "2m"
            "#,
        )
        .unwrap();
        let c = FileConfig::parse("").unwrap();
        assert!(c.backends.is_empty());
        assert_eq!(f.backends.len(), 2);
        f.apply(Overrides { listen: Some("127.0.0.1:9".into()), ..Default::default() });
        let c = f.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9");
        assert_eq!(c.backends[1], BackendConfig { weight: 3, ..BackendConfig::new("b:2") });
        assert_eq!(c.pool.wait_timeout, Duration::from_millis(250));
        assert_eq!(c.disconnected_grace, Duration::from_secs(120));
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| FileConfig::parse(text).and_then(FileConfig::validate).unwrap_err().to_string();
        assert!(err("[pool]\nwait_timeout = \"soon\"").starts_with("pool.wait_timeout: "));
        assert!(err("backends = [\"nohost\"]").starts_with("backends: "));
        assert!(err("listen = \"x\"").starts_with("listen: "));
        assert!(err("[limits]\nmax_depth = 0").starts_with("limits.max_depth: "));
        assert!(err("[admin]\nlisten = \"everywhere\"").starts_with("admin.listen: "));
        assert!(err("[admin]\ntoken_file = \"/nonexistent/token\"").starts_with("admin.token_file: "));
        let unknown = err("[pool]\nmax_per_backnd = 3");
        assert!(unknown.contains("line 2") && unknown.contains("max_per_backnd"), "{unknown}");
        assert!(!unknown.contains('\n'));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration(""), None);
    }
}
