//! Bad input on every listener (HS2 binary and HTTP on the main port, the extra `http.listen` port, the
//! admin port): HTTP bodies and heads, slow clients, a flood past `limits.max_client_connections`, TLS
//! garbage. Same rules as the rest of the matrix: a readable error or a logged close for the bad
//! client, a bystander that keeps working, counts back to baseline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bed::{until_closed, Bed, AT_ONCE, HANDSHAKE, REQUEST_READ};
use crate::common::pki;
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
const CLI_DBMS_VER: TGetInfoType = TGetInfoType::CLI_DBMS_VER;
use hs2_proxy::hs2client::{ClientAuth, ClientError, Hs2Client};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `request` and returns the whole answer (the requests say `Connection: close`).
async fn http(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
    (String::from_utf8_lossy(&got).into_owned(), took)
}

/// POST with no length, a 10 GiB Content-Length, broken chunked encoding, a head over 64 KiB, a GET: each
/// gets its 4xx at once, on the main port and on `http.listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_without_a_length_or_with_broken_bodies_get_4xx_at_once() {
    let mut bed = Bed::start_with("", HANDSHAKE, Duration::from_secs(30)).await;
    let big_head = format!("POST / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(70 * 1024));
    let cases: [(&[u8], &str, &str); 5] = [
        (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400", "not a whole Thrift message"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10737418240\r\n\r\n",
            "HTTP/1.1 413",
            "larger than 67108864 bytes",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 400",
            "",
        ),
        (big_head.as_bytes(), "HTTP/1.1 431", ""),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 405", "POST one Thrift message"),
    ];
    for addr in [bed.listen, bed.http] {
        for (request, status, text) in &cases {
            let (answer, took) = http(addr, request).await;
            assert!(answer.starts_with(status) && answer.contains(text), "{status}: {answer:.300}");
            assert!(took < AT_ONCE * 4, "{status}: {took:?}");
        }
        bed.bystander_works().await;
    }
    bed.back_to_baseline().await;
}

/// A chunked body that stops arriving gets 408 after `timeouts.request_read` (a declared length that
/// stops: tests/pipeline.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_stops_gets_408() {
    let mut bed = Bed::start("").await;
    let (answer, took) =
        http(bed.http, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\x80\x01\x00\x01\r\n")
            .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= REQUEST_READ && took < REQUEST_READ * 4, "{took:?}");
    bed.back_to_baseline().await;
}

/// Slow clients on every listener, all at once: first bytes never finished (binary), a SASL handshake
/// never finished, a binary request begun and left, an HTTP head never finished (main port and
/// `http.listen`), an admin request head never finished. Each is closed after its deadline, no sooner
/// and not much later, while the bystander keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_on_every_listener() {
    let mut bed = Bed::start("").await;
    let admin_deadline = Duration::from_millis(800);
    let mut begun = super::header("GetInfo", 1, 1);
    begun.extend([12, 0, 1]);
    let cases: Vec<(SocketAddr, Vec<u8>, Duration, &str)> = vec![
        (bed.listen, vec![0x00, 0x00], HANDSHAKE, "first bytes"),
        (bed.listen, vec![1, 0, 0, 0, 5, b'P', b'L', b'A', b'I', b'N'], HANDSHAKE, "SASL half-way"),
        (bed.listen, begun, REQUEST_READ, "a request begun"),
        (bed.listen, b"POST / HTTP/1.1\r\nHost: x\r\n".to_vec(), HANDSHAKE, "HTTP head"),
        (bed.http, b"POST / HTTP/1.1\r\nHost: x\r\n".to_vec(), HANDSHAKE, "HTTP head on http.listen"),
        (bed.admin, b"GET /api/backe".to_vec(), admin_deadline, "admin head"),
    ];
    let mut slow = Vec::new();
    for (addr, bytes, deadline, what) in cases {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let (_, took) = until_closed(&mut s, Duration::from_secs(10)).await;
            (what, deadline, took)
        }));
    }
    bed.bystander_works().await;
    for task in slow {
        let (what, deadline, took) = task.await.unwrap();
        assert!(
            took >= deadline.mul_f64(0.9) && took < deadline * 4,
            "{what}: closed after {took:?}, deadline {deadline:?}"
        );
    }
    bed.logged(&["client connection refused", "no transport handshake within"]).await;
    bed.logged(&["client connection closed", "no bytes for"]).await;
    bed.back_to_baseline().await;
}

/// A binary request trickled one byte at a time, each byte just inside `timeouts.request_read`: every
/// byte restarts the stall deadline, so without a deadline for the whole request the connection (and
/// its permit of `limits.max_client_connections`) would be held for as long as the client likes
/// (slowloris; found by the soak work). `timeouts.request_total` (the bed sets four stall periods) cuts
/// it off, logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_trickled_a_byte_at_a_time_is_cut_off() {
    let bed = Bed::start("").await;
    let mut s = bed.raw().await;
    let mut trickle = super::get_info_with_guid_length(1 << 20);
    trickle.resize(trickle.len() + 1000, 7);
    let started = Instant::now();
    let limit = REQUEST_READ * 4;
    for b in trickle {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        if started.elapsed() > limit + REQUEST_READ * 3 {
            break;
        }
        tokio::time::sleep(REQUEST_READ / 2).await;
    }
    let (_, _) = until_closed(&mut s, REQUEST_READ * 3).await;
    // The whole-request deadline of four stall periods closed it well within this.
    assert!(started.elapsed() < limit + REQUEST_READ * 2, "a trickling client held open for {:?}", started.elapsed());
    bed.logged(&["client connection closed", "timeouts.request_total"]).await;
}

/// A flood past `limits.max_client_connections`: every connection beyond the cap is closed at once
/// (counted and logged), the ones within it and the bystander keep working, and once the flood is gone
/// new connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_max_client_connections_is_refused_and_recovers() {
    let mut bed = Bed::start("[limits]\nmax_client_connections = 16").await;
    let mut held = Vec::new();
    for _ in 0..15 {
        let mut c = Hs2Client::connect(bed.listen, &ClientAuth::NoSasl).await.unwrap();
        c.set_timeout(Some(Duration::from_secs(5)));
        let served = c.get_info(&hs2_proxy::backend::probe::zero_handle(), CLI_DBMS_VER).await;
        assert!(matches!(served, Err(ClientError::Status { .. })), "served within the cap: {served:?}");
        held.push(c);
    }
    for _ in 0..20 {
        let mut s = bed.raw().await;
        let (got, took) = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(got.is_empty() && took < AT_ONCE * 4, "{took:?}");
    }
    bed.bystander_works().await;
    assert_eq!(bed.metric("hs2_proxy_client_connections_refused_total").await, Some(20.0));
    bed.logged(&["connection limit reached"]).await;
    drop(held);
    bed.back_to_baseline().await;
    let mut after = Hs2Client::connect(bed.listen, &ClientAuth::NoSasl).await.unwrap();
    assert!(after.open_session(None, &[]).await.is_ok(), "served again");
}

/// TLS garbage: a TLS record that is not a ClientHello is refused at once, a ClientHello that never ends
/// after `timeouts.handshake`, both logged; a real TLS client and the plaintext bystander keep working.
/// Without TLS configured, a TLS client is told so in the log and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_is_refused_and_tls_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki::write_pki(dir.path(), "bad-");
    let tls = format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nallow_plaintext = true",
        p.cert.display(),
        p.key.display()
    );
    let mut bed = Bed::start(&tls).await;
    let mut garbage = bed.raw().await;
    garbage.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).await.unwrap();
    let (_, took) = until_closed(&mut garbage, Duration::from_secs(5)).await;
    assert!(took < AT_ONCE * 4, "{took:?}");
    let mut partial = bed.raw().await;
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]).await.unwrap();
    let (_, took) = until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(took >= HANDSHAKE.mul_f64(0.9) && took < HANDSHAKE * 4, "{took:?}");
    bed.logged(&["client connection refused", "TLS handshake"]).await;
    let via = pki::Via { http: None, tls: Some(pki::client_tls(&p.ca)), creds: None };
    let mut over_tls = pki::client_via(&bed.listen.to_string(), via).await.unwrap();
    assert!(over_tls.open_session(None, &[]).await.is_ok(), "TLS still works");
    drop(over_tls);
    bed.back_to_baseline().await;

    let mut plain = Bed::start("").await;
    let mut s = plain.raw().await;
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).await.unwrap();
    let (_, took) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(took < AT_ONCE * 4, "{took:?}");
    plain.logged(&["client connection refused", "TLS is not configured"]).await;
    plain.back_to_baseline().await;
}
