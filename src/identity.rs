//! Who a client's calls run as upstream, from how the client authenticated and how the proxy
//! authenticates to the backends (`backend_auth.transport`, `backend_auth.delegate`). No I/O.
//!
//! | backends | password client (SASL PLAIN, HTTP Basic) | Kerberos client (GSSAPI, Negotiate) | unauthenticated |
//! |---|---|---|---|
//! | `nosasl` | its name, password unchecked | its short name | the service user |
//! | `sasl` | its own credentials (LDAP checks them upstream) | the service account, delegating it | the service user |
//! | `sasl` + `delegate` | checked with its own credentials, then the service account, delegating it | the service account, delegating it | the service user |
//! | `gssapi` | refused (the proxy cannot check a password) | the proxy's principal, delegating it | refused |
//! | `sasl` + `trusted_header` | refused (impalad checks no password) | its short name, asserted (`Basic <user>:`) | refused |
//!
//! Delegating means OpenSession carries the delegation key (`impala.doas.user`, or
//! `hive.server2.proxy.user` for Hive/Spark) naming the user, which the backend authorises for the
//! proxy's identity (`--authorized_proxy_user_config`, `hadoop.proxyuser.*`). Every upstream connection
//! then carries the proxy's identity, so the pool needs no connection per user.
//!
//! With `trusted_header` (Impala's trusted hop, `config::trusted`) the backend takes the user the proxy
//! names as the connected user, so nothing is delegated unless the client asks (Hue's
//! `impala.doas.user`), which is then checked here first, as with Kerberos upstream, and again by impalad
//! (`--authorized_proxy_user_config` for the client's own name). Connections are pooled per user.

use std::fmt;
use std::net::SocketAddr;

use crate::config::{BackendAuthConfig, BackendTransport};

/// Who a connection authenticates as.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

/// How a client proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientProof {
    /// Nothing (NOSASL, HTTP without credentials).
    None,
    /// A name and password (SASL PLAIN, HTTP Basic), already checked where the backends check them.
    Password(Credentials),
    /// A Kerberos principal, mapped to its short name; or the proxy's own cookie for a user whose
    /// password the proxy does not hold.
    Verified(String),
}

/// What the client's calls authenticate upstream with, and on whose behalf sessions run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// What the pool checks out with.
    pub creds: Credentials,
    /// Set when the connection is the proxy's own: OpenSession must name this user for the backend.
    pub delegate_as: Option<String>,
    /// The backend takes the client's own name as the proxy asserts it (the trusted hop): a delegation
    /// the client asks for itself must pass `[kerberos.proxy_users]` before it goes on.
    pub asserted: bool,
}

/// Who makes a call.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The identity the client authenticated as; it owns the sessions it opens. `None` when the client
    /// did not authenticate.
    pub identity: Option<String>,
    /// What the call authenticates with upstream.
    pub creds: Credentials,
    /// Set when the upstream connection is the proxy's own identity: OpenSession delegates this user
    /// (see this module's table).
    pub delegate_as: Option<String>,
    /// See [`Upstream::asserted`].
    pub asserted: bool,
    pub peer: SocketAddr,
    /// The listener the connection arrived on (as bound), for placement rules.
    pub listener: Option<SocketAddr>,
    /// `X-Forwarded-For` for HTTP backends: what the client's own request said, then its address.
    pub forwarded_for: String,
}

impl Caller {
    pub fn new(identity: Option<String>, upstream: Upstream, peer: SocketAddr) -> Caller {
        let Upstream { creds, delegate_as, asserted } = upstream;
        Caller { identity, creds, delegate_as, asserted, peer, listener: None, forwarded_for: peer.ip().to_string() }
    }
}

/// The identity of every connection when the proxy authenticates as itself with Kerberos (the pool keys
/// all of them alike; the password is never used).
pub fn proxy_credentials(client_principal: &str) -> Credentials {
    Credentials { user: client_principal.to_string(), password: String::new() }
}

/// Decides [`Upstream`] for a client; `Err` holds why the client cannot be served (shown to it).
pub fn upstream_for(auth: &BackendAuthConfig, proxy: &Credentials, proof: ClientProof) -> Result<Upstream, String> {
    if auth.trusted_header.is_some() {
        return asserted(proof);
    }
    let service = || Credentials { user: auth.service.user.clone(), password: auth.service.password.clone() };
    let own = |creds| Ok(Upstream { creds, delegate_as: None, asserted: false });
    let delegated = |creds, user: String| Ok(Upstream { creds, delegate_as: Some(user), asserted: false });
    match (auth.transport, proof) {
        (BackendTransport::Nosasl, ClientProof::Password(c)) => own(c),
        (BackendTransport::Nosasl, ClientProof::Verified(user)) => own(Credentials { user, password: String::new() }),
        (BackendTransport::Nosasl | BackendTransport::Sasl, ClientProof::None) => own(service()),
        (BackendTransport::Sasl, ClientProof::Password(c)) if !auth.delegate => own(c),
        (BackendTransport::Sasl, ClientProof::Password(c)) => delegated(service(), c.user),
        (BackendTransport::Sasl, ClientProof::Verified(user)) => delegated(service(), user),
        (BackendTransport::Gssapi, ClientProof::Verified(user)) => delegated(proxy.clone(), user),
        (BackendTransport::Gssapi, ClientProof::Password(_)) => {
            Err("hs2-proxy authenticates to the backends with Kerberos and cannot check passwords: \
             authenticate with Kerberos (SASL GSSAPI, or HTTP Negotiate)"
                .into())
        }
        (BackendTransport::Gssapi, ClientProof::None) => {
            Err("hs2-proxy authenticates to the backends with Kerberos: clients must authenticate \
             (SASL GSSAPI, or HTTP Negotiate)"
                .into())
        }
    }
}

/// The trusted hop: only users the proxy authenticated itself, each asserted with an empty password
/// (impalad ignores the password; `Basic <user>:` is its documented form).
fn asserted(proof: ClientProof) -> Result<Upstream, String> {
    match proof {
        ClientProof::Verified(user) => {
            Ok(Upstream { creds: Credentials { user, password: String::new() }, delegate_as: None, asserted: true })
        }
        ClientProof::Password(_) => Err(format!(
            "hs2-proxy names each user to the backends itself ({TRUSTED_KEY}) and cannot check passwords: \
             authenticate with Kerberos (SASL GSSAPI, or HTTP Negotiate)"
        )),
        ClientProof::None => Err(format!(
            "hs2-proxy names each user to the backends itself ({TRUSTED_KEY}): clients must authenticate \
             (SASL GSSAPI, or HTTP Negotiate)"
        )),
    }
}

const TRUSTED_KEY: &str = crate::config::trusted::KEY;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceCredentials;

    fn auth(transport: BackendTransport, delegate: bool) -> BackendAuthConfig {
        let service = ServiceCredentials { user: "svc".into(), password: "s".into() };
        BackendAuthConfig { transport, service, delegate, trusted_header: None }
    }

    fn alice() -> Credentials {
        Credentials { user: "alice".into(), password: "pw".into() }
    }

    #[test]
    fn the_table_holds() {
        let proxy = proxy_credentials("hs2proxy@EXAMPLE.TEST");
        let go = |t, d, p| upstream_for(&auth(t, d), &proxy, p);
        use BackendTransport::*;
        assert_eq!(go(Nosasl, false, ClientProof::Password(alice())).unwrap().creds, alice());
        assert_eq!(
            go(Sasl, false, ClientProof::Password(alice())).unwrap(),
            Upstream { creds: alice(), delegate_as: None, asserted: false }
        );
        let via_service = go(Sasl, true, ClientProof::Password(alice())).unwrap();
        assert_eq!((via_service.creds.user.as_str(), via_service.delegate_as.as_deref()), ("svc", Some("alice")));
        let kerberos = go(Sasl, false, ClientProof::Verified("bob".into())).unwrap();
        assert_eq!((kerberos.creds.user.as_str(), kerberos.delegate_as.as_deref()), ("svc", Some("bob")));
        let kerberos = go(Gssapi, false, ClientProof::Verified("bob".into())).unwrap();
        assert_eq!((kerberos.creds, kerberos.delegate_as.as_deref()), (proxy.clone(), Some("bob")));
        assert!(go(Gssapi, false, ClientProof::Password(alice())).unwrap_err().contains("cannot check passwords"));
        assert!(go(Gssapi, false, ClientProof::None).is_err());
        assert_eq!(go(Sasl, false, ClientProof::None).unwrap().creds.user, "svc");
    }

    #[test]
    fn the_trusted_hop_asserts_only_users_the_proxy_authenticated() {
        let proxy = proxy_credentials("svc");
        let trusted = BackendAuthConfig {
            trusted_header: Some("x-trusted".parse().unwrap()),
            ..auth(BackendTransport::Sasl, false)
        };
        let go = |p| upstream_for(&trusted, &proxy, p);
        let bob = go(ClientProof::Verified("bob".into())).unwrap();
        let expected = Credentials { user: "bob".into(), password: String::new() };
        assert_eq!(bob, Upstream { creds: expected, delegate_as: None, asserted: true });
        let refused = go(ClientProof::Password(alice())).unwrap_err();
        assert!(refused.contains("cannot check passwords") && refused.contains(TRUSTED_KEY), "{refused}");
        let refused = go(ClientProof::None).unwrap_err();
        assert!(refused.contains("clients must authenticate") && refused.contains(TRUSTED_KEY), "{refused}");
    }
}
