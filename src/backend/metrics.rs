//! Reads an impalad's own count of open HS2 sessions from its web port (`/jsonmetrics`), so that
//! sessions opened around the proxy count in balancing. Optional per backend, off by default.
//!
//! A plain HTTP/1.0 GET over TCP: the web port speaks nothing fancier and the proxy needs one number.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The metric impalad reports for open HS2 sessions.
pub const OPEN_SESSIONS_METRIC: &str = "impala-server.num-open-hiveserver2-sessions";
/// A metrics page larger than this is not read.
const MAX_BODY_BYTES: u64 = 8 << 20;

/// Splits `http://host:port/path` into `("host:port", "/path")`.
pub fn parse_http_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    Some((authority.to_string(), path.to_string()))
}

/// The value of `"name": <integer>` in a JSON text.
pub fn json_integer(body: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\"");
    let after = &body[body.find(&key)? + key.len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    after[..end].parse().ok()
}

/// Fetches the open-session count from `url`.
pub async fn open_sessions(url: &str, timeout: Duration) -> Result<u64, String> {
    let (authority, path) = parse_http_url(url).ok_or_else(|| format!("bad metrics url {url:?}"))?;
    let work = async {
        let mut s = TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(MAX_BODY_BYTES).read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
        if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
            return Err(format!("unexpected response {:?}", head.lines().next().unwrap_or("")));
        }
        json_integer(body, OPEN_SESSIONS_METRIC).ok_or_else(|| format!("no {OPEN_SESSIONS_METRIC} in the page"))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_json() {
        assert_eq!(parse_http_url("http://h:25000/jsonmetrics"), Some(("h:25000".into(), "/jsonmetrics".into())));
        assert_eq!(parse_http_url("https://h:1/x"), None);
        assert_eq!(parse_http_url("http://h/x"), None);
        let body = r#"{"a": 1, "impala-server.num-open-hiveserver2-sessions" : 17, "b": 2}"#;
        assert_eq!(json_integer(body, OPEN_SESSIONS_METRIC), Some(17));
        assert_eq!(json_integer("{}", OPEN_SESSIONS_METRIC), None);
    }
}
