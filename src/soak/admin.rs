//! The proxy's admin API as the soak reads it: the JSON views (typed with the API's own structs) and
//! `/metrics`, each request bounded.

use std::net::SocketAddr;
use std::time::Duration;

use super::SoakError;
use crate::admin::api::{BackendsJson, SessionsJson, StatusJson};

const REQUEST_WITHIN: Duration = Duration::from_secs(10);

async fn call(admin: SocketAddr, method: &str, path: &str) -> Result<String, SoakError> {
    let addr = admin.to_string();
    match tokio::time::timeout(REQUEST_WITHIN, crate::cli_admin::http(&addr, method, path, None)).await {
        Ok(Ok((200, body))) => Ok(body),
        Ok(Ok((status, body))) => Err(SoakError::Failed(format!("{method} {path}: {status} {body}"))),
        Ok(Err(e)) => Err(SoakError::Unavailable(format!("{method} {path}: {e}"))),
        Err(_) => Err(SoakError::Unavailable(format!("{method} {path}: no answer within {REQUEST_WITHIN:?}"))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, body: &str) -> Result<T, SoakError> {
    serde_json::from_str(body).map_err(|e| SoakError::Failed(format!("GET {path}: {e}")))
}

pub async fn status(admin: SocketAddr) -> Result<StatusJson, SoakError> {
    parse("/api/status", &call(admin, "GET", "/api/status").await?)
}

pub async fn backends(admin: SocketAddr) -> Result<BackendsJson, SoakError> {
    parse("/api/backends", &call(admin, "GET", "/api/backends").await?)
}

pub async fn sessions(admin: SocketAddr) -> Result<SessionsJson, SoakError> {
    parse("/api/sessions", &call(admin, "GET", "/api/sessions").await?)
}

pub async fn metrics(admin: SocketAddr) -> Result<String, SoakError> {
    call(admin, "GET", "/metrics").await
}

/// `drain`, `undrain` or `maintenance` of the backend at `addr`.
pub async fn backend_action(admin: SocketAddr, addr: &str, action: &str) -> Result<(), SoakError> {
    call(admin, "POST", &format!("/api/backends/{addr}/{action}")).await.map(drop)
}
