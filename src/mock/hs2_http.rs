//! The mock's hs2-http port, shaped like impalad's (28000): each POST body is one Thrift call, answered by
//! the same call handling as the binary port (`server::respond`) under the user this request
//! authenticated as. Started with [`super::MockImpalad::start_http`].
//!
//! Authentication follows impalad's `THttpServer::headersDone` (`be/src/transport/THttpServer.cpp`) and
//! its callbacks in `be/src/rpc/authentication.cc`, and every request authenticates anew:
//! - Without LDAP and Kerberos (`MockAuth::NoSasl`, impalad's `NoAuthProvider`) nothing is checked, not
//!   even the trusted header: the connected user is OpenSession's `username`.
//! - Otherwise, in impalad's order: a valid `impala.auth` cookie gives the user it was issued to (an
//!   invalid one is deleted with `Set-Cookie` and the request goes on); then, with
//!   `--trusted_auth_header` set and that header present (any value, even empty, any case) beside a
//!   non-empty `Authorization`, the user of `Basic base64(user:password)`, password ignored
//!   (`HandleTrustedAuthHeader`); then Basic checked like LDAP (`MockAuth::Plain`'s users); else 401.
//!   Once a request of a connection carried the trusted header, it counts for every later request of that
//!   connection too: impalad's `THttpServer` never resets `found_trusted_auth_header_`.
//!   (The mock's HTTP port takes no SPNEGO: a Kerberos mock answers 401 `Negotiate` instead.)
//! - A trusted-header or Basic success answers with a new `impala.auth` cookie, which later requests
//!   may bring alone.
//! - An empty Basic user counts as no user, as in impalad, which then takes OpenSession's `username`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{lock, server, Inner, MockAuth};
use crate::frontend::cookie::{CookieCheck, CookieSigner};
use crate::thrift::Limits;

/// impalad's `--max_cookie_lifetime_s` default.
const COOKIE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Logins kept for [`super::MockImpalad::http_logins`]; older ones are dropped.
const MAX_LOGINS: usize = 10_000;

/// How one request was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVia {
    /// No authentication configured (`MockAuth::NoSasl`).
    Open,
    /// The mock's own `impala.auth` cookie.
    Cookie,
    /// `--trusted_auth_header`: the Basic user, unchecked.
    TrustedHeader,
    /// Basic, checked like LDAP.
    Basic,
}

/// One authenticated request: which HTTP connection (numbered from 1), how, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLogin {
    pub connection: u64,
    pub via: HttpVia,
    pub user: Option<String>,
}

/// The HTTP port's state: the cookie key and what logged in.
pub(super) struct HttpState {
    signer: CookieSigner,
    logins: std::sync::Mutex<VecDeque<HttpLogin>>,
    connections: AtomicU64,
}

impl Default for HttpState {
    fn default() -> HttpState {
        HttpState {
            signer: CookieSigner::new("impala.auth", COOKIE_LIFETIME, None),
            logins: Default::default(),
            connections: AtomicU64::new(0),
        }
    }
}

impl HttpState {
    pub(super) fn logins(&self) -> Vec<HttpLogin> {
        lock(&self.logins).iter().cloned().collect()
    }
}

/// Serves until `stop` turns true; `trusted`: impalad's `--trusted_auth_header`.
pub(super) async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    trusted: Option<HeaderName>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let id = inner.http.connections.fetch_add(1, Ordering::Relaxed) + 1;
                let mut dropped = inner.drop_generation.subscribe();
                let (inner, trusted) = (inner.clone(), trusted.clone());
                let seen = Arc::new(AtomicBool::new(false));
                let service = hyper::service::service_fn(move |req| {
                    let (inner, trusted, seen) = (inner.clone(), trusted.clone(), seen.clone());
                    let conn = Conn { id, trusted_header_seen: seen };
                    async move { call(&inner, trusted.as_ref(), &conn, req).await }
                });
                tasks.spawn(async move {
                    let serving = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = serving => {}
                        _ = dropped.changed() => {}
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tasks.shutdown().await;
}

type Reply = Response<Full<Bytes>>;

/// One hs2-http connection: its number, and whether a request of it carried the trusted header yet.
struct Conn {
    id: u64,
    trusted_header_seen: Arc<AtomicBool>,
}

/// One POST. `Err` closes the connection, as impalad's Thrift server does after a request that is not
/// a call.
async fn call(
    inner: &Inner,
    trusted: Option<&HeaderName>,
    conn: &Conn,
    req: Request<Incoming>,
) -> Result<Reply, std::io::Error> {
    if req.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "POST one Thrift message"));
    }
    if trusted.is_some_and(|name| req.headers().contains_key(name)) {
        conn.trusted_header_seen.store(true, Ordering::Relaxed);
    }
    let login = match authenticate(
        inner,
        trusted.filter(|_| conn.trusted_header_seen.load(Ordering::Relaxed)),
        req.headers(),
    ) {
        Ok(login) => login,
        Err(refused) => return Ok(refused),
    };
    let user = login.user.clone();
    let entry = HttpLogin { connection: conn.id, via: login.via, user: user.clone() };
    {
        let mut logins = lock(&inner.http.logins);
        if logins.len() == MAX_LOGINS {
            logins.pop_front();
        }
        logins.push_back(entry);
    }
    let max = usize::try_from(Limits::REQUEST.max_message_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(req.into_body(), max).collect().await.map_err(std::io::Error::other)?.to_bytes();
    let (bytes, keep_open) = server::respond(inner, user.as_deref(), &body)
        .await
        .ok_or_else(|| std::io::Error::other("the body is not a call"))?;
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/x-thrift"));
    if let Some(cookie) = login.set_cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    if !keep_open {
        // crash(): half a reply, then the connection goes.
        response.headers_mut().insert(CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(response)
}

struct Login {
    via: HttpVia,
    user: Option<String>,
    set_cookie: Option<String>,
}

/// impalad's order: cookie, trusted header, then Basic (LDAP) or 401. `trusted`: set when the connection
/// has carried the trusted header (in this request or an earlier one).
#[allow(clippy::result_large_err)]
fn authenticate(inner: &Inner, trusted: Option<&HeaderName>, headers: &HeaderMap) -> Result<Login, Reply> {
    let users = match &inner.cfg.auth {
        MockAuth::NoSasl => return Ok(Login { via: HttpVia::Open, user: None, set_cookie: None }),
        MockAuth::Plain { users } => Some(users.as_deref()),
        MockAuth::Gssapi { .. } => None,
    };
    let state = &inner.http;
    let cookies = headers.get_all(COOKIE).iter().map(|v| v.as_bytes());
    let bad_cookie = match state.signer.check(cookies, SystemTime::now()) {
        CookieCheck::Valid(user) => return Ok(Login { via: HttpVia::Cookie, user: non_empty(user), set_cookie: None }),
        CookieCheck::Invalid(_) => true,
        CookieCheck::Absent => false,
    };
    let authorization =
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let issue = |via, user: String| {
        let set_cookie = Some(state.signer.issue(&user, SystemTime::now(), false));
        Ok(Login { via, user: non_empty(user), set_cookie })
    };
    if let (Some(_), Some(value)) = (trusted, authorization) {
        if let Some((user, _ignored_password)) = basic(value) {
            return issue(HttpVia::TrustedHeader, user);
        }
    }
    let mut refused = text(StatusCode::UNAUTHORIZED, "HTTP auth failed.");
    if bad_cookie {
        refused.headers_mut().append(SET_COOKIE, http::HeaderValue::from_static("impala.auth=; HttpOnly; Max-Age=0"));
    }
    match users {
        // Kerberos only: Negotiate, which the mock's HTTP port does not take.
        None => {
            refused.headers_mut().insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Negotiate"));
            Err(refused)
        }
        Some(list) => match authorization.and_then(basic) {
            Some((user, password)) if list.is_none_or(|l| l.iter().any(|(u, p)| *u == user && *p == password)) => {
                issue(HttpVia::Basic, user)
            }
            _ => {
                refused.headers_mut().insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic"));
                Err(refused)
            }
        },
    }
}

/// `Basic base64(user:password)` as impalad's `BasicAuthExtractCredentials` reads it: the scheme as
/// written, a colon required, the user may be empty.
fn basic(value: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn non_empty(user: String) -> Option<String> {
    Some(user).filter(|u| !u.is_empty())
}

fn text(status: StatusCode, body: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_read_as_impalad_reads_it() {
        let header = crate::http::basic_authorization("alice", "");
        assert_eq!(basic(&header), Some(("alice".into(), String::new())));
        assert_eq!(basic(&crate::http::basic_authorization("", "x")), Some((String::new(), "x".into())));
        assert_eq!(basic(&format!("Basic {}", STANDARD.encode("nocolon"))), None);
        assert_eq!(basic(&header.replace("Basic", "basic")), None, "the scheme is matched as written");
        assert_eq!(basic("Negotiate abc"), None);
    }
}
