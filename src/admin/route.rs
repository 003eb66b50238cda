//! `GET /api/route`: where a new session would go, and why (the routing rules, the limits, the
//! backends' load now), without opening one. `hs2-proxy explain` prints it.
//!
//! Query: `user`, `effective_user` (default: `user`), `address` (the client's IP; default `0.0.0.0`,
//! which no address rule matches), `listener` (`ip:port`), and `conf=key=value` once per OpenSession
//! configuration entry.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::api::json;
use super::Authorized;
use crate::placement;
use crate::proxy::Proxy;
use crate::rules::Who;

/// The question, as `GET /api/route` takes it.
#[derive(Debug, Default)]
struct Question {
    user: Option<String>,
    effective_user: Option<String>,
    address: Option<IpAddr>,
    listener: Option<SocketAddr>,
    config: Vec<(String, String)>,
}

/// Reads the query pairs; `Err` names the parameter that is wrong.
fn question(pairs: Vec<(String, String)>) -> Result<Question, String> {
    let mut q = Question::default();
    for (key, value) in pairs {
        match key.as_str() {
            "user" => q.user = Some(value),
            "effective_user" => q.effective_user = Some(value),
            "address" => q.address = Some(value.parse().map_err(|_| format!("address {value:?} is not an IP"))?),
            "listener" => q.listener = Some(value.parse().map_err(|_| format!("listener {value:?} is not ip:port"))?),
            "conf" => {
                let (k, v) = value.split_once('=').ok_or_else(|| format!("conf {value:?} is not key=value"))?;
                q.config.push((k.to_string(), v.to_string()));
            }
            other => {
                return Err(format!("unknown parameter {other:?} (user, effective_user, address, listener, conf)"))
            }
        }
    }
    Ok(q)
}

pub async fn route(_: Authorized, State(proxy): State<Proxy>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let q = match question(pairs) {
        Ok(q) => q,
        Err(text) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": text })),
    };
    let who = Who {
        user: q.user.as_deref(),
        effective_user: q.effective_user.as_deref().or(q.user.as_deref()),
        address: q.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        listener: q.listener,
        config: &q.config,
    };
    json(StatusCode::OK, &placement::explain(&proxy, &who))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_is_read_and_bad_parameters_are_named() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let q = question(pairs(&[("user", "hue"), ("conf", "request_pool=etl"), ("address", "10.1.2.3")])).unwrap();
        assert_eq!(q.user.as_deref(), Some("hue"));
        assert_eq!(q.config, vec![("request_pool".to_string(), "etl".to_string())]);
        assert_eq!(q.address, Some("10.1.2.3".parse().unwrap()));
        assert!(question(pairs(&[("conf", "novalue")])).unwrap_err().contains("conf"));
        assert!(question(pairs(&[("address", "x")])).unwrap_err().contains("address"));
        assert!(question(pairs(&[("colour", "red")])).unwrap_err().contains("colour"));
    }
}
