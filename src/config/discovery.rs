//! The `[discovery]` section: where hs2-proxy registers itself for Hive JDBC's ZooKeeper discovery.
//!
//! ```toml
//! [discovery]
//! zookeeper = "zk1:2181,zk2:2181"   # ZooKeeper connect string (an optional "/chroot" may follow)
//! namespace = "hs2-proxy"           # default; beeline's zooKeeperNamespace
//! advertise = "proxy1.example.com:21050"  # default: the listen address (see below)
//! session_timeout = "15s"           # default
//! ```
//!
//! Discovery is off unless `zookeeper` is set. `advertise` is what clients are told to connect to:
//! `host:port`, or just `host` to keep the listener's port. Without it the listen address is advertised,
//! except that an unspecified listen host (`0.0.0.0`, `[::]`) is replaced by this machine's hostname
//! (the kernel's, as `hostname` prints it; set `advertise` when clients need the FQDN, e.g. for
//! Kerberos). An unspecified address is never advertised: no client can connect to it.
//!
//! Only the hostname is read here (once, at load); nothing else touches the network.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::{bad, ConfigError};

/// Default ZooKeeper namespace: the parent znode of every instance's znode.
pub const DEFAULT_NAMESPACE: &str = "hs2-proxy";

/// Default session timeout. A killed instance stays listed for this long (clients that pick it fail
/// over to another at connect time); shorter risks expiry on a slow network. ZooKeeper clamps it to
/// its own `[2, 20] x tickTime` (4-40 s by default).
pub const DEFAULT_SESSION_TIMEOUT: &str = "15s";

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileDiscovery {
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`. Unset: discovery is off.
    pub zookeeper: Option<String>,
    /// Parent znode under the root (or chroot). Default `hs2-proxy`.
    pub namespace: Option<String>,
    /// `host:port` or `host` that clients are told to connect to. Default: the listen address.
    pub advertise: Option<String>,
    /// ZooKeeper session timeout. Default 15 s.
    pub session_timeout: Option<String>,
}

/// The validated section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The connect string as written (validated: non-empty `host:port` entries, optional `/chroot`).
    pub zookeeper: String,
    /// One znode name: no `/`.
    pub namespace: String,
    /// The advertised host: never an unspecified address.
    pub advertise_host: String,
    /// The advertised port; `None` means the listener's bound port (known after bind, so port 0 works).
    pub advertise_port: Option<u16>,
    pub session_timeout: Duration,
}

impl DiscoveryConfig {
    /// The `host:port` to advertise for the listener bound at `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> (String, u16) {
        (self.advertise_host.clone(), self.advertise_port.unwrap_or(bound.port()))
    }
}

/// `None` when discovery is off (`zookeeper` unset). `listen` is the validated listen address.
pub fn validate_discovery(d: FileDiscovery, listen: SocketAddr) -> Result<Option<DiscoveryConfig>, ConfigError> {
    let Some(zookeeper) = d.zookeeper else {
        if d.namespace.is_some() || d.advertise.is_some() || d.session_timeout.is_some() {
            return Err(bad("discovery.zookeeper", "must be set when other [discovery] keys are"));
        }
        return Ok(None);
    };
    let zookeeper = validate_connect_string(&zookeeper)?;
    let namespace = d.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    validate_namespace(&namespace)?;
    let (advertise_host, advertise_port) = match d.advertise {
        Some(text) => parse_advertise(&text)?,
        None => (default_host(listen.ip(), machine_hostname)?, None),
    };
    let session_timeout = super::durations::ZOOKEEPER_SESSION.read(d.session_timeout)?;
    Ok(Some(DiscoveryConfig { zookeeper, namespace, advertise_host, advertise_port, session_timeout }))
}

fn validate_connect_string(text: &str) -> Result<String, ConfigError> {
    let key = "discovery.zookeeper";
    let text = text.trim();
    let (hosts, chroot) = match text.find('/') {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    if hosts.is_empty() {
        return Err(bad(key, "is empty: give host:port[,host:port...]"));
    }
    for entry in hosts.split(',') {
        let ok = match entry.trim().rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
            None => false,
        };
        if !ok {
            return Err(bad(key, format!("{entry:?} is not host:port (in {text:?})")));
        }
    }
    if chroot == "/" || chroot.ends_with('/') || chroot.contains("//") {
        return Err(bad(key, format!("chroot {chroot:?} must be /name[/name...] without a trailing /")));
    }
    Ok(text.to_string())
}

fn validate_namespace(ns: &str) -> Result<(), ConfigError> {
    let key = "discovery.namespace";
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." || ns == "zookeeper" {
        return Err(bad(key, format!("{ns:?} must be one znode name: not empty, no '/', not . .. or zookeeper")));
    }
    if ns.chars().any(|c| c.is_control() || c == ';' || c == '=') {
        return Err(bad(key, format!("{ns:?} must not hold control characters, ';' or '='")));
    }
    Ok(())
}

/// `host:port`, `host`, `[v6]:port` or `[v6]`.
fn parse_advertise(text: &str) -> Result<(String, Option<u16>), ConfigError> {
    let key = "discovery.advertise";
    let t = text.trim();
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad(key, format!("{t:?}: unclosed '['")))?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad(key, format!("{t:?} is not [host]:port")))?)),
        }
    } else if t.matches(':').count() > 1 {
        (t, None) // a bare IPv6 address
    } else {
        match t.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (t, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(key, format!("{t:?}: bad port")))?),
    };
    validate_host(key, host)?;
    if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(bad(key, format!("{t:?}: an unspecified address cannot be connected to; give a hostname")));
    }
    Ok((host.to_string(), port))
}

/// A host that fits in HiveServer2's `k=v;k=v` data and in a znode name.
fn validate_host(key: &str, host: &str) -> Result<(), ConfigError> {
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || matches!(c, ';' | '=' | '/' | '[' | ']');
    if host.is_empty() || host.chars().any(bad_char) {
        return Err(bad(key, format!("{host:?} is not a hostname or IP address")));
    }
    Ok(())
}

/// The listen host, or the machine's hostname when it listens on every address.
fn default_host(ip: IpAddr, hostname: impl FnOnce() -> Option<String>) -> Result<String, ConfigError> {
    if !ip.is_unspecified() {
        return Ok(ip.to_string());
    }
    let key = "discovery.advertise";
    let name = hostname().ok_or_else(|| {
        bad(key, format!("listen is {ip}, which cannot be advertised, and this machine's hostname is unknown: set it"))
    })?;
    validate_host(key, &name)?;
    Ok(name)
}

/// The kernel's hostname (what `hostname` prints). Linux only, like the rest of the proxy.
fn machine_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = text.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn file(zk: &str) -> FileDiscovery {
        FileDiscovery { zookeeper: Some(zk.into()), ..Default::default() }
    }

    #[test]
    fn off_unless_zookeeper_is_set() {
        assert_eq!(validate_discovery(FileDiscovery::default(), listen("127.0.0.1:1")).unwrap(), None);
        let orphan = FileDiscovery { namespace: Some("x".into()), ..Default::default() };
        let err = validate_discovery(orphan, listen("127.0.0.1:1")).unwrap_err();
        assert_eq!(err.key, "discovery.zookeeper");
    }

    #[test]
    fn defaults_advertise_the_listen_address_and_its_bound_port() {
        let c = validate_discovery(file("zk1:2181,zk2:2181/hive"), listen("10.1.2.3:0")).unwrap().unwrap();
        assert_eq!(c.zookeeper, "zk1:2181,zk2:2181/hive");
        assert_eq!(c.namespace, DEFAULT_NAMESPACE);
        assert_eq!(c.session_timeout, Duration::from_secs(15));
        assert_eq!(c.advertised(listen("10.1.2.3:21050")), ("10.1.2.3".to_string(), 21050));
    }

    #[test]
    fn an_unspecified_listen_host_advertises_the_hostname() {
        assert_eq!(default_host("0.0.0.0".parse().unwrap(), || Some("proxy1".into())).unwrap(), "proxy1");
        assert_eq!(default_host("::".parse().unwrap(), || Some("proxy1".into())).unwrap(), "proxy1");
        let err = default_host("0.0.0.0".parse().unwrap(), || None).unwrap_err();
        assert_eq!(err.key, "discovery.advertise");
        // the real lookup works on this machine
        let c = validate_discovery(file("zk:2181"), listen("0.0.0.0:21050")).unwrap().unwrap();
        assert!(!c.advertise_host.is_empty() && c.advertise_host != "0.0.0.0", "{c:?}");
    }

    #[test]
    fn advertise_forms() {
        let adv = |s: &str| parse_advertise(s).map_err(|e| e.to_string());
        assert_eq!(adv("proxy1.example.com:21051").unwrap(), ("proxy1.example.com".into(), Some(21051)));
        assert_eq!(adv("proxy1").unwrap(), ("proxy1".into(), None));
        assert_eq!(adv("[::1]:7").unwrap(), ("::1".into(), Some(7)));
        assert_eq!(adv("fd00::1").unwrap(), ("fd00::1".into(), None));
        for bad in ["0.0.0.0:21050", "[::]:1", "::", "h:0", "h:x", "a;b:1", "a=b", "", "[::1", "[::1]x"] {
            let e = adv(bad).unwrap_err();
            assert!(e.starts_with("discovery.advertise: "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let err = |d: FileDiscovery| validate_discovery(d, listen("127.0.0.1:1")).unwrap_err().key;
        for zk in ["", "zk1", "zk1:2181,", "zk1:0", "zk1:2181/", "zk1:2181/a//b", "/chroot"] {
            assert_eq!(err(file(zk)), "discovery.zookeeper", "{zk:?}");
        }
        for ns in ["", "a/b", "..", "zookeeper", "a;b"] {
            assert_eq!(err(FileDiscovery { namespace: Some(ns.into()), ..file("zk:1") }), "discovery.namespace");
        }
        for t in ["0s", "500ms", "11m", "soon"] {
            let d = FileDiscovery { session_timeout: Some(t.into()), ..file("zk:1") };
            assert_eq!(err(d), "discovery.session_timeout", "{t:?}");
        }
    }
}
