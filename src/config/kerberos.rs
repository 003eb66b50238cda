//! The `[kerberos]` section: accepting Kerberos clients (SASL GSSAPI and HTTP Negotiate), the proxy's own
//! identity towards Kerberized backends, delegation, and principal-to-user rules.
//!
//! ```toml
//! [kerberos]
//! keytab = "/etc/hs2-proxy/hs2-proxy.keytab"       # impala/<lb host> (+ HTTP/<lb host> for SPNEGO)
//! service_principal = "impala/lb.example.com"      # what clients ask for; default impala/<this host>
//! client_principal = "hs2proxy/lb.example.com"     # the proxy upstream; its TGT comes from client_keytab
//! client_keytab = "/etc/hs2-proxy/hs2-proxy.keytab"  # default: keytab
//! backend_principal = "impala/_HOST"               # _HOST = each backend's host; default <service>/_HOST
//! delegation = "impala"                            # for backends of unknown kind: impala.doas.user, or "hive":
//!                                                  # hive.server2.proxy.user; default: by kind, both until known
//! auth_to_local = ["RULE:[1:$1@$0](.*@EXAMPLE\\.COM)s/@.*//", "DEFAULT"]   # default ["DEFAULT"]
//! [kerberos.proxy_users]                           # clients that may delegate themselves (Hue)
//! hue = "*"
//! knox = ["alice", "bob"]
//! ```
//! These key names are a contract (other tools write them). Validation reads the keytabs' headers so that a
//! missing or unreadable one stops the start naming its key; whether a keytab holds the principal is only
//! known to GSS-API: [`KerberosConfig::acquire`] gets the credentials at start, its errors naming keys too.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{bad, ConfigError};
use crate::kerberos::delegation::{Delegation, ProxyUsers};
use crate::kerberos::principal::ShortNames;
use crate::kerberos::{Credential, Gss};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileKerberos {
    pub keytab: Option<PathBuf>,
    pub service_principal: Option<String>,
    pub client_principal: Option<String>,
    pub client_keytab: Option<PathBuf>,
    pub backend_principal: Option<String>,
    pub delegation: Option<Delegation>,
    pub proxy_users: BTreeMap<String, FileProxyUsers>,
    pub auth_to_local: Vec<String>,
}

/// `hue = "*"`, `hue = "alice,bob"` or `hue = ["alice", "bob"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileProxyUsers {
    One(String),
    Many(Vec<String>),
}

/// Accepting Kerberos clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptorConfig {
    pub keytab: PathBuf,
    /// `impala/<host>`: the principal SASL GSSAPI clients ask for.
    pub service_principal: String,
}

/// The proxy's identity towards Kerberized backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamKerberos {
    pub client_principal: String,
    pub client_keytab: PathBuf,
    /// With `_HOST` to be replaced by each backend's host ([`UpstreamKerberos::backend_principal_for`]).
    pub backend_principal: String,
}

/// The validated `[kerberos]` section.
#[derive(Clone, Debug)]
pub struct KerberosConfig {
    /// `None` without `keytab`: clients cannot use Kerberos.
    pub acceptor: Option<AcceptorConfig>,
    /// `None` without `client_principal`: the proxy does not authenticate upstream with Kerberos.
    pub upstream: Option<UpstreamKerberos>,
    /// `None` (not set): by each backend's kind, and both keys while it is unknown (see `dispatch`).
    pub delegation: Option<Delegation>,
    /// Clients allowed to delegate (`impala.doas.user` / `hive.server2.proxy.user` in OpenSession).
    pub proxy_users: ProxyUsers,
    pub short_names: ShortNames,
}

impl KerberosConfig {
    /// The HTTP service principal for SPNEGO: `HTTP/` + the host of `service_principal` (+ its realm).
    pub fn http_principal(&self) -> Option<String> {
        let service = &self.acceptor.as_ref()?.service_principal;
        let (_, host) = service.split_once('/')?;
        Some(format!("HTTP/{host}"))
    }

    /// Loads GSS-API and acquires every credential the section asks for; errors name the key. The
    /// upstream initiator gets its first TGT here, so the KDC must answer (as impalad's own kinit at start).
    pub fn acquire(&self) -> Result<KerberosCredentials, ConfigError> {
        if self.acceptor.is_none() && self.upstream.is_none() {
            // Only `proxy_users`: no GSS-API needed (nor loaded).
            return Ok(KerberosCredentials { sasl: None, http: None, upstream: None });
        }
        let gss = Gss::load().map_err(|e| bad("kerberos", e.to_string()))?;
        let (sasl, http) = match &self.acceptor {
            None => (None, None),
            Some(a) => {
                let sasl = gss
                    .acceptor(&a.keytab, Some(&a.service_principal))
                    .map_err(|e| bad("kerberos.service_principal", e.to_string()))?;
                // SPNEGO clients ask for HTTP/<the host they typed>: any key of the proxy's keytab serves.
                let http = gss.acceptor(&a.keytab, None).map_err(|e| bad("kerberos.keytab", e.to_string()))?;
                (Some(sasl), Some(http))
            }
        };
        let upstream = match &self.upstream {
            None => None,
            Some(u) => Some(
                gss.initiator_with_keytab(&u.client_principal, &u.client_keytab)
                    .map_err(|e| bad("kerberos.client_principal", e.to_string()))?,
            ),
        };
        Ok(KerberosCredentials { sasl, http, upstream })
    }
}

/// The credentials of a `[kerberos]` section, acquired ([`KerberosConfig::acquire`]); clones share them.
#[derive(Clone, Debug)]
pub struct KerberosCredentials {
    /// SASL GSSAPI acceptor, bound to `service_principal`.
    pub sasl: Option<Credential>,
    /// HTTP Negotiate acceptor: any principal of `keytab` (it should hold `HTTP/<host>`).
    pub http: Option<Credential>,
    /// The proxy's own initiator (`client_principal` from `client_keytab`).
    pub upstream: Option<Credential>,
}

impl UpstreamKerberos {
    /// The service principal of the backend at `addr` (`host:port`): `_HOST` becomes the host, lower-cased
    /// as Hadoop does.
    pub fn backend_principal_for(&self, addr: &str) -> String {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.backend_principal.replace("_HOST", &host.to_ascii_lowercase())
    }
}

impl FileKerberos {
    pub fn validate(self) -> Result<KerberosConfig, ConfigError> {
        // `proxy_users` alone is a use of its own: who may delegate with a service account over SASL PLAIN
        // (`backend_auth.delegate`, LDAP-only impalads), with no Kerberos at all.
        if self.keytab.is_none() && self.client_principal.is_none() && self.proxy_users.is_empty() {
            let why = "set keytab (to accept Kerberos clients), client_principal (to authenticate to backends) \
                       or proxy_users (who may delegate)";
            return Err(bad("kerberos", why));
        }
        let delegation = self.delegation;
        let acceptor = match &self.keytab {
            None => None,
            Some(keytab) => {
                check_keytab("kerberos.keytab", keytab)?;
                let service_principal = match self.service_principal {
                    Some(p) => service_principal("kerberos.service_principal", p)?,
                    None => format!("impala/{}", local_host_name()),
                };
                Some(AcceptorConfig { keytab: keytab.clone(), service_principal })
            }
        };
        let upstream =
            upstream(self.client_principal, self.client_keytab.or(self.keytab), self.backend_principal, delegation)?;
        let short_names =
            ShortNames::parse(&self.auth_to_local).map_err(|e| bad("kerberos.auth_to_local", e.to_string()))?;
        let mut proxy_users = ProxyUsers::default();
        for (proxy, users) in &self.proxy_users {
            let users: Vec<&str> = match users {
                FileProxyUsers::One(text) => text.split(',').collect(),
                FileProxyUsers::Many(list) => list.iter().map(String::as_str).collect(),
            };
            if users.iter().all(|u| u.trim().is_empty()) {
                return Err(bad(&format!("kerberos.proxy_users.{proxy}"), "names nobody (use \"*\" for anyone)"));
            }
            proxy_users.allow(proxy, users);
        }
        Ok(KerberosConfig { acceptor, upstream, delegation, proxy_users, short_names })
    }
}

fn upstream(
    client_principal: Option<String>,
    client_keytab: Option<PathBuf>,
    backend_principal: Option<String>,
    delegation: Option<Delegation>,
) -> Result<Option<UpstreamKerberos>, ConfigError> {
    let Some(client_principal) = client_principal else {
        if backend_principal.is_some() {
            return Err(bad("kerberos.backend_principal", "needs kerberos.client_principal (the proxy's own)"));
        }
        return Ok(None);
    };
    let client_principal = principal("kerberos.client_principal", client_principal)?;
    let client_keytab = client_keytab
        .ok_or_else(|| bad("kerberos.client_keytab", "needed for client_principal (or set kerberos.keytab)"))?;
    check_keytab("kerberos.client_keytab", &client_keytab)?;
    let default_service = match delegation.unwrap_or_default() {
        Delegation::Impala => "impala",
        Delegation::Hive => "hive",
    };
    let backend_principal = match backend_principal {
        Some(p) => service_principal("kerberos.backend_principal", p)?,
        None => format!("{default_service}/_HOST"),
    };
    Ok(Some(UpstreamKerberos { client_principal, client_keytab, backend_principal }))
}

/// A principal as written: not empty, no whitespace, at most one `@`.
fn principal(key: &str, text: String) -> Result<String, ConfigError> {
    let t = text.trim();
    let ok =
        !t.is_empty() && !t.contains(char::is_whitespace) && t.matches('@').count() <= 1 && !t.starts_with(['/', '@']);
    if !ok {
        return Err(bad(key, format!("{text:?} is not a Kerberos principal (service/host[@REALM] or user[@REALM])")));
    }
    Ok(t.to_string())
}

/// A service principal: `service/host[@REALM]`.
fn service_principal(key: &str, text: String) -> Result<String, ConfigError> {
    let p = principal(key, text)?;
    let name = p.split('@').next().unwrap_or_default();
    match name.split_once('/') {
        Some((service, host)) if !service.is_empty() && !host.is_empty() => Ok(p),
        _ => Err(bad(
            key,
            format!("{p:?} is not a service principal (service/host[@REALM], e.g. impala/lb.example.com)"),
        )),
    }
}

/// MIT keytab files start with 0x05 and a format version (1 or 2).
fn check_keytab(key: &str, path: &Path) -> Result<(), ConfigError> {
    let shown = path.display();
    let mut head = [0u8; 2];
    let mut file = std::fs::File::open(path).map_err(|e| bad(key, format!("{shown}: {e}")))?;
    let n = file.read(&mut head).map_err(|e| bad(key, format!("{shown}: {e}")))?;
    match (n, head) {
        (0, _) => Err(bad(key, format!("{shown} is empty"))),
        (2, [5, 1 | 2]) => Ok(()),
        _ => Err(bad(key, format!("{shown} is not a keytab (create it with kadmin ktadd or ktutil)"))),
    }
}

/// This host's name, lower-cased (`gethostname`), for the default `impala/<host>`.
pub fn local_host_name() -> String {
    extern "C" {
        fn gethostname(name: *mut std::ffi::c_char, len: usize) -> std::ffi::c_int;
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len` bytes; gethostname writes at most that and NUL-terminates
    // when the name fits (a truncated name is cut at the buffer's end below).
    let rc = unsafe { gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len() - 1);
    match (rc, std::str::from_utf8(&buf[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_ascii_lowercase(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KerberosConfig, String> {
        let f: FileKerberos = toml::from_str(text).map_err(|e| e.to_string())?;
        f.validate().map_err(|e| e.to_string())
    }

    fn keytab(dir: &Path) -> PathBuf {
        let p = dir.join("proxy.keytab");
        std::fs::write(&p, [5, 2, 0, 0, 0, 0]).unwrap();
        p
    }

    #[test]
    fn a_full_section() {
        let dir = tempfile::tempdir().unwrap();
        let kt = keytab(dir.path());
        let c = parse(&format!(
            r#"
            keytab = {kt:?}
            service_principal = "impala/lb.example.com@EXAMPLE.COM"
            client_principal = "hs2proxy/lb.example.com"
            backend_principal = "impala/_HOST@EXAMPLE.COM"
            delegation = "hive"
            auth_to_local = ['RULE:[1:$1@$0](.*@EXAMPLE\.COM)s/@.*//']
            [proxy_users]
            hue = "*"
            knox = ["alice", "bob"]
            etl = "carol, dave"
            "#
        ))
        .unwrap();
        let a = c.acceptor.as_ref().unwrap();
        assert_eq!(
            (a.keytab.as_path(), a.service_principal.as_str()),
            (kt.as_path(), "impala/lb.example.com@EXAMPLE.COM")
        );
        assert_eq!(c.http_principal().as_deref(), Some("HTTP/lb.example.com@EXAMPLE.COM"));
        let u = c.upstream.as_ref().unwrap();
        assert_eq!(u.client_keytab, kt, "client_keytab defaults to keytab");
        assert_eq!(u.backend_principal_for("Impalad-3.Example.com:21050"), "impala/impalad-3.example.com@EXAMPLE.COM");
        assert_eq!(u.backend_principal_for("[::1]:21050"), "impala/::1@EXAMPLE.COM");
        assert_eq!(c.delegation, Some(Delegation::Hive));
        assert!(
            c.proxy_users.allows("hue", "x")
                && c.proxy_users.allows("knox", "bob")
                && c.proxy_users.allows("etl", "dave")
        );
        assert!(!c.proxy_users.allows("knox", "carol"));
        assert_eq!(c.short_names.short_name("alice@EXAMPLE.COM").unwrap(), "alice");
        assert!(c.short_names.short_name("alice@OTHER.COM").is_err());
    }

    #[test]
    fn defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(&format!("keytab = {:?}", keytab(dir.path()))).unwrap();
        assert_eq!(c.acceptor.unwrap().service_principal, format!("impala/{}", local_host_name()));
        assert!(c.upstream.is_none() && c.proxy_users.is_empty());
        assert_eq!(c.delegation, None, "by the backend's kind");
        assert_eq!(c.short_names.short_name("impala/h@R").unwrap(), "impala");
        let c = parse(&format!("client_principal = 'hs2proxy'\nclient_keytab = {:?}", keytab(dir.path()))).unwrap();
        assert!(c.acceptor.is_none());
        assert_eq!(c.upstream.unwrap().backend_principal, "impala/_HOST");
        let c =
            parse(&format!("client_principal = 'p'\ndelegation = 'hive'\nkeytab = {:?}", keytab(dir.path()))).unwrap();
        assert_eq!(c.upstream.unwrap().backend_principal, "hive/_HOST");
    }

    #[test]
    fn the_section_in_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[kerberos]\nkeytab = {:?}\n[kerberos.proxy_users]\nhue = '*'", keytab(dir.path()));
        let c = crate::config::FileConfig::parse(&text).and_then(crate::config::FileConfig::validate).unwrap();
        assert!(c.kerberos.unwrap().proxy_users.allows("hue", "alice"));
        let c = crate::config::FileConfig::parse("").and_then(crate::config::FileConfig::validate).unwrap();
        assert!(c.kerberos.is_none());
        let e = crate::config::FileConfig::parse("[kerberos]\nkeytab = '/nonexistent'")
            .and_then(crate::config::FileConfig::validate);
        assert!(e.unwrap_err().to_string().starts_with("kerberos.keytab: /nonexistent: "));
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let kt = keytab(dir.path());
        let empty = dir.path().join("empty.keytab");
        std::fs::write(&empty, b"").unwrap();
        let text = dir.path().join("text.keytab");
        std::fs::write(&text, b"hello").unwrap();
        let err = |t: String| parse(&t).unwrap_err();
        assert!(err(String::new()).starts_with("kerberos: "));
        for (file, why) in
            [(dir.path().join("missing"), "No such file"), (empty, "is empty"), (text, "is not a keytab")]
        {
            let e = err(format!("keytab = {file:?}"));
            assert!(e.starts_with("kerberos.keytab: ") && e.contains(why), "{e}");
            let e = err(format!("client_principal = 'p'\nclient_keytab = {file:?}"));
            assert!(e.starts_with("kerberos.client_keytab: ") && e.contains(why), "{e}");
        }
        assert!(err("client_principal = 'p'".into()).starts_with("kerberos.client_keytab: needed"));
        assert!(
            err(format!("keytab = {kt:?}\nservice_principal = 'impala'")).starts_with("kerberos.service_principal: ")
        );
        assert!(
            err(format!("keytab = {kt:?}\nservice_principal = 'a b/c'")).starts_with("kerberos.service_principal: ")
        );
        assert!(err(format!("keytab = {kt:?}\nbackend_principal = 'impala/_HOST'"))
            .starts_with("kerberos.backend_principal: "));
        assert!(err(format!("keytab = {kt:?}\nclient_principal = '@R'")).starts_with("kerberos.client_principal: "));
        assert!(err(format!("keytab = {kt:?}\nauth_to_local = ['nonsense']")).starts_with("kerberos.auth_to_local: "));
        assert!(err(format!("keytab = {kt:?}\n[proxy_users]\nhue = ''")).starts_with("kerberos.proxy_users.hue: "));
        assert!(err(format!("keytab = {kt:?}\ndelegation = 'knox'")).contains("unknown variant"));
        assert!(err(format!("keytab = {kt:?}\nkeytabs = 'x'")).contains("unknown field"));
    }
}
