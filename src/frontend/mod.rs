//! The server side of a client connection: the first moments (which transport it speaks, TLS), who the
//! caller is, and the two transports' read loops. Every call then goes through `dispatch`.
//!
//! - here: sniffing and TLS; every listener serves every transport, the first bytes say binary
//!   (unframed, framed, SASL), HTTP or TLS (`thrift::framing::sniff`); TLS is terminated and the
//!   decrypted stream sniffed again, so binary and HTTP both work over it.
//! - [`binary`]: a binary-protocol connection: handshake, then one call at a time.
//! - [`http`]: an HTTP connection (hyper): one call per POST, the reply streamed as the body.
//! - [`auth`]: checking a client's credentials; [`cookie`]: the proxy's own HTTP cookie. No I/O there.
//!
//! The whole handshake (first bytes, TLS, SASL with the upstream check of a password) has one deadline,
//! `timeouts.handshake`, counted from the accept.

pub mod auth;
pub mod binary;
pub mod cookie;
pub mod http;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::kerberos::KerberosCredentials;
use crate::config::Config;
use crate::conn::Io;
use crate::kerberos::Credential;
use crate::proxy::Proxy;
use crate::thrift::framing::{sniff, Sniffed, SNIFF_BYTES};
use crate::tls::ServerTls;

/// Front-end state shared by all client connections: the listeners' TLS, the HTTP cookie keys, and the
/// Kerberos acceptor credentials.
pub struct Front {
    pub tls: Option<ServerTls>,
    pub http: http::HttpState,
    /// SASL GSSAPI acceptor (`kerberos.service_principal`), when `[kerberos] keytab` is set.
    pub gssapi: Option<Credential>,
    /// HTTP Negotiate acceptor (any principal of the keytab, which should hold `HTTP/<host>`).
    pub negotiate: Option<Credential>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Front(tls: {}, kerberos: {})", self.tls.is_some(), self.gssapi.is_some())
    }
}

impl Front {
    /// `kerberos`: the credentials `[kerberos]` acquired at start, if any.
    pub fn new(config: &Config, kerberos: Option<&KerberosCredentials>) -> Front {
        Front {
            tls: config.tls.as_ref().map(|t| ServerTls::new(&t.cert_file, &t.key_file)),
            http: http::HttpState::new(&config.http),
            gssapi: kerberos.and_then(|k| k.sasl.clone()),
            negotiate: kerberos.and_then(|k| k.http.clone()),
        }
    }
}

/// A connection whose transport is known; the sniffed bytes are put back in front of the stream.
struct Detected {
    io: Box<dyn Io>,
    kind: Sniffed,
    first: Vec<u8>,
    tls: bool,
}

/// Serves one accepted connection until it closes.
/// `listener`: the address of the listener that accepted it (placement rules can name it).
pub async fn serve(proxy: Proxy, front: Arc<Front>, stream: TcpStream, peer: SocketAddr, listener: Option<SocketAddr>) {
    let _ = stream.set_nodelay(true);
    let timeout = proxy.config().timeouts.handshake;
    let deadline = Instant::now() + timeout;
    let detected = match tokio::time::timeout_at(deadline, detect(&proxy, &front, Box::new(stream))).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "client connection refused");
            return;
        }
        Err(_) => {
            tracing::info!(client = %peer, "client connection refused: no transport handshake within {timeout:?}");
            return;
        }
    };
    let Detected { io, kind, first, tls } = detected;
    match kind {
        Sniffed::Http if proxy.config().http.enabled => {
            http::serve(proxy, front, Box::new(Prefixed::new(first, io)), peer, listener, tls).await
        }
        Sniffed::Http => {
            let mut io = io;
            let body = "hs2-proxy: HS2 over HTTP is turned off (http.enabled = false); use the binary protocol\n";
            let head =
                format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = io.write_all(format!("{head}{body}").as_bytes()).await;
            let _ = io.shutdown().await;
            tracing::info!(client = %peer, "client connection refused: an HTTP request while http.enabled is false");
        }
        kind => binary::serve(&proxy, &front, io, first, kind, (peer, listener), deadline).await,
    }
}

/// Reads the first bytes and terminates TLS.
async fn detect(proxy: &Proxy, front: &Front, mut io: Box<dyn Io>) -> Result<Detected, String> {
    let (kind, first) = sniff_io(&mut io).await?;
    if kind != Sniffed::Tls {
        if proxy.config().tls.as_ref().is_some_and(|t| !t.allow_plaintext) {
            return Err("a connection without TLS (tls.allow_plaintext is false)".into());
        }
        return Ok(Detected { io, kind, first, tls: false });
    }
    let Some(acceptor) = front.tls.as_ref().and_then(ServerTls::acceptor) else {
        return Err("a TLS handshake, but TLS is not configured (tls.cert_file, tls.key_file)".into());
    };
    let stream = acceptor.accept(Prefixed::new(first, io)).await.map_err(|e| format!("TLS handshake: {e}"))?;
    let mut io: Box<dyn Io> = Box::new(stream);
    let (kind, first) = sniff_io(&mut io).await?;
    if kind == Sniffed::Tls {
        return Err("TLS inside TLS".into());
    }
    Ok(Detected { io, kind, first, tls: true })
}

/// Reads until the transport is known; returns it with the bytes read.
async fn sniff_io(io: &mut Box<dyn Io>) -> Result<(Sniffed, Vec<u8>), String> {
    let mut first = Vec::with_capacity(SNIFF_BYTES);
    loop {
        if let Some(kind) = sniff(&first) {
            if kind == Sniffed::Unknown {
                return Err(format!("unrecognized first bytes {first:02x?}"));
            }
            return Ok((kind, first));
        }
        let mut buf = [0u8; SNIFF_BYTES];
        let n = io.read(&mut buf[..SNIFF_BYTES - first.len()]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before saying anything".into());
        }
        first.extend_from_slice(&buf[..n]);
    }
}

/// A stream with bytes already read put back in front of it.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { prefix, at: 0, inner }
    }
}

/// Never spliced: its first bytes are in user space.
impl<S: crate::conn::Io> crate::conn::Io for Prefixed<S> {}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefixed_bytes_come_first_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(b"hello ".to_vec(), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
