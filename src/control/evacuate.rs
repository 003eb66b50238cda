//! Evacuating a backend for a rolling restart (`hs2-proxy evacuate HOST:PORT`, `POST
//! /api/backends/{addr}/evacuate`): the backend takes no new sessions, and each of its sessions moves to
//! another backend (`migrate`) as soon as it has no open operation; at the deadline whatever is left
//! stays and is reported. The progress is the backend's, for the operator view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::stopped;
use crate::backend::evacuation::Progress;
use crate::backend::health::AdminState;
use crate::backend::Backend;
use crate::hs2::handle::Guid;
use crate::migrate::{self, MoveError, Reason};
use crate::proxy::Proxy;
use crate::routing::NotNow;

/// How often sessions that could not move yet (open operations) are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Sessions moved at once.
const MOVES_AT_ONCE: usize = 4;
/// A session whose move failed (each attempt opens a session on a target and replays its state) is tried
/// again after this, doubling up to [`RETRY_FAILED_MAX`]: not every 200 ms against the other backends.
const RETRY_FAILED_FIRST: Duration = Duration::from_secs(1);
const RETRY_FAILED_MAX: Duration = Duration::from_secs(30);

/// Starts evacuating `backend`; `Err` when one is already running.
pub fn start(proxy: &Proxy, backend: Arc<Backend>, deadline: Duration) -> Result<(), String> {
    let progress = Progress {
        state: "running".into(),
        started_at: crate::timefmt::rfc3339(SystemTime::now()),
        deadline_seconds: deadline.as_secs_f64(),
        ..Progress::default()
    };
    if !backend.evacuation.begin(progress) {
        return Err(format!("{} is already being evacuated", backend.addr));
    }
    backend.set_admin(AdminState::Drain);
    proxy.refresh_availability();
    tracing::info!(backend = %backend.addr, deadline = ?deadline, sessions = proxy.load(backend.id).sessions,
        "evacuation started: no new sessions; sessions move as their operations finish");
    let proxy = proxy.clone();
    tokio::spawn(async move { run(proxy, backend, deadline).await });
    Ok(())
}

async fn run(proxy: Proxy, backend: Arc<Backend>, deadline: Duration) {
    let until = Instant::now() + deadline;
    let mut stop = proxy.stop_signal();
    let mut given_up: Vec<Guid> = Vec::new();
    // Sessions whose move failed: when to try again, and the pause after that.
    let mut backoff: HashMap<Guid, (Instant, Duration)> = HashMap::new();
    let state = loop {
        let now = Instant::now();
        let sessions: Vec<Guid> = proxy
            .sessions_on(backend.id)
            .into_iter()
            .filter(|g| !given_up.contains(g) && backoff.get(g).is_none_or(|(at, _)| *at <= now))
            .collect();
        let (mut waiting, mut failed) = (0u64, 0u64);
        for batch in sessions.chunks(MOVES_AT_ONCE) {
            let mut moves = tokio::task::JoinSet::new();
            for guid in batch.iter().copied() {
                let proxy = proxy.clone();
                moves.spawn(async move { (guid, migrate::move_session(&proxy, guid, Reason::Evacuation).await) });
            }
            while let Some(Ok((guid, result))) = moves.join_next().await {
                match result {
                    Ok(_) => backend.evacuation.update(|p| p.moved += 1),
                    Err(MoveError::NotNow(n)) if n.may_change() => waiting += 1,
                    Err(MoveError::NotNow(NotNow::Never(why))) => {
                        given_up.push(guid);
                        backend.evacuation.update(|p| p.unmovable.push(format!("{}: {why}", guid.impala_id())));
                    }
                    Err(MoveError::NotNow(NotNow::Unknown)) => {}
                    Err(_) => {
                        failed += 1;
                        let pause = backoff.get(&guid).map_or(RETRY_FAILED_FIRST, |(_, p)| *p);
                        backoff.insert(guid, (Instant::now() + pause, (pause * 2).min(RETRY_FAILED_MAX)));
                    }
                }
            }
        }
        let left = proxy.load(backend.id).sessions;
        backend.evacuation.update(|p| {
            p.waiting = waiting;
            p.failed += failed;
            p.left = left;
        });
        if left == 0 {
            break "done";
        }
        if Instant::now() >= until {
            break "deadline";
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = stopped(&mut stop) => break "stopped",
        }
    };
    backend.evacuation.update(|p| p.state = state.into());
    let left = proxy.load(backend.id).sessions;
    match state {
        "done" => {
            tracing::info!(backend = %backend.addr, "evacuation done: the backend holds no session of the proxy's")
        }
        _ => tracing::warn!(backend = %backend.addr, state, left, "evacuation ended with sessions left"),
    }
}
