//! Checking who a client is. A SASL PLAIN or HTTP Basic client's password is checked by authenticating
//! upstream with it, so that LDAP still checks the password at the impalad; the connection opened for
//! the check stays pooled for the user's calls.

use crate::backend::pool::{Credentials, PoolError};
use crate::config::BackendTransport;
use crate::proxy::Proxy;

/// `Err` holds the text the client is shown.
pub async fn check_password(proxy: &Proxy, creds: &Credentials) -> Result<(), String> {
    if proxy.config().backend_auth.transport == BackendTransport::Nosasl {
        // The backends authenticate nobody; the name still owns the user's sessions.
        return Ok(());
    }
    let mut last = String::from("no backend is available");
    for backend in proxy.preference() {
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
