//! Session clean-up with several instances: a session is closed upstream only on the backend's word that
//! nobody used it for the grace period, through any instance (`control::cleanup`). Real sockets: two
//! proxy instances in front of a mock impalad whose web port lists each session's last access, as
//! impalad's `/sessions?json` does.

mod common;

use std::time::{Duration, Instant};

use common::instances::metrics_text;
use common::*;
use hs2_proxy::config::{BackendTransport, Config, HttpUrl};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::ClientAuth;
use hs2_proxy::metrics::sample;
use hs2_proxy::mock::{MockAuth, MockImpalad};
use hs2_proxy::server::ProxyHandle;

const GRACE: Duration = Duration::from_millis(400);

fn quick_cleanup(c: &mut Config, metrics_url: Option<&str>) {
    c.sessions.disconnected_grace = GRACE;
    c.sessions.reap_interval = Duration::from_millis(50);
    c.backends[0].metrics_url = metrics_url.and_then(HttpUrl::parse);
}

async fn cleanups(p: &ProxyHandle, result: &str) -> u64 {
    let text = metrics_text(p).await;
    sample(&text, &format!("hs2_proxy_session_cleanups_total{{result=\"{result}\"}}")).unwrap_or(0.0) as u64
}

/// One call on `s` through `via`, on a connection of its own that closes afterwards: between calls, no
/// client of `via` is attached, so `via` too counts the session as unused.
async fn call_through(via: &ProxyHandle, s: &HandleId) {
    let mut c = connect(via, &ClientAuth::NoSasl).await;
    let op = c.execute(s, "select 1").await.expect("the session works through B");
    assert_eq!(c.fetch_all_i64(&op).await.expect("fetch"), vec![1]);
    c.close_operation(&op).await.expect("close the operation");
}

async fn pair(mock: &MockImpalad, url: Option<&str>) -> (ProxyHandle, ProxyHandle) {
    let mocks = [mock.clone()];
    let a = proxy(&mocks, BackendTransport::Nosasl, |c| quick_cleanup(c, url)).await;
    let b = proxy(&mocks, BackendTransport::Nosasl, |c| quick_cleanup(c, url)).await;
    (a, b)
}

/// Opened through A, used only through B for five of A's grace periods: A asks the impalad each time
/// its grace runs out, hears that the session was used, and keeps it. Once nobody uses it, it is closed
/// upstream exactly once, within about one grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_used_through_another_instance_outlives_the_openers_grace() {
    let mock = mocks(1, MockAuth::NoSasl).await.remove(0);
    mock.start_web("127.0.0.1:0").await.unwrap();
    let url = mock.metrics_url();
    let (a, b) = pair(&mock, url.as_deref()).await;
    let s = connect(&a, &ClientAuth::NoSasl).await.open_session(Some("hue"), &[]).await.unwrap();
    let t0 = Instant::now();
    let mut calls = 0;
    while t0.elapsed() < GRACE * 5 {
        call_through(&b, &s).await;
        calls += 1;
        assert!(mock.has_session(&s.guid), "closed while B's clients use it, after {:?}", t0.elapsed());
        tokio::time::sleep(GRACE / 4).await;
    }
    let kept = cleanups(&a, "in_use_elsewhere").await;
    assert!(kept >= 3, "A judged the session at each of its grace periods and kept it: {kept}");
    assert_eq!(cleanups(&a, "closed").await + cleanups(&b, "closed").await, 0);
    println!("{calls} calls through B over {:?}: A kept the session {kept} times", t0.elapsed());
    let idle_from = Instant::now();
    let m = mock.clone();
    eventually("the unused session is closed upstream", move || !m.has_session(&s.guid)).await;
    let closed = cleanups(&a, "closed").await + cleanups(&b, "closed").await;
    assert_eq!(closed, 1, "closed once, by one instance");
    println!("unused from then on: closed upstream {:?} later (grace {GRACE:?})", idle_from.elapsed());
    let (pa, pb) = (a.proxy.clone(), b.proxy.clone());
    eventually("both instances forget it", move || pa.session_count() == 0 && pb.session_count() == 0).await;
}

/// Without the impalad's word (no `metrics_url`), an instance never closes a session: it forgets it
/// (impalad's own timeouts end it), and a client that comes back through it is found again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_backends_word_a_session_is_forgotten_not_closed() {
    let mock = mocks(1, MockAuth::NoSasl).await.remove(0);
    let (a, b) = pair(&mock, None).await;
    let s = connect(&a, &ClientAuth::NoSasl).await.open_session(None, &[]).await.unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < GRACE * 3 {
        call_through(&b, &s).await;
        tokio::time::sleep(GRACE / 4).await;
    }
    assert!(mock.has_session(&s.guid), "never closed without the backend's word");
    let pa = a.proxy.clone();
    eventually("A forgot it", move || pa.session_count() == 0).await;
    assert_eq!(cleanups(&a, "left_to_server").await, 1);
    assert_eq!(cleanups(&a, "closed").await + cleanups(&b, "closed").await, 0);
    call_through(&a, &s).await;
    assert_eq!(a.proxy.session_count(), 1, "found again by one lookup");
}

/// A session closed through B is absent from the impalad's list: A, which opened it, forgets it at its
/// grace without a call. The impalad's page unreadable: nothing is closed that round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_elsewhere_is_forgotten_and_no_word_closes_nothing() {
    let mock = mocks(1, MockAuth::NoSasl).await.remove(0);
    mock.start_web("127.0.0.1:0").await.unwrap();
    let url = mock.metrics_url();
    let (a, b) = pair(&mock, url.as_deref()).await;
    let s = connect(&a, &ClientAuth::NoSasl).await.open_session(None, &[]).await.unwrap();
    connect(&b, &ClientAuth::NoSasl).await.close_session(&s).await.unwrap();
    let pa = a.proxy.clone();
    eventually("A forgets the session closed through B", move || pa.session_count() == 0).await;
    assert_eq!(cleanups(&a, "gone").await, 1);
    // A web port that does not answer: the session stays, on the impalad and in the table.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jsonmetrics", l.local_addr().unwrap())
    };
    let c = proxy(std::slice::from_ref(&mock), BackendTransport::Nosasl, |c| quick_cleanup(c, Some(&dead))).await;
    let s = connect(&c, &ClientAuth::NoSasl).await.open_session(None, &[]).await.unwrap();
    tokio::time::sleep(GRACE * 3).await;
    assert!(mock.has_session(&s.guid) && c.proxy.session_count() == 1, "no word, no close, no forgetting");
}
