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

mod check;
mod discovery;
pub mod kerberos;
pub mod rules;
mod transport;
pub mod trusted;
use check::{counts, durations};
pub use check::{format_duration, parse_duration};
pub use discovery::*;
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
    /// SASL GSSAPI as the proxy's own principal (`[kerberos] client_principal`), delegating each
    /// session's user (Kerberized impalads and HiveServer2s).
    Gssapi,
}

/// The TOML file as written. Durations are strings like `"500ms"`, `"30s"`, `"15m"`, `"1h"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Client listener. Default `127.0.0.1:21050`.
    pub listen: Option<String>,
    /// Bind every listener with SO_REUSEPORT. Default `true`.
    pub reuse_port: Option<bool>,
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
    pub discovery: FileDiscovery,
    pub kerberos: Option<kerberos::FileKerberos>,
    /// Coordinator groups and placement rules (`rules`).
    pub groups: Vec<rules::FileGroup>,
    pub rules: Vec<rules::FileRule>,
    pub user_groups: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileAdmin {
    /// Admin HTTP listener (API, status page, metrics): `ip:port`, or `"off"`. Default `127.0.0.1:25100`.
    pub listen: Option<String>,
    /// A file whose first line is the bearer token the admin API requires. Default: no token.
    pub token_file: Option<PathBuf>,
    pub max_connections: Option<u64>,
    pub header_read_timeout: Option<String>,
    pub history_interval: Option<String>,
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
    /// Admin connections served at once; more are closed at once. Default 128.
    pub max_connections: usize,
    /// A request line and headers must arrive within this; idle keep-alive connections close after it too.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// How often the status page's history charts take a sample (the last 15 minutes are kept, at most
    /// `admin::history::MAX_SAMPLES` samples). Default 5 s.
    pub history_interval: Duration,
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
/// session it does not know (after a restart, or opened through another instance). Detected from the
/// server's answers unless the configuration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// impalad: GetInfo validates the session and changes nothing.
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
    pub rise: Option<u64>,
    pub fall: Option<u64>,
    pub slow_start: Option<String>,
    pub eject_after: Option<u64>,
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
    /// A backend that comes up (or is added) ramps from a tenth of its weight to all of it over this long,
    /// so it is not flooded with every new session at once. Default 0 (off).
    pub slow_start: Duration,
    /// Broken exchanges in a row on live traffic that take a backend down before the next probe. Default 5.
    pub eject_after: u32,
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
    /// With `sasl`: every call goes on the service user's connections, delegating its client (default
    /// false: each password client uses its own credentials).
    pub delegate: Option<bool>,
    /// The header impalad trusts (`--trusted_auth_header`): every POST then asserts the client's user
    /// with `Basic <user>:` and this header, and impalad checks nothing (see `config::trusted`).
    pub trusted_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLimits {
    pub max_request_bytes: Option<u64>,
    pub max_reply_bytes: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub max_depth: Option<u64>,
    pub max_container_len: Option<u64>,
    pub max_client_connections: Option<u64>,
    pub max_buffered_request_bytes: Option<u64>,
    pub max_sessions_per_user: Option<u64>,
    pub max_connections_per_user: Option<u64>,
    pub max_connections_per_address: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilePool {
    pub max_per_backend: Option<u64>,
    pub wait_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSessions {
    pub disconnected_grace: Option<String>,
    pub reap_interval: Option<String>,
    pub move_on_failure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTimeouts {
    pub handshake: Option<String>,
    pub client_idle: Option<String>,
    pub client_write: Option<String>,
    pub request_read: Option<String>,
    pub request_total: Option<String>,
    pub backend_reply: Option<String>,
    pub recovery: Option<String>,
    pub shutdown_grace: Option<String>,
}

/// One backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port`, resolved at connect time so that DNS changes are followed.
    pub addr: String,
    pub weight: u32,
    /// Forced by the configuration; `None` (the default) lets the probes tell from the server's answers.
    pub kind: Option<BackendKind>,
    /// impalad's `/jsonmetrics` URL (`http://host:25000/jsonmetrics`): when set, the impalad's own count of
    /// open HS2 sessions joins the balancing, so sessions opened around the proxy count too. Off by default.
    pub metrics_url: Option<HttpUrl>,
    /// Binary or HTTP, with or without TLS. Default binary without TLS.
    pub upstream: UpstreamConfig,
}

impl BackendConfig {
    pub fn new(addr: &str) -> BackendConfig {
        BackendConfig {
            addr: addr.to_string(),
            weight: 1,
            kind: None,
            metrics_url: None,
            upstream: UpstreamConfig::default(),
        }
    }
}

/// A plain `http://host:port/path` URL (impalad's web port speaks nothing fancier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`.
    pub authority: String,
    /// Starts with `/`.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Option<HttpUrl> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority.rsplit_once(':')?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return None;
        }
        Some(HttpUrl { authority: authority.to_string(), path: path.to_string() })
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
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

/// How the proxy authenticates to backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendAuthConfig {
    pub transport: BackendTransport,
    /// For clients that did not authenticate themselves, and the account that delegates them.
    pub service: ServiceCredentials,
    /// `sasl` only: run every session on the service account's connections, delegating its user.
    pub delegate: bool,
    /// Impala's trusted hop (`backend_auth.trusted_header`): the header sent with `Basic <user>:` on
    /// every POST; the proxy then serves only clients it authenticated itself.
    pub trusted_header: Option<http::HeaderName>,
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

/// Bounds on what peers may make the proxy hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    pub request: Limits,
    pub reply: Limits,
    /// Largest frame accepted on framed and SASL transports. Default 128 MiB.
    pub max_frame_bytes: u64,
    /// Client connections served at once; more are accepted and closed at once. Default 10,000.
    pub max_client_connections: usize,
    /// Request bytes all client connections together may hold while requests are being read, beyond the
    /// first `conn::READ_CHUNK` of each (which every connection has anyway). A request that would go
    /// over gets an error and its connection is closed; others are unaffected. Default 1 GiB.
    pub max_buffered_request_bytes: u64,
    /// Sessions one user may hold through this instance (the authenticated user, else OpenSession's
    /// `username`); `None`: no cap. impalad's `--max_hs2_sessions_per_user` is the cluster-wide one.
    pub max_sessions_per_user: Option<u64>,
    /// Client connections one authenticated user may hold; `None`: no cap.
    pub max_connections_per_user: Option<u64>,
    /// Client connections one client address may hold; `None`: no cap.
    pub max_connections_per_address: Option<u64>,
}

/// Session clean-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionsConfig {
    /// A session no client connection has used since its last one closed is closed upstream after this.
    /// Default 15 min, like impalad's `--disconnected_session_timeout`.
    pub disconnected_grace: Duration,
    /// How often disconnected sessions are checked. Default 30 s.
    pub reap_interval: Duration,
    /// A session whose backend went down is re-opened on another backend on its next call, with its
    /// state (`USE`, `SET`), when it can be (see `hs2::session_state`). Default true.
    pub move_on_failure: bool,
}

/// Deadlines, each on one side of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A new client connection must finish its transport handshake (first bytes, TLS, SASL, including
    /// the upstream check of a SASL client's password) within this. Default 30 s.
    pub handshake: Duration,
    /// A client connection with no request for this long is closed. Default 1 h.
    pub client_idle: Duration,
    /// A client that accepts no reply bytes for this long is disconnected; the rest of the reply is read
    /// and dropped so that the upstream connection stays usable. Default 60 s.
    pub client_write: Duration,
    /// Once a request has begun, a client that sends no more of it for this long is disconnected (binary
    /// request bytes, HTTP request bodies). Default 60 s.
    pub request_read: Duration,
    /// Once a request has begun, it must arrive whole within this, however steadily its bytes come (a
    /// client trickling a byte at a time would otherwise hold its connection forever: slowloris). At
    /// least `request_read`. Default 5 min (64 MiB, `limits.max_request_bytes`, at 220 KB/s).
    pub request_total: Duration,
    /// A backend that sends no reply byte for this long fails the call (inactivity, not the whole
    /// reply: a long fetch that keeps streaming is never cut). Default 1 h.
    pub backend_reply: Duration,
    /// Finding the owner of an unknown handle (all backends asked at once) gives up after this. Default 5 s.
    pub recovery: Duration,
    /// On SIGTERM/SIGINT, connections get this long to finish the call they are in. Default 30 s.
    pub shutdown_grace: Duration,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Every listener (HS2, `http.listen`, admin) binds with SO_REUSEPORT, so that a new instance can
    /// start on the same addresses while the old one drains (upgrade: start new, SIGTERM old; the kernel
    /// spreads new connections over both until the old one closes its listeners). Default `true`;
    /// `reuse_port = false` makes a second instance on a taken address fail at start instead.
    pub reuse_port: bool,
    pub backends: Vec<BackendConfig>,
    pub backend_auth: BackendAuthConfig,
    pub limits: LimitsConfig,
    pub pool: PoolConfig,
    pub sessions: SessionsConfig,
    pub timeouts: Timeouts,
    pub health: HealthConfig,
    pub admin: AdminConfig,
    /// TLS on the listeners (`[tls]`); `None` without a certificate.
    pub tls: Option<TlsListenConfig>,
    pub http: HttpConfig,
    /// ZooKeeper registration (`[discovery]`); `None` unless `discovery.zookeeper` is set.
    pub discovery: Option<DiscoveryConfig>,
    /// `[kerberos]`; `None` without the section.
    pub kerberos: Option<kerberos::KerberosConfig>,
    /// Where new sessions may go (`[[groups]]`, `[[rules]]`, `[user_groups]`).
    pub policy: crate::rules::Policy,
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
        let backend_auth = validate_backend_auth(self.backend_auth)?;
        let discovery = validate_discovery(self.discovery, listen)?;
        let kerberos = self.kerberos.map(kerberos::FileKerberos::validate).transpose()?;
        let policy = rules::validate_policy(self.groups, self.rules, self.user_groups, &backends)?;
        check_kerberos_upstream(&backend_auth, kerberos.as_ref(), &backends)?;
        let config = Config {
            listen,
            reuse_port: self.reuse_port.unwrap_or(true),
            backends,
            backend_auth,
            limits: validate_limits(self.limits)?,
            pool: PoolConfig {
                max_per_backend: counts::POOL_MAX_PER_BACKEND.read(self.pool.max_per_backend)? as usize,
                wait_timeout: durations::POOL_WAIT.read(self.pool.wait_timeout)?,
                idle_timeout: durations::POOL_IDLE.read(self.pool.idle_timeout)?,
                connect_timeout: durations::POOL_CONNECT.read(self.pool.connect_timeout)?,
            },
            sessions: SessionsConfig {
                disconnected_grace: durations::DISCONNECTED_GRACE.read(self.sessions.disconnected_grace)?,
                reap_interval: durations::REAP_INTERVAL.read(self.sessions.reap_interval)?,
                move_on_failure: self.sessions.move_on_failure.unwrap_or(true),
            },
            timeouts: validate_timeouts(self.timeouts)?,
            health: HealthConfig {
                interval: durations::HEALTH_INTERVAL.read(self.health.interval)?,
                timeout: durations::HEALTH_TIMEOUT.read(self.health.timeout)?,
                rise: counts::HEALTH_RISE.read(self.health.rise)? as u32,
                fall: counts::HEALTH_FALL.read(self.health.fall)? as u32,
                slow_start: durations::SLOW_START.read(self.health.slow_start)?,
                eject_after: counts::EJECT_AFTER.read(self.health.eject_after)? as u32,
            },
            admin: validate_admin(self.admin)?,
            tls: validate_tls(self.tls)?,
            http: validate_http(self.http)?,
            discovery,
            kerberos,
            policy,
        };
        trusted::check(&config)?;
        Ok(config)
    }
}

/// `backend_auth.transport = "gssapi"` needs the proxy's own principal, and binary backends (HTTP backends
/// would need SPNEGO upstream, which is not built).
fn check_kerberos_upstream(
    auth: &BackendAuthConfig,
    kerberos: Option<&kerberos::KerberosConfig>,
    backends: &[BackendConfig],
) -> Result<(), ConfigError> {
    if auth.transport != BackendTransport::Gssapi {
        return Ok(());
    }
    if kerberos.and_then(|k| k.upstream.as_ref()).is_none() {
        return Err(bad("backend_auth.transport", "\"gssapi\" needs [kerberos] client_principal (the proxy's own)"));
    }
    if let Some(b) = backends.iter().find(|b| b.upstream.transport == UpstreamTransport::Http) {
        let why = format!("{}: transport = \"http\" with backend_auth.transport = \"gssapi\" is not supported", b.addr);
        return Err(bad("backends", why));
    }
    Ok(())
}

fn validate_backend_auth(a: FileBackendAuth) -> Result<BackendAuthConfig, ConfigError> {
    let password = match &a.password_file {
        None => String::new(),
        Some(p) => read_password(p)?,
    };
    let user = a.user.unwrap_or_else(|| "anonymous".into());
    if user.is_empty() {
        return Err(bad("backend_auth.user", "must not be empty"));
    }
    let transport = a.transport.unwrap_or(BackendTransport::Nosasl);
    let delegate = a.delegate.unwrap_or(false);
    if delegate && transport != BackendTransport::Sasl {
        return Err(bad(
            "backend_auth.delegate",
            "only with backend_auth.transport = \"sasl\" (gssapi always delegates)",
        ));
    }
    let trusted_header = trusted::parse(a.trusted_header)?;
    Ok(BackendAuthConfig { transport, service: ServiceCredentials { user, password }, delegate, trusted_header })
}

fn validate_limits(l: FileLimits) -> Result<LimitsConfig, ConfigError> {
    let max_depth = counts::MAX_DEPTH.read(l.max_depth)? as usize;
    let max_container_len = counts::MAX_CONTAINER_LEN.read(l.max_container_len)? as u32;
    let request_bytes = counts::MAX_REQUEST_BYTES.read(l.max_request_bytes)?;
    let budget = counts::MAX_BUFFERED_REQUEST_BYTES.read(l.max_buffered_request_bytes)?;
    if budget < request_bytes {
        return Err(bad(
            counts::MAX_BUFFERED_REQUEST_BYTES.key,
            format!(
                "{budget} is less than limits.max_request_bytes ({request_bytes}): no large request could ever be read"
            ),
        ));
    }
    Ok(LimitsConfig {
        request: Limits { max_message_bytes: request_bytes, max_depth, max_container_len },
        reply: Limits {
            max_message_bytes: counts::MAX_REPLY_BYTES.read(l.max_reply_bytes)?,
            max_depth,
            max_container_len,
        },
        max_frame_bytes: counts::MAX_FRAME_BYTES.read(l.max_frame_bytes)?,
        max_client_connections: counts::MAX_CLIENT_CONNECTIONS.read(l.max_client_connections)? as usize,
        max_buffered_request_bytes: budget,
        max_sessions_per_user: l.max_sessions_per_user.map(|v| counts::PER_USER_SESSIONS.read(Some(v))).transpose()?,
        max_connections_per_user: l
            .max_connections_per_user
            .map(|v| counts::PER_USER_CONNECTIONS.read(Some(v)))
            .transpose()?,
        max_connections_per_address: l
            .max_connections_per_address
            .map(|v| counts::PER_ADDRESS_CONNECTIONS.read(Some(v)))
            .transpose()?,
    })
}

fn validate_timeouts(t: FileTimeouts) -> Result<Timeouts, ConfigError> {
    let request_read = durations::REQUEST_READ.read(t.request_read)?;
    let request_total = durations::REQUEST_TOTAL.read(t.request_total)?;
    if request_total < request_read {
        return Err(bad(
            "timeouts.request_total",
            format!("must be at least timeouts.request_read ({request_read:?})"),
        ));
    }
    Ok(Timeouts {
        handshake: durations::HANDSHAKE.read(t.handshake)?,
        client_idle: durations::CLIENT_IDLE.read(t.client_idle)?,
        client_write: durations::CLIENT_WRITE.read(t.client_write)?,
        request_read,
        request_total,
        backend_reply: durations::BACKEND_REPLY.read(t.backend_reply)?,
        recovery: durations::RECOVERY.read(t.recovery)?,
        shutdown_grace: durations::SHUTDOWN_GRACE.read(t.shutdown_grace)?,
    })
}

fn validate_backend(b: FileBackend) -> Result<BackendConfig, ConfigError> {
    let (addr, weight, kind, metrics_url, upstream) = match b {
        FileBackend::Addr(a) => (a, 1, None, None, FileUpstream::default()),
        FileBackend::Table { addr, weight, kind, metrics_url, upstream } => {
            (addr, weight.unwrap_or(1), kind, metrics_url, upstream)
        }
    };
    let metrics_url = match metrics_url {
        None => None,
        Some(url) => Some(
            HttpUrl::parse(&url)
                .ok_or_else(|| bad("backends", format!("{addr}: metrics_url {url:?} is not http://host:port/path")))?,
        ),
    };
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
    Ok(AdminConfig {
        listen,
        token,
        max_connections: counts::ADMIN_MAX_CONNECTIONS.read(a.max_connections)? as usize,
        header_read_timeout: durations::ADMIN_HEADER_READ.read(a.header_read_timeout)?,
        history_interval: durations::ADMIN_HISTORY_INTERVAL.read(a.history_interval)?,
    })
}

fn read_password(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("backend_auth.password_file", format!("{}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = FileConfig::parse("").unwrap().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:21050");
        assert_eq!(c.pool.max_per_backend, 32);
        assert_eq!(c.sessions.disconnected_grace, Duration::from_secs(900));
        assert_eq!(c.backend_auth.transport, BackendTransport::Nosasl);
        assert_eq!(c.limits.request.max_message_bytes, 64 << 20);
        assert_eq!(c.limits.max_buffered_request_bytes, 1 << 30);
        assert_eq!(c.timeouts.client_write, Duration::from_secs(60));
        assert_eq!(c.timeouts.recovery, Duration::from_secs(5));
        assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
        assert_eq!(c.admin.token, None);
        assert!(c.reuse_port);
        assert!(!FileConfig::parse("reuse_port = false").unwrap().validate().unwrap().reuse_port);
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
        assert_eq!(c.sessions.disconnected_grace, Duration::from_secs(120));
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

    /// Values that once crashed or spun the proxy (a zero reap interval panicked the clean-up task at
    /// start; a zero health interval spun; a huge pool wait overflowed) are refused at load.
    #[test]
    fn values_that_would_crash_or_spin_are_refused_with_the_range() {
        let err = |text: &str| FileConfig::parse(text).and_then(FileConfig::validate).unwrap_err().to_string();
        for (text, key) in [
            ("[sessions]\nreap_interval = \"0s\"", "sessions.reap_interval"),
            ("[health]\ninterval = \"0\"", "health.interval"),
            ("[health]\ntimeout = \"0ms\"", "health.timeout"),
            ("[pool]\nwait_timeout = \"36500d\"", "pool.wait_timeout"),
            ("[pool]\nconnect_timeout = \"0s\"", "pool.connect_timeout"),
            ("[timeouts]\nclient_write = \"0s\"", "timeouts.client_write"),
            ("[timeouts]\nrecovery = \"0s\"", "timeouts.recovery"),
            ("[timeouts]\nbackend_reply = \"99999d\"", "timeouts.backend_reply"),
            ("[pool]\nmax_per_backend = 0", "pool.max_per_backend"),
            ("[limits]\nmax_frame_bytes = 4294967296", "limits.max_frame_bytes"),
            ("[limits]\nmax_depth = 100000", "limits.max_depth"),
            ("[limits]\nmax_buffered_request_bytes = 1048576", "limits.max_buffered_request_bytes"),
            ("[health]\nrise = 0", "health.rise"),
            ("[admin]\nmax_connections = 0", "admin.max_connections"),
            ("[admin]\nhistory_interval = \"10ms\"", "admin.history_interval"),
        ] {
            let e = err(text);
            assert!(e.starts_with(&format!("{key}: ")), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(e.contains("allowed") || e.contains("less than"), "says the range: {e}");
        }
    }
}
