//! Two hs2-proxy instances in front of the same Spark Thrift Servers, configured by address only (no
//! `kind`, as `--backend` does): sessions opened through instance A are used through instance B, and every
//! call must reach the server that holds the session, asked directly. This is where the misroute was
//! found: Spark answers GetInfo for any handle, so a proxy that took it for an impalad believed the first
//! server it asked.
//!
//! Spark closes a session when the connection that opened it closes, if no later session was opened on that
//! connection; that connection belongs to the instance the session was opened through: restarting B costs
//! nothing, stopping A ends the last session opened on each of A's upstream connections (and B then
//! answers for those with a text Hue heals on, never with another server's reply).

use super::*;
use crate::common::instances::lookups;
use hs2_proxy::config::BackendKind;

/// Sessions opened through A in each mode: two per server.
const SESSIONS: usize = 4;

/// The one server of `mode` that holds `s`, asked directly; `None` when none does.
async fn owner_asked_directly(direct: &mut [Hs2Client], servers: &[&peers::Server], s: &HandleId) -> Option<usize> {
    let mut owners = Vec::new();
    for (i, c) in direct.iter_mut().enumerate() {
        let mut answer = holds_session(c, s).await;
        // Spark answers a NullPointerException for a session it is closing right now: ask again.
        for _ in 0..40 {
            match &answer {
                Err(e) if e.contains("NullPointerException") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    answer = holds_session(c, s).await;
                }
                _ => break,
            }
        }
        match answer {
            Ok(true) => owners.push(i),
            Ok(false) => {}
            Err(e) => panic!("asking {} about session {}: {e}", servers[i].addr, s.guid),
        }
    }
    assert!(owners.len() <= 1, "session {} is held by servers {owners:?}", s.guid);
    owners.first().copied()
}

/// A statement in `s` through `via`, fetched through `via` on another connection, then the check that
/// `via` routes `s` to the server that holds it.
async fn use_through(via: &ProxyHandle, auth: &ClientAuth, s: &HandleId, n: i64, owner: SocketAddr) {
    let op = connect(via.local_addr, auth).await.execute(s, &format!("select id from range({n})")).await;
    let op = op.unwrap_or_else(|e| panic!("execute through the second instance: {e}"));
    let mut c = connect(via.local_addr, auth).await;
    c.wait_finished(&op).await.expect("the statement finishes");
    assert_eq!(hue::fetch_all(&mut c, &op).await.expect("fetch"), (0..n).collect::<Vec<_>>());
    c.close_operation(&op).await.expect("close the operation");
    assert_eq!(via.proxy.session_backend(&s.guid), Some(owner.to_string()), "the instance's table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn ha_two_instances_route_spark_sessions_to_their_server() {
    let _t = Timed::start("ha_two_instances_route_spark_sessions_to_their_server");
    let peers = peers().await;
    for mode in [Mode::Sasl, Mode::NoSasl] {
        let servers = peers.of(mode);
        let auth = mode.auth("ha");
        let a = proxy_for(peers, mode).await;
        let mut b = proxy_for(peers, mode).await;
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            let mut c = connect(a.local_addr, &auth).await;
            sessions.push(c.open_session(Some("ha"), &[]).await.expect("OpenSession through A"));
        }
        let mut direct = Vec::new();
        for s in &servers {
            direct.push(connect(s.addr, &auth).await);
        }
        let mut owners = Vec::new();
        for s in &sessions {
            let i = owner_asked_directly(&mut direct, &servers, s).await.expect("a server holds the session");
            owners.push(servers[i].addr);
        }
        // Twice through B: the first call of each session finds its owner, every later one goes straight.
        let mut before = lookups(&b).await;
        for (round, expected) in [SESSIONS as u64, 0].into_iter().enumerate() {
            for (k, (s, owner)) in sessions.iter().zip(&owners).enumerate() {
                use_through(&b, &auth, s, (k + round + 1) as i64, *owner).await;
            }
            let now = lookups(&b).await;
            let d = now.since(&before);
            assert_eq!((d.found, d.missed, d.ambiguous, d.timed_out), (expected, 0, 0, 0), "{mode:?} round {round}");
            note(format!(
                "{} HA: round {} through B: {} lookups for {} calls on {SESSIONS} sessions opened through A",
                mode.name(),
                round + 1,
                d.found,
                d.calls
            ));
            before = now;
        }
        for opener in [Opener::Closed, Opener::KeptOpen] {
            let spread = hue::Endpoints::spread(&[a.local_addr, b.local_addr]);
            let steps = hue::scenario_on(&spread, &mode.auth("hue"), "hue", opener).await;
            let table = hue::table(&steps);
            assert!(steps.iter().all(|s| s.outcome.is_ok()), "{mode:?} {opener:?} over A and B:\n{table}");
            note(format!("{} HA: Hue pattern over A and B (opener {opener:?}): {} steps ok", mode.name(), steps.len()));
        }
        // B restarts: the new B finds every session again, on the right server.
        b.shutdown();
        drop(b);
        b = proxy_for(peers, mode).await;
        for (k, (s, owner)) in sessions.iter().zip(&owners).enumerate() {
            use_through(&b, &auth, s, (k + 5) as i64, *owner).await;
        }
        let d = lookups(&b).await;
        assert_eq!((d.found, d.missed, d.ambiguous), (SESSIONS as u64, 0, 0), "{mode:?}: after B restarted");
        note(format!(
            "{} HA: B restarted: {} lookups for {} calls, every call on its server",
            mode.name(),
            d.found,
            d.calls
        ));
        stopping_the_opener_ends_its_sessions(a, &b, &auth, &sessions, &mut direct, &servers, mode).await;
        b.shutdown();
    }
}

/// A stops. Spark closes a session when its connection closes only if it was the *last* session opened on
/// that connection (Hive keeps one session handle per connection context, and CloseSession clears it):
/// the proxy reuses upstream connections, so of the sessions opened through A only the last one per
/// upstream connection dies with A. One more session per server, opened through A just before it stops,
/// is such a last one. After A is gone, every session either still works through B, on its own server,
/// or gets a text Hue heals on: never another server's reply.
async fn stopping_the_opener_ends_its_sessions(
    a: ProxyHandle,
    b: &ProxyHandle,
    auth: &ClientAuth,
    sessions: &[HandleId],
    direct: &mut [Hs2Client],
    servers: &[&peers::Server],
    mode: Mode,
) {
    let mut last = Vec::new();
    for _ in servers {
        last.push(connect(a.local_addr, auth).await.open_session(Some("ha"), &[]).await.expect("OpenSession on A"));
    }
    assert_eq!(a.shutdown_gracefully().await, 0, "A drains");
    // What the process's exit does to its upstream connections (in-process, its tasks may outlive the handle).
    for backend in a.proxy.backends() {
        backend.pool.close_all_idle();
    }
    drop(a);
    let t0 = Instant::now();
    for s in &last {
        while owner_asked_directly(direct, servers, s).await.is_some() {
            assert!(t0.elapsed() < Duration::from_secs(30), "{mode:?}: Spark kept the last session of A's connection");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let gone_after = t0.elapsed();
    let (mut alive, mut died) = (0, 0);
    for (k, s) in sessions.iter().chain(&last).enumerate() {
        match owner_asked_directly(direct, servers, s).await {
            Some(i) => {
                use_through(b, auth, s, k as i64 + 1, servers[i].addr).await;
                alive += 1;
            }
            None => {
                let text = status_text(connect(b.local_addr, auth).await.execute(s, "select 1").await);
                assert!(heals_hue(&text), "{mode:?}: {text}");
                died += 1;
            }
        }
    }
    note(format!(
        "{} HA: A stopped: Spark closed {died} of {} sessions opened through A within {:.0} ms (the last opened on \
         each of A's upstream connections); {alive} live on and B routes them; the closed ones get a Hue-healing text",
        mode.name(),
        sessions.len() + last.len(),
        gone_after.as_secs_f64() * 1000.0
    ));
}

/// The control: Spark forced to be taken for an impalad (`kind = "impala"`), the mistake the detection
/// fixed. Both servers then claim every handle in GetInfo, and the proxy treats a handle claimed twice as
/// unknown: the client gets `Invalid session id` (Hue opens a new session), never another server's reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn ha_spark_taken_for_impala_is_refused_not_misrouted() {
    let _t = Timed::start("ha_spark_taken_for_impala_is_refused_not_misrouted");
    let peers = peers().await;
    let mode = Mode::NoSasl;
    let auth = mode.auth("ha");
    let a = proxy_for(peers, mode).await;
    let mut c = common::base_config();
    c.backend_auth.transport = BackendTransport::Nosasl;
    c.backends = peers
        .of(mode)
        .iter()
        .map(|s| BackendConfig { kind: Some(BackendKind::Impala), ..BackendConfig::new(&s.addr.to_string()) })
        .collect();
    let wrong = server::start(c).await.expect("proxy starts");
    let s = connect(a.local_addr, &auth).await.open_session(Some("ha"), &[]).await.expect("OpenSession");
    let text = status_text(connect(wrong.local_addr, &auth).await.execute(&s, "select 1").await);
    assert_eq!(text, hs2_proxy::hs2::reply::invalid_session_text(&s.guid));
    let d = lookups(&wrong).await;
    assert_eq!((d.found, d.ambiguous), (0, 1), "both servers claimed it: {d:?}");
    note(format!(
        "HA control: Spark forced to kind=impala: lookup ambiguous ({d:?}); the client got '{}'",
        short(&text)
    ));
    connect(a.local_addr, &auth).await.close_session(&s).await.expect("CloseSession through A");
    wrong.shutdown();
    a.shutdown();
}

/// Clean-up across instances on Spark: A's clients leave a session alone for many of A's grace periods
/// while B's clients use it. Spark ends a session with its opening connection, which A holds pinned, so
/// A must neither close the session nor forget it (forgetting unpins the connection, which then closes
/// when idle): A keeps it, and the session lives on Spark throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real peer (Spark Thrift Server): run by scripts/test.sh"]
async fn ha_spark_session_used_through_b_outlives_as_grace() {
    let _t = Timed::start("ha_spark_session_used_through_b_outlives_as_grace");
    let peers = peers().await;
    let mode = Mode::NoSasl;
    let auth = mode.auth("ha");
    let grace = Duration::from_millis(500);
    let mut config = common::base_config();
    config.backend_auth.transport = BackendTransport::Nosasl;
    config.backends = peers.of(mode).iter().map(|s| BackendConfig::new(&s.addr.to_string())).collect();
    config.sessions.disconnected_grace = grace;
    config.sessions.reap_interval = Duration::from_millis(50);
    config.pool.idle_timeout = Duration::from_secs(1);
    let a = server::start(config).await.expect("proxy starts");
    let b = proxy_for(peers, mode).await;
    let s = connect(a.local_addr, &auth).await.open_session(Some("ha"), &[]).await.expect("OpenSession through A");
    let servers = peers.of(mode);
    let mut direct = Vec::new();
    for srv in &servers {
        direct.push(connect(srv.addr, &auth).await);
    }
    let owner = servers[owner_asked_directly(&mut direct, &servers, &s).await.expect("held")].addr;
    let t0 = Instant::now();
    let mut calls = 0;
    // Past A's grace many times, and past its pool's idle timeout (an unpinned connection would close).
    while t0.elapsed() < grace * 8 {
        use_through(&b, &auth, &s, 3, owner).await;
        calls += 1;
        tokio::time::sleep(grace / 2).await;
    }
    assert!(owner_asked_directly(&mut direct, &servers, &s).await.is_some(), "Spark still holds the session");
    let text = crate::common::instances::metrics_text(&a).await;
    let of = |r: &str| {
        hs2_proxy::metrics::sample(&text, &format!("hs2_proxy_session_cleanups_total{{result=\"{r}\"}}")).unwrap_or(0.0)
    };
    assert!(of("kept") >= 3.0 && of("closed") == 0.0 && of("left_to_server") == 0.0, "{text}");
    assert_eq!(a.proxy.session_count(), 1, "A keeps the session and its pinned connection");
    note(format!(
        "nosasl HA clean-up: {calls} calls through B over {:.1}s (A's grace {grace:?}): A kept the session {} times; \
         Spark still holds it",
        t0.elapsed().as_secs_f64(),
        of("kept")
    ));
    connect(b.local_addr, &auth).await.close_session(&s).await.expect("CloseSession through B");
    a.shutdown();
    b.shutdown();
}
