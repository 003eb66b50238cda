//! Checking who a client is, and what its calls then run as upstream (`identity`). A SASL PLAIN or HTTP
//! Basic client's password is checked by authenticating upstream with it, so that LDAP still checks the
//! password at the impalad; the connection opened for the check stays pooled for the user's calls. A
//! Kerberos client was checked by its ticket (`sasl`, `kerberos::spnego`); its short name is its identity.

use std::net::SocketAddr;

use crate::backend::pool::{Credentials, PoolError};
use crate::config::BackendTransport;
use crate::dispatch::Caller;
use crate::identity::{self, ClientProof};
use crate::proxy::Proxy;

/// `Err` holds the text the client is shown.
pub async fn check_password(proxy: &Proxy, creds: &Credentials) -> Result<(), String> {
    if proxy.config().backend_auth.trusted_header.is_some() {
        // impalad would take any password with the trusted header: never "check" one there.
        return identity_for(proxy, ClientProof::Password(creds.clone())).map(drop);
    }
    match proxy.config().backend_auth.transport {
        // The backends authenticate nobody; the name still owns the user's sessions.
        BackendTransport::Nosasl => return Ok(()),
        // Only Kerberos clients can be served: say so now, not at the first call.
        BackendTransport::Gssapi => return identity_for(proxy, ClientProof::Password(creds.clone())).map(drop),
        BackendTransport::Sasl => {}
    }
    let mut last = String::from("no backend is available");
    for backend in proxy.preference_now() {
        match backend.pool.checkout(creds).await {
            Ok(up) => {
                up.release();
                return Ok(());
            }
            Err(PoolError::AuthRefused { message, .. }) => return Err(message),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("hs2-proxy could not check the credentials: {last}"))
}

/// The caller for a client that proved `proof`; `Err` when the proxy cannot serve it (the text says why).
pub fn caller(proxy: &Proxy, proof: ClientProof, peer: SocketAddr) -> Result<Caller, String> {
    let identity = match &proof {
        ClientProof::None => None,
        ClientProof::Password(c) => Some(c.user.clone()),
        ClientProof::Verified(user) => Some(user.clone()),
    };
    Ok(Caller::new(identity, identity_for(proxy, proof)?, peer))
}

fn identity_for(proxy: &Proxy, proof: ClientProof) -> Result<identity::Upstream, String> {
    identity::upstream_for(&proxy.config().backend_auth, &proxy.proxy_credentials(), proof)
}
