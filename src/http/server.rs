//! Client-side HS2 over HTTP: one hyper HTTP/1.1 connection per client connection, keep-alive.
//!
//! A request is authenticated (the proxy's cookie, else Basic auth checked like SASL PLAIN, else the
//! service user like a NOSASL client), its body read (bounded by `limits.max_request_bytes`) and checked
//! to be one whole Thrift message, then handed to `client::Client::call_http`: the same routing,
//! pool checkout and relay as a binary call. The reply is relayed into a bounded channel that is the
//! response body, so it streams out chunked and never sits whole in memory. Upstream HTTP headers and
//! cookies are never copied into responses.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{Method, Request as HttpRequest, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use super::cookie::{CookieCheck, CookieSigner, CredentialCache};
use crate::backend::pool::Credentials;
use crate::client::{Client, HttpCaller};
use crate::config::{BackendTransport, HttpConfig};
use crate::conn::{Io, ThriftConn};
use crate::hs2::call::Request;
use crate::hs2::reply;
use crate::server::Proxy;
use crate::thrift::framing::Framing;
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

/// Serves one HTTP client connection until it closes.
pub async fn serve(proxy: Arc<Proxy>, io: Box<dyn Io>, peer: SocketAddr, tls: bool) {
    let client = Arc::new(tokio::sync::Mutex::new(Client::for_http(proxy.clone(), peer)));
    let service = {
        let (proxy, client) = (proxy.clone(), client.clone());
        service_fn(move |req| {
            let (proxy, client) = (proxy.clone(), client.clone());
            async move { Ok::<_, Infallible>(handle(proxy, client, peer, tls, req).await) }
        })
    };
    let mut builder = http1::Builder::new();
    // The header timeout also closes keep-alive connections that stay idle that long.
    builder.timer(TokioTimer::new()).header_read_timeout(proxy.config.handshake_timeout).max_buf_size(MAX_HEAD_BYTES);
    tracing::debug!(client = %peer, tls, "HTTP client connected");
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(client = %peer, error = %e, "HTTP client connection ended");
    }
    client.lock().await.close();
}

async fn handle(
    proxy: Arc<Proxy>,
    client: Arc<tokio::sync::Mutex<Client>>,
    peer: SocketAddr,
    tls: bool,
    req: HttpRequest<Incoming>,
) -> Response<ReplyBody> {
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "hs2-proxy serves HS2 over HTTP: POST one Thrift message");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if proxy.config.http.path.as_deref().is_some_and(|p| p != req.uri().path()) {
        return text(StatusCode::NOT_FOUND, "hs2-proxy: no HS2 service at this path (see http.path)");
    }
    let (caller, set_cookie) = match caller(&proxy, req.headers(), peer, tls).await {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(client = %peer, reason = %why, "HTTP request refused: not authenticated");
            let mut r = text(StatusCode::UNAUTHORIZED, &format!("hs2-proxy: {why}"));
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hs2-proxy\""));
            return r;
        }
    };
    let limits = proxy.config.request_limits;
    let body = match Limited::new(req.into_body(), limits.max_message_bytes as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let why = format!("hs2-proxy: the request is larger than {} bytes", limits.max_message_bytes);
            return text(StatusCode::PAYLOAD_TOO_LARGE, &why);
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("hs2-proxy: reading the request body: {e}")),
    };
    let request = match one_message(body, limits) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    let abort = tx.clone();
    let reply = ThriftConn::new(Box::new(BodyWriter::new(tx)), Framing::Unframed, 0);
    tokio::spawn(async move {
        // Calls of one connection arrive one after another (HTTP/1.1); the lock only hands the task over.
        let mut client = client.lock_owned().await;
        if let Err(e) = client.call_http(request, reply, caller).await {
            // Ends the response abnormally: the client sees a broken body, never a truncated "complete" one.
            let _ = abort.send(Err(io::Error::other(e))).await;
        }
    });
    let mut response = Response::new(ReplyBody::Stream(rx));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-thrift"));
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// Who the request is from, and a cookie to hand out when the password was just checked.
async fn caller(
    proxy: &Proxy,
    headers: &HeaderMap,
    peer: SocketAddr,
    tls: bool,
) -> Result<(HttpCaller, Option<String>), String> {
    let state = &proxy.front.http;
    let forwarded_for = forwarded_for(headers, peer);
    let basic = super::parse_basic(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes))?;
    let cookie = state.signer.check(headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes), SystemTime::now());
    let authed =
        |creds: Credentials, forwarded_for| HttpCaller { user: Some(creds.user.clone()), creds, forwarded_for };
    match (basic, cookie) {
        (Some(basic), CookieCheck::Valid(user))
            if user == basic.user && state.creds.get(&user).is_some_and(|c| *c == basic) =>
        {
            Ok((authed(basic, forwarded_for), None))
        }
        (Some(basic), _) => {
            if let Err(reason) = proxy.authenticate(&basic).await {
                tracing::warn!(client = %peer, user = %basic.user, reason = %reason, "authentication failed");
                // Only the remembered password itself being refused (changed in LDAP) forgets it: a
                // stranger's wrong guess must not log the user's cookies out.
                if state.creds.get(&basic.user).is_some_and(|c| *c == basic) {
                    state.creds.forget(&basic.user);
                }
                return Err(reason);
            }
            state.creds.remember(&basic);
            let cookie = state.signer.issue(&basic.user, SystemTime::now(), tls);
            Ok((authed(basic, forwarded_for), Some(cookie)))
        }
        (None, CookieCheck::Valid(user)) => match state.creds.get(&user) {
            Some(creds) => Ok((authed((*creds).clone(), forwarded_for), None)),
            // Backends that check no password: the cookie's user is all there is to know.
            None if proxy.config.backend_transport == BackendTransport::Nosasl => {
                Ok((authed(Credentials { user, password: String::new() }, forwarded_for), None))
            }
            None => Err("the cookie is valid but its credentials are gone (proxy restart): send them again".into()),
        },
        (None, CookieCheck::Invalid(why)) => Err(format!("the {} cookie is refused: {why}", state.signer.name())),
        (None, CookieCheck::Absent) => {
            Ok((HttpCaller { user: None, creds: proxy.service_credentials(), forwarded_for }, None))
        }
    }
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
                let bytes = reply::application_exception(&h.name, h.seqid, 7, &why);
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

/// A response body: a short text, or a reply streamed from the relay.
pub enum ReplyBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<io::Result<Bytes>>),
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match &mut *self {
            ReplyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReplyBody::Stream(rx) => rx.poll_recv(cx).map(|r| r.map(|r| r.map(Frame::data))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReplyBody::Stream(_) => SizeHint::default(),
        }
    }
}

type Reserve =
    Pin<Box<dyn Future<Output = Result<mpsc::OwnedPermit<io::Result<Bytes>>, mpsc::error::SendError<()>>> + Send>>;

/// The write side of a response body: each write becomes one body chunk; a full queue makes the relay
/// wait, so a slow client slows the backend read instead of growing memory.
struct BodyWriter {
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    reserving: Option<Reserve>,
}

impl BodyWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> BodyWriter {
        BodyWriter { tx: Some(tx), reserving: None }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP client went away")
}

impl tokio::io::AsyncRead for BodyWriter {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BodyWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some(reserving) = self.reserving.as_mut() {
                let permit = ready!(reserving.as_mut().poll(cx)).map_err(|_| gone())?;
                self.reserving = None;
                self.tx = Some(permit.send(Ok(Bytes::copy_from_slice(buf))));
                return Poll::Ready(Ok(buf.len()));
            }
            let tx = self.tx.take().ok_or_else(gone)?;
            match tx.try_reserve_owned() {
                Ok(permit) => {
                    self.tx = Some(permit.send(Ok(Bytes::copy_from_slice(buf))));
                    return Poll::Ready(Ok(buf.len()));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Poll::Ready(Err(gone())),
                Err(mpsc::error::TrySendError::Full(tx)) => self.reserving = Some(Box::pin(tx.reserve_owned())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx = None;
        self.reserving = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_body_writer_streams_chunks_and_waits_when_the_queue_is_full() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut w = BodyWriter::new(tx);
        w.write_all(b"one").await.unwrap();
        let second = tokio::spawn(async move {
            w.write_all(b"two").await.unwrap();
            drop(w);
        });
        assert_eq!(rx.recv().await.unwrap().unwrap(), Bytes::from_static(b"one"));
        assert_eq!(rx.recv().await.unwrap().unwrap(), Bytes::from_static(b"two"));
        second.await.unwrap();
        assert!(rx.recv().await.is_none(), "the body ends when the writer is dropped");
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        assert_eq!(BodyWriter::new(tx).write_all(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
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
