//! An HS2-over-HTTP client connection: one hyper HTTP/1.1 connection, keep-alive, one call per POST.
//!
//! A request is authenticated (the proxy's cookie, else Basic auth checked like SASL PLAIN, else the
//! service user like a NOSASL client), its body read (bounded by `limits.max_request_bytes`, the shared
//! buffered-bytes budget and `timeouts.request_read` between pieces) and checked to be one whole Thrift
//! message, then handed to `dispatch` exactly like a binary call. The reply is relayed into a bounded
//! channel that is the response body, so it streams out chunked and never sits whole in memory; a reply
//! that cannot be completed aborts the body (and the connection), so a client never takes a truncated
//! reply for a whole one. Upstream HTTP headers and cookies are never copied into responses.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE,
    WWW_AUTHENTICATE,
};
use http::{Method, Request as HttpRequest, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, Notify};

use super::cookie::{CookieCheck, CookieSigner, CredentialCache};
use super::Front;
use crate::backend::pool::Credentials;
use crate::config::{BackendTransport, HttpConfig};
use crate::conn::{Io, ReplySink, Reserved, SinkError};
use crate::dispatch::{self, Attachments, CallEnd, Caller};
use crate::hs2::call::Request;
use crate::hs2::reply;
use crate::identity::ClientProof;
use crate::proxy::Proxy;
use crate::thrift::scanner::Scanner;
use crate::thrift::Limits;

/// Request line plus headers, at most (hyper answers 431 beyond it).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Reply pieces (each up to `conn::READ_CHUNK`) queued for the response body before the relay waits.
const BODY_QUEUE: usize = 4;
/// Longest `X-Forwarded-For` taken from a client; a longer one is replaced by the client's address alone.
const MAX_FORWARDED_FOR: usize = 1024;

/// HTTP state shared by every connection: cookie keys and the credentials cookies stand for.
#[derive(Debug)]
pub struct HttpState {
    pub signer: CookieSigner,
    pub creds: CredentialCache,
}

impl HttpState {
    pub fn new(c: &HttpConfig) -> HttpState {
        let secret = c.cookie_secret.as_ref().map(|s| s.0.as_slice());
        HttpState { signer: CookieSigner::new(&c.cookie_name, c.cookie_max_age, secret), creds: Default::default() }
    }
}

/// What one HTTP connection's calls share.
struct Connection {
    proxy: Proxy,
    front: Arc<Front>,
    peer: SocketAddr,
    listener: Option<SocketAddr>,
    tls: bool,
    attached: Attachments,
    /// Pulled when a reply cannot be completed: the connection is closed at once (a client that stopped
    /// reading would otherwise hold it forever, since hyper writes nothing more to it).
    kill: Notify,
    /// This connection's place under `limits.max_connections_per_user`, for the user its requests
    /// authenticated as (taken at the first; a later request as another user moves it).
    user_place: std::sync::Mutex<Option<(String, crate::limits::Held)>>,
}

impl Connection {
    /// Counts this connection for `user`; `Err` is why it must close.
    fn hold_place_of(&self, user: &str) -> Result<(), String> {
        let mut place = self.user_place.lock().unwrap_or_else(|p| p.into_inner());
        if place.as_ref().is_some_and(|(u, _)| u == user) {
            return Ok(());
        }
        *place = None;
        *place = Some((user.to_string(), self.proxy.enter_connection_of(user)?));
        Ok(())
    }
}

/// Serves one HTTP client connection until it closes.
pub async fn serve(
    proxy: Proxy,
    front: Arc<Front>,
    io: Box<dyn Io>,
    peer: SocketAddr,
    listener: Option<SocketAddr>,
    tls: bool,
) {
    let mut stop = proxy.stop_signal();
    let header_timeout = proxy.config().timeouts.handshake;
    let conn = Arc::new(Connection {
        proxy,
        front,
        peer,
        listener,
        tls,
        attached: Attachments::default(),
        kill: Notify::new(),
        user_place: std::sync::Mutex::new(None),
    });
    let service = {
        let conn = conn.clone();
        service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(handle(conn, req).await) }
        })
    };
    let mut builder = http1::Builder::new();
    // The header timeout also closes keep-alive connections that stay idle that long.
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEAD_BYTES);
    tracing::debug!(client = %peer, tls, "HTTP client connected");
    let serving = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(serving);
    let result = tokio::select! {
        r = serving.as_mut() => r,
        _ = conn.kill.notified() => Ok(()),
        _ = crate::control::stopped(&mut stop) => {
            // Finish the call in progress, then close.
            serving.as_mut().graceful_shutdown();
            tokio::select! {
                r = serving.as_mut() => r,
                _ = conn.kill.notified() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "HTTP client connection ended");
    }
    conn.attached.detach_all(&conn.proxy, peer);
}

async fn handle(conn: Arc<Connection>, req: HttpRequest<Incoming>) -> Response<ReplyBody> {
    let proxy = &conn.proxy;
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "hs2-proxy serves HS2 over HTTP: POST one Thrift message");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if proxy.config().http.path.as_deref().is_some_and(|p| p != req.uri().path()) {
        return text(StatusCode::NOT_FOUND, "hs2-proxy: no HS2 service at this path (see http.path)");
    }
    let Authenticated { caller, set_cookie, www_authenticate } = match caller(&conn, req.headers()).await {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(client = %conn.peer, reason = %why, "HTTP request refused: not authenticated");
            let mut r = text(StatusCode::UNAUTHORIZED, &format!("hs2-proxy: {why}"));
            if conn.front.negotiate.is_some() {
                r.headers_mut().append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
            }
            let auth = &conn.proxy.config().backend_auth;
            if auth.transport != BackendTransport::Gssapi && auth.trusted_header.is_none() {
                r.headers_mut().append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hs2-proxy\""));
            }
            return r;
        }
    };
    if let Some(Err(why)) = caller.identity.as_deref().map(|u| conn.hold_place_of(u)) {
        tracing::warn!(client = %conn.peer, reason = %why, "HTTP client connection closed: too many of its user");
        let mut r = text(StatusCode::TOO_MANY_REQUESTS, &format!("hs2-proxy: {why}"));
        r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let limits = proxy.config().limits.request;
    let (body, reserved) = match read_body(proxy, req, limits).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let request = match one_message(body, limits) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    let (abort_tx, abort_rx) = tokio::sync::oneshot::channel();
    let task_conn = conn.clone();
    tokio::spawn(async move {
        // Calls of one connection arrive one after another (HTTP/1.1): the next one waits for this body.
        let mut sink = BodySink { tx };
        let c = &task_conn;
        let served = dispatch::call(&c.proxy, &caller, &c.attached, request, &mut sink).await;
        drop(reserved);
        if let Err(e) = served {
            if !matches!(e, CallEnd::Client(SinkError::Gone(_))) {
                tracing::info!(client = %c.peer, error = %e, "HTTP reply aborted");
            }
            // Ends the response abnormally: never a truncated reply that looks complete.
            let _ = abort_tx.send(io::Error::other(e.to_string()));
            c.kill.notify_one();
        }
    });
    let mut response = Response::new(ReplyBody::Stream { rx, abort: Some(abort_rx) });
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-thrift"));
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    if let Some(token) = www_authenticate.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, token);
    }
    response
}

/// Reads a request body: bounded in size, in time between pieces, and by the shared budget.
#[allow(clippy::result_large_err)]
async fn read_body(
    proxy: &Proxy,
    req: HttpRequest<Incoming>,
    limits: Limits,
) -> Result<(Bytes, Reserved), Response<ReplyBody>> {
    let too_large = || {
        let why = format!("hs2-proxy: the request is larger than {} bytes", limits.max_message_bytes);
        text(StatusCode::PAYLOAD_TOO_LARGE, &why)
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_message_bytes) {
        return Err(too_large());
    }
    let (stall, whole) = (proxy.config().timeouts.request_read, proxy.config().timeouts.request_total);
    let deadline = tokio::time::Instant::now() + whole;
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    let mut reserved = Reserved::default();
    loop {
        // Each piece within `request_read`, the whole body within `request_total`.
        let next = tokio::time::timeout(stall, body.frame());
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => {
                return Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("hs2-proxy: the request body was not whole within {whole:?} (timeouts.request_total)"),
                ))
            }
            Ok(Err(_)) => return Err(stalled(stall)),
            Ok(Ok(None)) => return Ok((buf.freeze(), reserved)),
            Ok(Ok(Some(Err(e)))) => {
                return Err(text(StatusCode::BAD_REQUEST, &format!("hs2-proxy: reading the request body: {e}")))
            }
            Ok(Ok(Some(Ok(frame)))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        if (buf.len() + data.len()) as u64 > limits.max_message_bytes {
            return Err(too_large());
        }
        buf.extend_from_slice(&data);
        if !proxy.budget().grow(&mut reserved, buf.len() as u64) {
            let why = format!(
                "hs2-proxy: the proxy is holding its limit of {} bytes of unfinished requests \
                 (limits.max_buffered_request_bytes); try again",
                proxy.budget().limit()
            );
            return Err(text(StatusCode::SERVICE_UNAVAILABLE, &why));
        }
    }
}

fn stalled(stall: Duration) -> Response<ReplyBody> {
    text(StatusCode::REQUEST_TIMEOUT, &format!("hs2-proxy: no request body bytes for {stall:?}"))
}

/// Who a request is from.
struct Authenticated {
    caller: Caller,
    /// The proxy's cookie, to hand out when the client just proved who it is.
    set_cookie: Option<String>,
    /// A Negotiate reply token (mutual authentication).
    www_authenticate: Option<String>,
}

/// Who the request is from: Negotiate (Kerberos), Basic (checked like SASL PLAIN), the proxy's cookie,
/// or nobody.
async fn caller(conn: &Connection, headers: &HeaderMap) -> Result<Authenticated, String> {
    let (proxy, peer) = (&conn.proxy, conn.peer);
    let state = &conn.front.http;
    let forwarded_for = forwarded_for(headers, peer);
    let authorization = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let cookie = state.signer.check(headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes), SystemTime::now());
    let done = |proof, set_cookie, www_authenticate| {
        let mut caller = super::auth::caller(proxy, proof, peer)?;
        caller.forwarded_for = forwarded_for.clone();
        caller.listener = conn.listener;
        Ok(Authenticated { caller, set_cookie, www_authenticate })
    };
    if let Some(header) = authorization.filter(|h| is_scheme(h, "negotiate")) {
        let (user, reply) = negotiate(conn, header).await?;
        let cookie = state.signer.issue(&user, SystemTime::now(), conn.tls);
        return done(ClientProof::Verified(user), Some(cookie), reply);
    }
    let basic = crate::http::parse_basic(authorization)?.map(|b| Credentials { user: b.user, password: b.password });
    match (basic, cookie) {
        (Some(basic), CookieCheck::Valid(user))
            if user == basic.user && state.creds.get(&user).is_some_and(|c| *c == basic) =>
        {
            done(ClientProof::Password(basic), None, None)
        }
        (Some(basic), _) => {
            if let Err(reason) = super::auth::check_password(proxy, &basic).await {
                tracing::warn!(client = %peer, user = %basic.user, reason = %reason, "authentication failed");
                // Only the remembered password itself being refused (changed in LDAP) forgets it: a
                // stranger's wrong guess must not log the user's cookies out.
                if state.creds.get(&basic.user).is_some_and(|c| *c == basic) {
                    state.creds.forget(&basic.user);
                }
                return Err(reason);
            }
            state.creds.remember(&basic);
            let cookie = state.signer.issue(&basic.user, SystemTime::now(), conn.tls);
            done(ClientProof::Password(basic), Some(cookie), None)
        }
        (None, CookieCheck::Valid(user)) => match state.creds.get(&user) {
            Some(creds) => done(ClientProof::Password((*creds).clone()), None, None),
            // No password kept (a Kerberos user, or the proxy restarted): the cookie's user is all there
            // is to know, which serves wherever the backends need no password from this user.
            None if cookie_user_suffices(conn) => done(ClientProof::Verified(user), None, None),
            None => Err("the cookie is valid but its credentials are gone (proxy restart): send them again".into()),
        },
        (None, CookieCheck::Invalid(why)) => Err(format!("the {} cookie is refused: {why}", state.signer.name())),
        (None, CookieCheck::Absent) => done(ClientProof::None, None, None),
    }
}

/// True when a cookie's user needs no password upstream: backends that check none, or a proxy that
/// delegates (Kerberos upstream, a delegating service account, or Kerberos clients beside password ones)
/// or asserts the user (the trusted hop).
fn cookie_user_suffices(conn: &Connection) -> bool {
    let auth = &conn.proxy.config().backend_auth;
    auth.transport != BackendTransport::Sasl
        || auth.delegate
        || auth.trusted_header.is_some()
        || conn.front.negotiate.is_some()
}

/// Accepts a Negotiate header: the client's short name and the reply token.
async fn negotiate(conn: &Connection, header: &[u8]) -> Result<(String, Option<String>), String> {
    let (Some(acceptor), Some(k)) = (conn.front.negotiate.clone(), &conn.proxy.config().kerberos) else {
        return Err("Negotiate (Kerberos) is not configured here (kerberos.keytab)".into());
    };
    let header = String::from_utf8_lossy(header).into_owned();
    // The replay cache is a file: off the runtime.
    let accepted = tokio::task::spawn_blocking(move || crate::kerberos::spnego::accept(&acceptor, &header)).await;
    let negotiated = match accepted {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(format!("Negotiate: {e}")),
    };
    let user = k.short_names.short_name(&negotiated.principal).map_err(|e| e.to_string())?;
    tracing::debug!(client = %conn.peer, principal = %negotiated.principal, user = %user, "Kerberos (HTTP) client authenticated");
    Ok((user, negotiated.www_authenticate))
}

fn is_scheme(header: &[u8], scheme: &str) -> bool {
    header.len() > scheme.len()
        && header[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        && header[scheme.len()] == b' '
}

/// The client's own `X-Forwarded-For` (from a load balancer in front), then the client's address.
fn forwarded_for(headers: &HeaderMap, peer: SocketAddr) -> String {
    let theirs: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
    let theirs = theirs.join(", ");
    if theirs.is_empty() || theirs.len() > MAX_FORWARDED_FOR {
        peer.ip().to_string()
    } else {
        format!("{theirs}, {}", peer.ip())
    }
}

/// The body must be exactly one Thrift message. One whose header is readable but whose body is refused
/// gets a `TApplicationException`, as on the binary transports.
#[allow(clippy::result_large_err)]
fn one_message(body: Bytes, limits: Limits) -> Result<Request, Response<ReplyBody>> {
    let bad = |why: String| text(StatusCode::BAD_REQUEST, &format!("hs2-proxy: {why}"));
    let mut scanner = Scanner::new(limits, &[]);
    match scanner.feed(&body) {
        Ok(n) if scanner.is_done() && n == body.len() => {
            Request::parse(body, limits).map_err(|e| bad(format!("bad Thrift message: {e}")))
        }
        Ok(n) if scanner.is_done() => Err(bad(format!("{} bytes after the Thrift message", body.len() - n))),
        Ok(_) => Err(bad("the body is not a whole Thrift message".into())),
        Err(error) => match scanner.header() {
            Some(h) => {
                let why = format!("hs2-proxy: refused {} request: {error}", h.name);
                let bytes = reply::protocol_error(&h.name, h.seqid, &why);
                let mut r = Response::new(ReplyBody::Full(Some(Bytes::from(bytes))));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-thrift"));
                Err(r)
            }
            None => Err(bad(format!("bad Thrift message: {error}"))),
        },
    }
}

fn text(status: StatusCode, body: &str) -> Response<ReplyBody> {
    let mut r = Response::new(ReplyBody::Full(Some(Bytes::from(format!("{body}\n")))));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A response body: a short text, or a reply streamed from the relay (ended abnormally when `abort`
/// fires, so that hyper closes the connection instead of ending the chunked body cleanly).
pub enum ReplyBody {
    Full(Option<Bytes>),
    Stream { rx: mpsc::Receiver<Bytes>, abort: Option<tokio::sync::oneshot::Receiver<io::Error>> },
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match &mut *self {
            ReplyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReplyBody::Stream { rx, abort } => {
                if let Some(signal) = abort.as_mut() {
                    if let Poll::Ready(fired) = Pin::new(signal).poll(cx) {
                        // A oneshot must not be polled again once it resolved.
                        *abort = None;
                        if let Ok(e) = fired {
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                rx.poll_recv(cx).map(|r| r.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReplyBody::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The relay's side of a response body: each part becomes one body chunk; a full queue makes the relay
/// wait, so a slow client slows the backend read instead of growing memory, and a client that takes
/// nothing for `timeouts.client_write` is found out.
struct BodySink {
    tx: mpsc::Sender<Bytes>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP client went away")
}

impl ReplySink for BodySink {
    async fn write_part(&mut self, bytes: &[u8], stall: Duration) -> Result<(), SinkError> {
        match tokio::time::timeout(stall, self.tx.send(Bytes::copy_from_slice(bytes))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SinkError::Gone(gone())),
            Err(_) => Err(SinkError::Stalled(stall)),
        }
    }

    async fn end_reply(&mut self, _stall: Duration) -> Result<(), SinkError> {
        // The body ends when the sender is dropped, after the call.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_body_sink_streams_parts_waits_when_full_and_finds_stalls() {
        let stall = Duration::from_secs(5);
        let (tx, mut rx) = mpsc::channel(1);
        let mut sink = BodySink { tx };
        sink.write_part(b"one", stall).await.unwrap();
        let second = tokio::spawn(async move {
            sink.write_part(b"two", stall).await.unwrap();
            let third = sink.write_part(b"three", stall).await;
            assert!(matches!(third, Err(SinkError::Stalled(d)) if d == stall), "nobody took it: {third:?}");
            drop(sink);
        });
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"one"));
        second.await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"two"));
        assert!(rx.recv().await.is_none(), "the body ends when the sink is dropped");
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        assert!(matches!(BodySink { tx }.write_part(b"x", stall).await, Err(SinkError::Gone(_))));
    }

    #[test]
    fn forwarded_for_appends_the_client_address() {
        let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(forwarded_for(&h, peer), "10.1.2.3");
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        assert_eq!(forwarded_for(&h, peer), "1.1.1.1, 2.2.2.2, 10.1.2.3");
        h.insert("x-forwarded-for", HeaderValue::from_str(&"9".repeat(MAX_FORWARDED_FOR + 1)).unwrap());
        assert_eq!(forwarded_for(&h, peer), "10.1.2.3");
    }

    #[test]
    fn a_body_must_be_one_whole_message() {
        let limits = Limits::REQUEST;
        let msg = crate::hs2::requests::get_info(
            &crate::hs2::handle::HandleId {
                guid: crate::hs2::handle::Guid([1; 16]),
                secret: crate::hs2::handle::Secret([2; 16]),
            },
            13,
            1,
        );
        assert!(one_message(Bytes::from(msg.clone()), limits).is_ok());
        let status = |r: Result<Request, Response<ReplyBody>>| r.err().map(|r| r.status());
        assert_eq!(
            status(one_message(Bytes::from(msg[..msg.len() - 1].to_vec()), limits)),
            Some(StatusCode::BAD_REQUEST)
        );
        let mut two = msg.clone();
        two.extend_from_slice(&msg);
        assert_eq!(status(one_message(Bytes::from(two), limits)), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(one_message(Bytes::from_static(b"junk"), limits)), Some(StatusCode::BAD_REQUEST));
    }
}
