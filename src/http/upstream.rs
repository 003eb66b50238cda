//! An HTTP backend connection that looks like a byte stream, so that `conn::ThriftConn` (and with it the
//! pool, the probe and the relay) runs over it unchanged, like Thrift's own `THttpClient`.
//!
//! Writes collect one request message; the flush that `ThriftConn::write_message` ends with sends it as
//! one POST (hyper HTTP/1.1, keep-alive). Reads then return the response body as it arrives, and end of
//! body reads as end of stream. Between calls a read is a liveness check: pending while the connection
//! is open, end of stream once the server closed it.
//!
//! Cookies the backend sets (impalad's `impala.auth`) are sent back on this connection only: one
//! backend, one user. They never reach a client or another backend. No header of a client's request is
//! ever sent here: each POST carries only the headers built below (and `X-Forwarded-For`, which the
//! proxy writes), so a client cannot smuggle the trusted header of Impala's trusted hop through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::conn::Io;

/// Status line plus headers of a backend response, at most.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Cookies kept per connection, and the longest kept.
const MAX_COOKIES: usize = 8;
const MAX_COOKIE_BYTES: usize = 4096;

const USER_AGENT_VALUE: &str = concat!("hs2-proxy/", env!("CARGO_PKG_VERSION"));

/// Per-call request headers that the connection's user (the client task) sets before a call.
#[derive(Clone, Debug, Default)]
pub struct CallHeaders(Arc<Mutex<Option<HeaderValue>>>);

impl CallHeaders {
    /// `X-Forwarded-For` of the next call.
    pub fn set_forwarded_for(&self, value: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = HeaderValue::from_str(value).ok();
    }

    /// Taken by the next POST: the proxy's own calls (clean-up, probes) carry no client's address.
    fn take_forwarded_for(&self) -> Option<HeaderValue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Where and as whom the connection posts.
pub struct Target {
    /// `Host` header: the backend's `host:port`.
    pub host: String,
    pub path: String,
    /// `Authorization` sent with every call (Basic), when the backend authenticates.
    pub authorization: Option<String>,
    /// Sent with every call (Impala's `--trusted_auth_header`): impalad looks for its presence only.
    pub trusted_header: Option<http::HeaderName>,
}

/// The trusted header's value: impalad ignores it (`THttpServer::parseHeader` notes only that the
/// header is there); it names who vouched, for anyone reading a capture.
pub const TRUSTED_HEADER_VALUE: &str = "hs2-proxy";

type Pending = Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>;

enum State {
    /// No call outstanding.
    Idle,
    /// A POST was handed to hyper; the response head has not come yet.
    Waiting(Pending),
    /// Reading the response body; `chunk` holds what the last read could not take.
    Body { body: Incoming, chunk: Bytes },
}

pub struct HttpIo {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the HTTP connection; aborted when this is dropped.
    driver: JoinHandle<()>,
    path: http::Uri,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    trusted_header: Option<http::HeaderName>,
    cookies: Vec<(String, String)>,
    headers: CallHeaders,
    request: BytesMut,
    state: State,
}

impl Drop for HttpIo {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl HttpIo {
    /// Starts HTTP/1.1 over `io` (TCP or TLS). Nothing is sent until the first call.
    pub async fn handshake(io: Box<dyn Io>, target: &Target) -> io::Result<(HttpIo, CallHeaders)> {
        let path = target.path.parse::<http::Uri>().map_err(invalid)?;
        let host = HeaderValue::from_str(&target.host).map_err(invalid)?;
        let authorization = target.authorization.as_deref().map(HeaderValue::from_str).transpose().map_err(invalid)?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP backend connection ended");
            }
        });
        let headers = CallHeaders::default();
        let io = HttpIo {
            sender,
            driver,
            path,
            host,
            authorization,
            trusted_header: target.trusted_header.clone(),
            cookies: Vec::new(),
            headers: headers.clone(),
            request: BytesMut::new(),
            state: State::Idle,
        };
        Ok((io, headers))
    }

    fn post(&mut self, body: Bytes) -> io::Result<Request<Full<Bytes>>> {
        let mut b = Request::post(self.path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/x-thrift")
            .header(ACCEPT, "application/x-thrift")
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(a) = &self.authorization {
            b = b.header(AUTHORIZATION, a.clone());
        }
        if let Some(name) = &self.trusted_header {
            b = b.header(name.clone(), TRUSTED_HEADER_VALUE);
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            b = b.header(COOKIE, jar.join("; "));
        }
        if let Some(xff) = self.headers.take_forwarded_for() {
            b = b.header("x-forwarded-for", xff);
        }
        b.body(Full::new(body)).map_err(invalid)
    }

    /// Keeps the backend's cookies for this connection's later calls.
    fn keep_cookies(&mut self, response: &Response<Incoming>) {
        for value in response.headers().get_all(SET_COOKIE) {
            let Some((name, val)) = value.to_str().ok().and_then(|v| v.split(';').next()?.trim().split_once('='))
            else {
                continue;
            };
            if name.len() + val.len() > MAX_COOKIE_BYTES {
                continue;
            }
            self.cookies.retain(|(n, _)| n != name);
            if self.cookies.len() < MAX_COOKIES {
                self.cookies.push((name.to_string(), val.to_string()));
            }
        }
    }

    /// Takes the response head: a 200 starts the body; anything else fails the call.
    fn start_body(&mut self, response: Response<Incoming>) -> io::Result<()> {
        match response.status() {
            StatusCode::OK => {
                self.keep_cookies(&response);
                self.state = State::Body { body: response.into_body(), chunk: Bytes::new() };
                Ok(())
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the backend refused the credentials (HTTP {})", response.status()),
            )),
            status => Err(io::Error::other(format!("the backend answered HTTP {status}"))),
        }
    }

    /// Reads the rest of the previous body before a new call; it may only be its end.
    fn poll_finish_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let State::Body { body, chunk } = &mut self.state else { return Poll::Ready(Ok(())) };
            if !chunk.is_empty() {
                return Poll::Ready(Err(invalid("unexpected bytes after a complete reply")));
            }
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.state = State::Idle,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        *chunk = data;
                    }
                }
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.driver.is_finished()
    }
}

impl AsyncWrite for HttpIo {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.request.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Sends the collected request; returns once hyper took it (the reply is awaited by reads, under
    /// the caller's reply timeout).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.request.is_empty() {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_finish_body(cx))?;
        if !matches!(this.state, State::Idle) {
            return Poll::Ready(Err(invalid("a call while the previous reply is outstanding")));
        }
        std::task::ready!(this.sender.poll_ready(cx))
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, format!("HTTP backend connection: {e}")))?;
        let body = this.request.split().freeze();
        let post = this.post(body)?;
        this.state = State::Waiting(Box::pin(this.sender.send_request(post)));
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for HttpIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Idle => {
                    // Between calls: only a closed connection is news.
                    return if this.is_closed() { Poll::Ready(Ok(())) } else { Poll::Pending };
                }
                State::Waiting(pending) => {
                    let response = std::task::ready!(pending.as_mut().poll(cx)).map_err(io::Error::other);
                    this.state = State::Idle;
                    this.start_body(response?)?;
                }
                State::Body { body, chunk } => {
                    if !chunk.is_empty() {
                        let n = chunk.len().min(buf.remaining());
                        buf.put_slice(&chunk[..n]);
                        chunk.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                        None => {
                            // End of body reads as end of stream, once; then reads are liveness checks.
                            this.state = State::Idle;
                            return Poll::Ready(Ok(()));
                        }
                        Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                *chunk = data;
                            }
                        }
                    }
                }
            }
        }
    }
}
impl crate::conn::Io for HttpIo {}
