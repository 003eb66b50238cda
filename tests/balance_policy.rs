//! Load and recovery (issue 17) through real sockets, with the mock impalads' own session counts as
//! ground truth: an impalad whose admission queue grows (its `/jsonmetrics`, as impalad serves it) gets
//! fewer new sessions; a backend that comes back ramps up over `health.slow_start` instead of taking
//! every new session at once; `health.eject_after` broken exchanges in a row take a backend down long
//! before the next probe. Every figure is printed (`cargo test --test balance_policy -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hs2_proxy::admin::api::{BackendJson, BackendsJson};
use hs2_proxy::config::{BackendTransport, Config, HttpUrl};
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::server::ProxyHandle;

const POOL: &str = "root.default";

async fn backend_view(proxy: &ProxyHandle, mock_addr: &str) -> BackendJson {
    let admin = proxy.admin_addr.expect("admin listener").to_string();
    let (status, body) = hs2_proxy::cli_admin::http(&admin, "GET", "/api/backends", None).await.expect("admin answers");
    assert_eq!(status, 200, "{body}");
    let all: BackendsJson = serde_json::from_str(&body).expect("backends JSON");
    all.backends.into_iter().find(|b| b.address == mock_addr).expect("the backend is listed")
}

/// Polls the admin API until `f` holds for the backend at `addr`; returns that view.
async fn wait_view(proxy: &ProxyHandle, addr: &str, what: &str, f: impl Fn(&BackendJson) -> bool) -> BackendJson {
    for _ in 0..400 {
        let b = backend_view(proxy, addr).await;
        if f(&b) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} never reached: {what}; last view: {:?}", backend_view(proxy, addr).await);
}

/// Opens `n` sessions one after another; returns how many landed on each mock (counted on the mocks).
async fn open_and_count(
    client: &mut Hs2Client,
    mocks: &[MockImpalad],
    n: usize,
    kept: &mut Vec<HandleId>,
) -> Vec<usize> {
    let before: Vec<usize> = mocks.iter().map(|m| m.sessions().len()).collect();
    for _ in 0..n {
        kept.push(client.open_session(None, &[]).await.expect("session opens"));
    }
    mocks.iter().zip(before).map(|(m, b)| m.sessions().len() - b).collect()
}

async fn with_web(n: usize) -> Vec<MockImpalad> {
    let mocks = mocks(n, MockAuth::NoSasl).await;
    for m in &mocks {
        m.start_web("127.0.0.1:0").await.expect("web port");
    }
    mocks
}

fn metrics_urls(mocks: &[MockImpalad]) -> impl FnOnce(&mut Config) {
    let urls: Vec<Option<HttpUrl>> = mocks.iter().map(|m| m.metrics_url().and_then(|u| HttpUrl::parse(&u))).collect();
    move |c: &mut Config| {
        for (b, u) in c.backends.iter_mut().zip(urls) {
            b.metrics_url = u;
        }
    }
}

/// 30 new sessions onto 3 idle impalads, impalad 0 reporting `queued` queries in its admission queue
/// (and 1 running): how many impalad 0 gets.
async fn share_with_queue(queued: u64) -> (usize, BackendJson) {
    let mocks = with_web(3).await;
    mocks[0].set_admission(POOL, 1, queued);
    let proxy = proxy(&mocks, BackendTransport::Nosasl, metrics_urls(&mocks)).await;
    let addr0 = mocks[0].local_addr().to_string();
    wait_view(&proxy, &addr0, "the admission figures are read", |b| b.load.queued == Some(queued)).await;
    let mut client = connect(&proxy, &ClientAuth::NoSasl).await;
    let got = open_and_count(&mut client, &mocks, 30, &mut Vec::new()).await;
    (got[0], backend_view(&proxy, &addr0).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impalad_whose_admission_queue_grows_gets_fewer_new_sessions() {
    let mut shares = Vec::new();
    for queued in [0, 1, 2, 3, 6] {
        let (got, view) = share_with_queue(queued).await;
        let l = &view.load;
        // The others fill up to impalad 0's load first: x + extra = (30 - x) / 2.
        let extra = 1 + 4 * queued as i64;
        let expected = ((30 - 2 * extra) as f64 / 3.0).max(0.0);
        println!(
            "impalad 0 with 1 running and {queued} queued: {got:>2} of 30 new sessions (formula: {expected:.1}; \
             its load: sessions {:?} + queries {:?} + running {:?} + 4 x queued {:?} = {}, score {:.1})",
            l.impalad_sessions, l.impalad_queries, l.admitted_running, l.queued, l.load, l.score
        );
        // The impalad's figure lags a session opened while its page was read; never below our own count.
        let sessions = l.impalad_sessions.unwrap().max(l.sessions);
        assert_eq!(l.load, sessions + l.admitted_running.unwrap() + 4 * queued, "{l:?}");
        assert!((got as f64 - expected).abs() <= 1.0, "{got} vs {expected}");
        shares.push(got);
    }
    assert!(shares.windows(2).all(|w| w[1] < w[0] || w[1] == 0), "a longer queue, fewer new sessions: {shares:?}");

    // On a live cluster: the queue grows after the sessions spread, then drains.
    let mocks = with_web(3).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, metrics_urls(&mocks)).await;
    let addr0 = mocks[0].local_addr().to_string();
    let mut client = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut kept = Vec::new();
    let even = open_and_count(&mut client, &mocks, 30, &mut kept).await;
    mocks[0].set_admission(POOL, 2, 3);
    wait_view(&proxy, &addr0, "the queue is seen", |b| b.load.queued == Some(3)).await;
    let queued = open_and_count(&mut client, &mocks, 30, &mut kept).await;
    mocks[0].set_admission(POOL, 0, 0);
    wait_view(&proxy, &addr0, "the queue drained", |b| b.load.queued == Some(0)).await;
    let drained = open_and_count(&mut client, &mocks, 30, &mut kept).await;
    println!(
        "30 sessions on an idle cluster: {even:?}; impalad 0 queues 3 (+2 running): {queued:?}; drained: {drained:?}"
    );
    assert_eq!(even, vec![10, 10, 10]);
    // Loads 10+2+12 = 24 vs 10 and 10: the others take 14 each before impalad 0 gets one.
    assert!(queued[0] <= 2 && queued[1] >= 13 && queued[2] >= 13, "{queued:?}");
    assert!(drained[0] >= 12, "once drained it catches up: {drained:?}");
}

/// Three impalads; impalad 0 dies while the others fill up to 30 sessions each, then comes back on its
/// address: how the next 30 new sessions spread with `slow_start`, and how 60 more spread once it ended.
async fn recovery(slow_start: Duration) -> (Vec<usize>, f64, Option<Vec<usize>>) {
    let mocks = mocks(3, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.health.interval = Duration::from_millis(50);
        c.health.timeout = Duration::from_millis(500);
        (c.health.rise, c.health.fall) = (2, 2);
        c.health.slow_start = slow_start;
        c.sessions.move_on_failure = false;
    })
    .await;
    let addr0 = mocks[0].local_addr().to_string();
    let mut client = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut kept = Vec::new();
    open_and_count(&mut client, &mocks, 30, &mut kept).await;
    mocks[0].stop().await;
    wait_view(&proxy, &addr0, "down", |b| b.observed == "down").await;
    open_and_count(&mut client, &mocks, 40, &mut kept).await;
    let reborn = MockImpalad::start(&addr0, MockConfig { name: "mock-0 again".into(), ..MockConfig::default() })
        .await
        .expect("the port is free again");
    let all = vec![reborn, mocks[1].clone(), mocks[2].clone()];
    wait_view(&proxy, &addr0, "up", |b| b.observed == "up").await;
    let t0 = Instant::now();
    let first = open_and_count(&mut client, &all, 30, &mut kept).await;
    let ramp = backend_view(&proxy, &addr0).await.load.weight_percent;
    println!("  first 30 after recovery took {:?}; weight after them: {ramp:.0}%", t0.elapsed());
    if slow_start.is_zero() {
        return (first, ramp, None);
    }
    wait_view(&proxy, &addr0, "slow start ended", |b| b.load.weight_percent >= 100.0).await;
    let later = open_and_count(&mut client, &all, 60, &mut kept).await;
    let totals: Vec<usize> = all.iter().map(|m| m.sessions().len()).collect();
    println!("  60 more after slow start: {later:?}; sessions on the impalads now: {totals:?}");
    (first, ramp, Some(totals))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_backend_ramps_up_over_slow_start() {
    println!("without slow start:");
    let (flood, _, _) = recovery(Duration::ZERO).await;
    println!("  first 30 new sessions after recovery: {flood:?} (impalad 0 first)");
    println!("with health.slow_start = 3s:");
    let (ramped, weight, totals) = recovery(Duration::from_secs(3)).await;
    println!("  first 30 new sessions after recovery: {ramped:?}");
    assert_eq!(flood[0], 30, "without slow start the empty backend takes every new session: {flood:?}");
    // At a tenth of its weight (a little more by the end of the burst) it may hold about a tenth of the
    // others' 30 sessions each, then gets about 1 in 21.
    assert!(weight < 40.0, "the burst ran early in the ramp: {weight}%");
    assert!((1..=8).contains(&ramped[0]), "a small share at first: {ramped:?}");
    let totals = totals.expect("measured after slow start");
    let (min, max) = (totals.iter().min().unwrap(), totals.iter().max().unwrap());
    assert!(max - min <= 2, "after slow start it takes its full share and levels with the others: {totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_exchanges_in_a_row_eject_a_backend_before_the_next_probe() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = proxy(&mocks, BackendTransport::Nosasl, |c| {
        c.health.interval = Duration::from_secs(3600);
    })
    .await;
    let eject_after = proxy.proxy.config().health.eject_after;
    assert_eq!(eject_after, 5, "the default");
    let addr0 = mocks[0].local_addr().to_string();
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let mut session = None;
    while session.is_none() {
        let s = c.open_session(None, &[]).await.unwrap();
        session = mocks[0].has_session(&s.guid).then_some(s);
    }
    let s = session.unwrap();
    // impalad 0 now drops every ExecuteStatement without a reply; GetInfo (and so the probes) still works.
    mocks[0].set_hang_up_on(Some("ExecuteStatement"));
    let failed_once =
        |text: &str| text.starts_with(&format!("hs2-proxy: backend {addr0} failed during ExecuteStatement"));
    for _ in 0..eject_after - 1 {
        let text = error_text(c.execute(&s, "select 1").await);
        assert!(failed_once(&text), "{text}");
    }
    let b = backend_view(&proxy, &addr0).await;
    assert_eq!((b.observed.as_str(), b.load.broken_exchanges), ("up", eject_after - 1), "the early probes pass: {b:?}");
    assert!(c.get_info(&s, TGetInfoType::CLI_SERVER_NAME).await.is_ok(), "a good exchange");
    assert_eq!(backend_view(&proxy, &addr0).await.load.broken_exchanges, 0, "it ends the streak");

    let t0 = Instant::now();
    let mut last = String::new();
    for _ in 0..eject_after {
        last = error_text(c.execute(&s, "select 1").await);
        assert!(failed_once(&last), "{last}");
    }
    let b = wait_view(&proxy, &addr0, "ejected", |b| b.observed == "down").await;
    println!(
        "ejected {:?} after the first of {eject_after} broken calls (probe interval 1 h); reason: {}",
        t0.elapsed(),
        b.reason
    );
    println!("the client saw: {last}");
    assert!(b.reason.starts_with("ejected: 5 broken exchanges in a row on live traffic"), "{}", b.reason);
    assert_eq!((b.load.ejections, b.eligible), (1, false));
    let metrics = proxy.proxy.metrics().encode(&proxy.proxy.figures()).unwrap();
    let series = hs2_proxy::metrics::backend_series("backend_ejections_total", &addr0);
    assert_eq!(hs2_proxy::metrics::sample(&metrics, &series), Some(1.0), "{metrics}");
    for _ in 0..4 {
        let fresh = c.open_session(None, &[]).await.unwrap();
        assert!(mocks[1].has_session(&fresh.guid), "new sessions go to the other backend");
    }
    // The session on the ejected backend moves on its next call (sessions.move_on_failure).
    let on_1 = mocks[1].sessions().len();
    assert!(c.execute(&s, "select 1").await.is_ok(), "its next statement runs elsewhere");
    assert_eq!(mocks[1].sessions().len(), on_1 + 1, "re-opened on impalad 1");
    let b = backend_view(&proxy, &addr0).await;
    assert_eq!(b.observed, "down", "only probes bring it back (rise good ones, interval apart)");
}

/// Checking a PLAIN client's password must not turn the tie rotor: with two backends, a client's check
/// and its OpenSession would otherwise take two turns, and every client whose session opens before the
/// last one is learned lands on the same backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_do_not_skew_the_choice_between_equal_backends() {
    let mut mocks = Vec::new();
    for i in 0..2 {
        let cfg = MockConfig {
            name: format!("mock-{i}"),
            auth: MockAuth::Plain { users: None },
            // OpenSessions stay on their way while the next clients arrive: equal loads, the rotor decides.
            delay: Duration::from_millis(400),
            ..MockConfig::default()
        };
        mocks.push(MockImpalad::start("127.0.0.1:0", cfg).await.unwrap());
    }
    let proxy = proxy(&mocks, BackendTransport::Sasl, |c| c.health.interval = Duration::from_secs(3600)).await;
    let mut opens = Vec::new();
    for i in 0..6 {
        let addr = proxy.local_addr;
        opens.push(tokio::spawn(async move {
            let mut c = Hs2Client::connect(addr, &plain(&format!("user{i}"), "pw")).await.unwrap();
            c.open_session(None, &[]).await.unwrap()
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for o in opens {
        o.await.unwrap();
    }
    let counts: Vec<usize> = mocks.iter().map(|m| m.sessions().len()).collect();
    assert_eq!(counts, vec![3, 3], "six concurrent sessions over two equal backends");
}
