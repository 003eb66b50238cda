//! Large replies stream through a real proxy process with flat memory; SASL frames that split and join
//! messages arbitrarily are handled on both sides.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hs2_proxy::config::BackendTransport;
use hs2_proxy::conn::ThriftConn;
use hs2_proxy::hs2::requests;
use hs2_proxy::hs2::rpc;
use hs2_proxy::hs2client::{fetch_req, ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::sasl;
use hs2_proxy::thrift::framing::{frame_header, Framing};
use hs2_proxy::thrift::value::decode_message;
use hs2_proxy::thrift::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct ProxyProcess {
    child: Child,
    addr: String,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary and reads its listening address from its log.
fn spawn_proxy(backend: &str) -> ProxyProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--backend", backend])
        .env("HS2_PROXY_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hs2-proxy binary runs");
    let stderr = child.stderr.take().expect("piped stderr");
    // Read the log on a thread so that a proxy that never logs its address fails the test, not hangs it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy logs its listening address");
    ProxyProcess { child, addr }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

/// One FetchResults reply of ~100 MB, fetched directly and through the proxy, raw bytes compared.
async fn fetch_blob_reply(addr: &str, rows: i64, row_bytes: i64) -> Vec<u8> {
    let mut c = Hs2Client::connect(addr, &ClientAuth::NoSasl).await.unwrap();
    c.set_timeout(Some(Duration::from_secs(120)));
    let s = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&s, &format!("select payload from blobs({rows}, {row_bytes})")).await.unwrap();
    c.wait_finished(&op).await.unwrap();
    c.call_raw(&rpc::encode_call::<rpc::FetchResults>(42, &fetch_req(&op, rows)).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_reply_passes_byte_identical_with_flat_proxy_memory() {
    let mock = MockImpalad::start("127.0.0.1:0", MockConfig::default()).await.unwrap();
    let proxy = spawn_proxy(&mock.local_addr().to_string());
    let pid = proxy.child.id();
    let (rows, row_bytes) = (100, 1 << 20);
    let direct = fetch_blob_reply(&mock.local_addr().to_string(), rows, row_bytes).await;
    let before = peak_rss_kib(pid);
    let proxied = fetch_blob_reply(&proxy.addr, rows, row_bytes).await;
    let after = peak_rss_kib(pid);
    assert!(direct.len() > 100 << 20, "the reply is {} bytes", direct.len());
    assert!(direct == proxied, "bytes differ through the proxy");
    println!(
        "100 MB reply: proxy peak RSS {before} KiB before, {after} KiB after ({} MiB relayed)",
        direct.len() >> 20
    );
    assert!(after < 48 * 1024, "proxy peak RSS {after} KiB grew with the reply");
}

/// SASL on both sides: the backend splits replies into 7-byte frames; the client splits one request
/// over many tiny frames and joins two requests in one frame.
#[tokio::test]
async fn sasl_frames_split_and_join_messages_on_both_sides() {
    let cfg = MockConfig { auth: MockAuth::Plain { users: None }, write_frame_bytes: Some(7), ..MockConfig::default() };
    let mock = MockImpalad::start("127.0.0.1:0", cfg).await.unwrap();
    let proxy = proxy(std::slice::from_ref(&mock), BackendTransport::Sasl, |_| {}).await;
    let mut c = connect(&proxy, &plain("carol", "pw")).await;
    let s = c.open_session(None, &[]).await.unwrap();
    let op = c.execute(&s, "select id from range(3000)").await.unwrap();
    assert_eq!(c.fetch_all_i64(&op).await.unwrap(), (0..3000).collect::<Vec<_>>());

    let stream = TcpStream::connect(proxy.local_addr).await.unwrap();
    let mut raw = ThriftConn::new(Box::new(stream), Framing::Unframed, 1 << 20);
    sasl::client_handshake(&mut raw, "carol", "pw", 1 << 20).await.unwrap();
    let info = requests::get_info(&s, 18, 1);
    let mut split = Vec::new();
    for chunk in info.chunks(3) {
        split.extend_from_slice(&frame_header(chunk.len()));
        split.extend_from_slice(chunk);
    }
    let two = [requests::get_info(&s, 13, 2), requests::get_info(&s, 18, 3)].concat();
    split.extend_from_slice(&frame_header(two.len()));
    split.extend_from_slice(&two);
    let (mut reader, _) = (raw, ());
    reader.write_raw(&split).await.unwrap();
    for seqid in 1..=3 {
        let reply = reader.read_message(Limits::REPLY).await.unwrap().expect("a reply");
        let (h, body, _) = decode_message(&reply, &Limits::REPLY).unwrap();
        assert_eq!((h.name.as_str(), h.seqid), ("GetInfo", seqid));
        let code = body.get_struct(0).and_then(|r| r.get_struct(1)).and_then(|st| st.get_i64(1));
        assert_eq!(code, Some(0), "GetInfo {seqid} succeeded");
    }
    let _ = TcpStream::connect(proxy.local_addr).await.unwrap().shutdown().await;
}
