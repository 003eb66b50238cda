//! A rolling restart of the three Spark servers, through hs2-proxy and through HAProxy, with sessions
//! that hold state and clients that run queries throughout.
//!
//! Through hs2-proxy, per server: `hs2-proxy evacuate ADDR`, wait for `done`, ask the server directly
//! about every session it held (none is left), check every session, restart the server (a clean stop, a
//! start on the same port), wait until the proxy sees it up, `hs2-proxy undrain ADDR`, check again. Every
//! check must pass. Through HAProxy (the baseline): `set server ... state drain`, restart, `state ready`,
//! check: sessions of the restarted server are gone, and the loop clients see errors; both are counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hs2_proxy::hs2::handle::{Guid, HandleId};
use hs2_proxy::server::ProxyHandle;

use super::haproxy::HaProxy;
use super::load::{Load, Tally};
use super::servers::{auth, Server, Servers};
use super::sessions::{check_all, holds_session, Tracked};
use super::{cli, evacuation_end, note, observed, proxy_for, session_count};

/// How long one evacuation may take: sessions wait for their open operations, and the loop clients'
/// queries take well under a second each.
const EVACUATION_DEADLINE: &str = "60s";

async fn open_all(addr: std::net::SocketAddr) -> Vec<Tracked> {
    let mut all = Vec::new();
    for i in 1..=session_count() {
        all.push(Tracked::open(addr, i).await);
    }
    all
}

/// The sessions the proxy routes to `server`, each with its handle there.
fn held_on(proxy: &ProxyHandle, server: &Server) -> Vec<(Guid, HandleId)> {
    let addr = server.addr.to_string();
    proxy
        .proxy
        .session_ids()
        .into_iter()
        .filter(|g| proxy.proxy.session_backend(g).as_deref() == Some(addr.as_str()))
        .filter_map(|g| proxy.proxy.with_session(&g, |e| (g, e.upstream_handle(g))))
        .collect()
}

fn spread(proxy: &ProxyHandle, sessions: &[Tracked]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for s in sessions {
        *counts.entry(proxy.proxy.session_backend(&s.handle.guid).unwrap_or_default()).or_default() += 1;
    }
    counts
}

fn report_load(via: &str, tallies: &[Tally]) {
    for t in tallies {
        note(format!("{via}: {}", t.line()));
        for e in t.errors.iter().take(5) {
            note(format!("    {}", e.chars().take(160).collect::<String>()));
        }
    }
}

pub async fn through_hs2_proxy(servers: &Servers) {
    let t0 = Instant::now();
    let proxy = proxy_for(servers).await;
    let mut sessions = open_all(proxy.local_addr).await;
    let spread_before = spread(&proxy, &sessions);
    assert_eq!(check_all(&mut sessions).await, vec![], "every session answers before the restart");
    let load = Load::start(proxy.local_addr, &servers.root).await;
    let mut moved = 0;
    for server in &servers.servers {
        moved += restart_one(&proxy, servers, server, &mut sessions).await;
    }
    let tallies = load.stop().await;
    let view = super::sessions_view(&proxy).await;
    let moves: u32 = view.sessions.iter().map(|s| s.moves).sum();
    note(format!(
        "hs2-proxy rolling restart of {} servers: {} sessions {spread_before:?}, every one answered with its \
         database and setting after each of {} steps; {moved} moves by evacuation ({moves} in /api/sessions); {:.1}s",
        servers.servers.len(),
        sessions.len(),
        servers.servers.len() * 2,
        t0.elapsed().as_secs_f64()
    ));
    report_load("hs2-proxy", &tallies);
    let errors: usize = tallies.iter().map(|t| t.errors.len()).sum();
    proxy.shutdown();
    assert_eq!(errors, 0, "clients saw errors through hs2-proxy during the rolling restart: {tallies:#?}");
}

/// Evacuates, restarts and undrains one server; returns how many sessions the evacuation moved.
async fn restart_one(proxy: &ProxyHandle, servers: &Servers, server: &Server, sessions: &mut [Tracked]) -> u64 {
    let addr = server.addr.to_string();
    let held = held_on(proxy, server);
    let t0 = Instant::now();
    cli(proxy, &["evacuate", &addr, "--deadline", EVACUATION_DEADLINE]);
    let b = evacuation_end(proxy, &addr, Duration::from_secs(90)).await;
    let e = b.evacuation.expect("progress");
    assert_eq!(e.state, "done", "the evacuation of {addr}: {e:?}");
    let evacuated = t0.elapsed();
    let mut direct = super::hue::connect(server.addr, &auth("probe")).await.expect("connect directly");
    for (guid, handle) in &held {
        let held_still = holds_session(&mut direct, handle).await;
        assert_eq!(held_still, Ok(false), "{addr} still holds session {guid} after its evacuation");
    }
    drop(direct);
    let failed = check_all(sessions).await;
    assert_eq!(failed, vec![], "sessions after the evacuation of {addr}");
    let restarted = servers.restart(server).await;
    observed(proxy, &addr, "up").await;
    cli(proxy, &["undrain", &addr]);
    let failed = check_all(sessions).await;
    assert_eq!(failed, vec![], "sessions after the restart of {addr}");
    note(format!(
        "  {addr}: evacuated in {:.2}s ({} moved, {} held before, none left on it), restarted in {:.1}s",
        evacuated.as_secs_f64(),
        e.moved,
        held.len(),
        restarted.as_secs_f64()
    ));
    e.moved
}

pub async fn through_haproxy(servers: &Servers) {
    let t0 = Instant::now();
    let haproxy = HaProxy::start(servers);
    for s in &servers.servers {
        haproxy.wait_up(s.index).await;
    }
    let mut sessions = open_all(haproxy.addr).await;
    assert_eq!(check_all(&mut sessions).await, vec![], "every session answers through HAProxy at first");
    let load = Load::start(haproxy.addr, &servers.root).await;
    let mut lost_after = Vec::new();
    for server in &servers.servers {
        haproxy.set_state(server.index, "drain");
        servers.restart(server).await;
        haproxy.set_state(server.index, "ready");
        haproxy.wait_up(server.index).await;
        let failed = check_all(&mut sessions).await;
        lost_after.push(failed.len());
        if let Some((i, why)) = failed.first() {
            note(format!("  HAProxy, after restarting {}: session {i}: {}", server.addr, first_words(why)));
        }
    }
    let tallies = load.stop().await;
    note(format!(
        "HAProxy rolling restart (drain, restart, ready): of {} sessions, {:?} no longer answered after each \
         restart; {:.1}s",
        sessions.len(),
        lost_after,
        t0.elapsed().as_secs_f64()
    ));
    report_load("HAProxy", &tallies);
    assert!(lost_after.last().is_some_and(|n| *n > 0), "the baseline lost no session: the test shows nothing");
}

fn first_words(text: &str) -> String {
    text.chars().take(120).collect()
}
