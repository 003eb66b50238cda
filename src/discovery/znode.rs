//! What hs2-proxy writes into ZooKeeper, in HiveServer2's own format, so that Hive JDBC's
//! `serviceDiscoveryMode=zooKeeper` finds it. No I/O.
//!
//! HiveServer2 registers an ephemeral sequential znode `/<namespace>/serverUri=host:port;version=V;sequence=`
//! (ZooKeeper appends ten digits) whose data is `key=value;key=value`. Hive JDBC
//! (`ZooKeeperHiveClientHelper`) picks a child at random and reads only the data, with the pattern
//! `([^=;]*)=([^;]*);?`, so no value may hold `;` or `=`. The keys it reads:
//!
//! | key | JDBC effect |
//! |---|---|
//! | `hive.server2.thrift.bind.host` | host to connect to |
//! | `hive.server2.thrift.port` | port (always applied) |
//! | `hive.server2.thrift.http.port` | port, only when none is set yet |
//! | `hive.server2.transport.mode` | `binary` or `http`, unless the URL sets `transportMode` |
//! | `hive.server2.thrift.http.path` | unless the URL sets `httpPath` |
//! | `hive.server2.thrift.sasl.qop` | unless the URL sets `saslQop` |
//! | `hive.server2.use.SSL` | unless the URL sets `ssl` |
//! | `hive.server2.authentication` | only `NOSASL` matters (then no SASL); NONE/LDAP/KERBEROS = SASL |
//! | `hive.server2.authentication.kerberos.principal` | GSSAPI with this principal, unless the URL sets one |
//!
//! We publish what HiveServer2 publishes, plus `thrift.port` in HTTP mode too: hs2-proxy serves HTTP on
//! its binary port as well, and `thrift.port` is the one key JDBC always applies.

use std::fmt::Write;

/// The version in the znode name (`version=`), as Hive's `--deregister <version>` tooling matches it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How clients reach the advertised port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdvertTransport {
    /// Thrift over TCP (SASL or NOSASL).
    Binary,
    /// Thrift over HTTP POSTs to `path` (Hive's `cliservice`; impalad accepts any path).
    Http { path: String },
}

/// What the advertised port expects, as `hive.server2.authentication` says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdvertAuth {
    /// No SASL at all.
    NoSasl,
    /// SASL PLAIN with any user and password (HiveServer2's default).
    None,
    /// SASL PLAIN, password checked.
    Ldap,
    /// SASL GSSAPI with this service principal (`impala/<fqdn>@REALM`).
    Kerberos { principal: String },
}

impl AdvertAuth {
    fn name(&self) -> &'static str {
        match self {
            AdvertAuth::NoSasl => "NOSASL",
            AdvertAuth::None => "NONE",
            AdvertAuth::Ldap => "LDAP",
            AdvertAuth::Kerberos { .. } => "KERBEROS",
        }
    }
}

/// One instance's entry: what a client needs to connect to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub host: String,
    pub port: u16,
    pub transport: AdvertTransport,
    pub auth: AdvertAuth,
    /// TLS on the advertised port.
    pub tls: bool,
}

/// A value that would break the `k=v;k=v` data or the znode name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot advertise {what} {value:?}: it holds ';', '=', '/', a space or a control character")]
pub struct AdvertError {
    pub what: &'static str,
    pub value: String,
}

impl Advert {
    /// A binary-transport advert without TLS.
    pub fn binary(host: impl Into<String>, port: u16, auth: AdvertAuth) -> Advert {
        Advert { host: host.into(), port, transport: AdvertTransport::Binary, auth, tls: false }
    }

    /// Rejects values that do not fit the format (the registrar checks this before it starts).
    pub fn check(&self) -> Result<(), AdvertError> {
        let fits =
            |v: &str| !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control() || ";=/".contains(c));
        let fail = |what, value: &str| Err(AdvertError { what, value: value.to_string() });
        if !fits(&self.host) {
            return fail("host", &self.host);
        }
        if let AdvertTransport::Http { path } = &self.transport {
            // a path is made of '/': only the data carries it, never the name
            if path.chars().any(|c| c.is_whitespace() || c.is_control() || ";=".contains(c)) {
                return fail("http path", path);
            }
        }
        if let AdvertAuth::Kerberos { principal } = &self.auth {
            // `impala/host@REALM` holds a '/', which is fine in the data
            if principal.is_empty()
                || principal.chars().any(|c| c.is_whitespace() || c.is_control() || ";=".contains(c))
            {
                return fail("kerberos principal", principal);
            }
        }
        Ok(())
    }

    /// `serverUri=host:port;version=V;sequence=`: the znode name before ZooKeeper's sequence number.
    pub fn name_prefix(&self) -> String {
        format!("serverUri={}:{};version={VERSION};sequence=", self.host, self.port)
    }

    /// `host:port`, as shown in logs and the admin view.
    pub fn uri(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The znode data.
    pub fn data(&self) -> String {
        let mut d = format!("hive.server2.thrift.bind.host={};hive.server2.thrift.port={}", self.host, self.port);
        match &self.transport {
            AdvertTransport::Binary => {
                d.push_str(";hive.server2.transport.mode=binary;hive.server2.thrift.sasl.qop=auth");
            }
            AdvertTransport::Http { path } => {
                let path = path.trim_start_matches('/');
                let _ = write!(
                    d,
                    ";hive.server2.transport.mode=http;hive.server2.thrift.http.port={};hive.server2.thrift.http.path={path}",
                    self.port
                );
            }
        }
        let _ = write!(d, ";hive.server2.authentication={}", self.auth.name());
        if let AdvertAuth::Kerberos { principal } = &self.auth {
            let _ = write!(d, ";hive.server2.authentication.kerberos.principal={principal}");
        }
        let _ = write!(d, ";hive.server2.use.SSL={}", self.tls);
        d
    }
}

/// Whether `child` (a name under the namespace) is an entry with this `prefix` and a sequence number.
pub fn is_entry_of(child: &str, prefix: &str) -> bool {
    child.strip_prefix(prefix).is_some_and(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hive JDBC's reading of the data: `([^=;]*)=([^;]*);?`, applied repeatedly.
    fn as_jdbc_reads(data: &str) -> Vec<(String, String)> {
        data.split(';')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    #[test]
    fn the_binary_entry_matches_hiveserver2s_format() {
        let a = Advert::binary("proxy1.example.com", 21050, AdvertAuth::None);
        assert_eq!(a.check(), Ok(()));
        assert_eq!(a.name_prefix(), format!("serverUri=proxy1.example.com:21050;version={VERSION};sequence="));
        assert_eq!(
            a.data(),
            "hive.server2.thrift.bind.host=proxy1.example.com;hive.server2.thrift.port=21050;\
             hive.server2.transport.mode=binary;hive.server2.thrift.sasl.qop=auth;\
             hive.server2.authentication=NONE;hive.server2.use.SSL=false"
        );
        let kv = as_jdbc_reads(&a.data());
        assert_eq!(kv.len(), 6, "every pair survives JDBC's pattern: {kv:?}");
    }

    #[test]
    fn kerberos_http_and_tls_add_their_keys() {
        let a = Advert {
            host: "p1".into(),
            port: 28000,
            transport: AdvertTransport::Http { path: "/cliservice".into() },
            auth: AdvertAuth::Kerberos { principal: "impala/lb.example.com@EXAMPLE.COM".into() },
            tls: true,
        };
        assert_eq!(a.check(), Ok(()));
        let kv = as_jdbc_reads(&a.data());
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("hive.server2.transport.mode"), Some("http"));
        assert_eq!(get("hive.server2.thrift.http.port"), Some("28000"));
        assert_eq!(get("hive.server2.thrift.port"), Some("28000"));
        assert_eq!(get("hive.server2.thrift.http.path"), Some("cliservice"));
        assert_eq!(get("hive.server2.authentication"), Some("KERBEROS"));
        assert_eq!(get("hive.server2.authentication.kerberos.principal"), Some("impala/lb.example.com@EXAMPLE.COM"));
        assert_eq!(get("hive.server2.use.SSL"), Some("true"));
        assert_eq!(get("hive.server2.thrift.sasl.qop"), None);
    }

    #[test]
    fn values_that_break_the_format_are_refused() {
        let mut a = Advert::binary("a;b", 1, AdvertAuth::NoSasl);
        assert_eq!(a.check().unwrap_err().what, "host");
        a.host = "h".into();
        a.auth = AdvertAuth::Kerberos { principal: "x=y".into() };
        assert_eq!(a.check().unwrap_err().what, "kerberos principal");
        a.auth = AdvertAuth::Ldap;
        a.transport = AdvertTransport::Http { path: "a b".into() };
        assert_eq!(a.check().unwrap_err().what, "http path");
    }

    #[test]
    fn entries_are_recognised_by_prefix_and_sequence() {
        let p = Advert::binary("h", 1, AdvertAuth::None).name_prefix();
        assert!(is_entry_of(&format!("{p}0000000007"), &p));
        assert!(!is_entry_of(&p, &p));
        assert!(!is_entry_of(&format!("{p}00x"), &p));
        assert!(!is_entry_of("serverUri=h:10;version=0.1.0;sequence=0000000001", &p));
    }
}
