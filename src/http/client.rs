//! The proxy's one small HTTP/1.1 client (hyper): a request without a body or with a short one, a
//! bounded response body, one deadline for the whole exchange. For the CLI's admin calls and for
//! reading impalad's web port; HS2 calls to HTTP backends use [`super::upstream`], which streams.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, HOST, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const USER_AGENT_VALUE: &str = concat!("hs2-proxy/", env!("CARGO_PKG_VERSION"));

/// One request.
pub struct Get<'a> {
    /// `host:port` to connect to.
    pub authority: &'a str,
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// `Authorization: Bearer <token>`, never logged.
    pub bearer: Option<&'a str>,
    pub timeout: Duration,
    /// A longer response body is an error.
    pub max_body: usize,
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends one request on a new connection; `Err` says what went wrong, naming the address.
pub async fn fetch(r: &Get<'_>) -> Result<Response, String> {
    let at = r.authority;
    tokio::time::timeout(r.timeout, exchange(r))
        .await
        .map_err(|_| format!("{at} did not answer within {:?}", r.timeout))?
        .map_err(|e| format!("{at}: {e}"))
}

async fn exchange(r: &Get<'_>) -> Result<Response, String> {
    let tcp = TcpStream::connect(r.authority).await.map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = Request::builder()
        .method(r.method.clone())
        .uri(r.path)
        .header(HOST, r.authority)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE);
    if let Some(token) = r.bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "the token is not a header value")?;
        request = request.header(AUTHORIZATION, value);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = Limited::new(response.into_body(), r.max_body)
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn serve_once(response: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(response).await.unwrap();
        });
        addr
    }

    fn get(addr: &str, max_body: usize) -> Get<'_> {
        Get {
            authority: addr,
            method: Method::GET,
            path: "/x",
            bearer: Some("t"),
            timeout: Duration::from_secs(5),
            max_body,
        }
    }

    #[tokio::test]
    async fn bodies_are_read_with_either_framing_and_bounded() {
        let addr = serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!").await;
        let r = fetch(&get(&addr, 100)).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::NOT_FOUND, &b"nope!"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let addr = serve_once(chunked).await;
        assert_eq!(&fetch(&get(&addr, 100)).await.unwrap().body[..], b"abcde");
        let addr = serve_once(chunked).await;
        assert!(fetch(&get(&addr, 4)).await.is_err(), "over the body limit");
        let addr = serve_once(b"garbage\r\n\r\n").await;
        assert!(fetch(&get(&addr, 100)).await.is_err());
    }
}
