//! One task per backend: probe at once, then every `health.interval` (and early when live traffic saw a
//! failure), apply the evidence, learn the server's kind, and remove a drained backend that left the
//! configuration once it holds no session. (The impalad's own figures are read by [`super::load`].)
//!
//! The first probe runs as soon as the task starts, so a backend's kind (which decides how unknown
//! handles are looked up and which delegation key is sent) is known within one probe, not one interval.
//! Early probes only look at a backend that is not down: a down one, passively ejected above all, comes
//! back on the regular schedule, after `rise` probes `interval` apart; and a probe that began before an
//! ejection says nothing about the backend after it, so its "alive" is not counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::stopped;
use crate::backend::health::{Evidence, Observed};
use crate::backend::probe::{self, ProbeTarget};
use crate::backend::{Backend, ProbeReport};
use crate::proxy::Proxy;

/// Starts the health task of `backend`.
pub fn spawn(proxy: &Proxy, backend: Arc<Backend>) {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut stop = proxy.stop_signal();
        let interval = proxy.config().health.interval;
        loop {
            if !round(&proxy, &backend).await {
                return;
            }
            let next = Instant::now() + interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = backend.probe_now.notified() => {
                        if backend.health().observed != Observed::Down {
                            break;
                        }
                    }
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    });
}

/// One probe round; false when the task should end (the backend was removed).
async fn round(proxy: &Proxy, backend: &Arc<Backend>) -> bool {
    let creds = proxy.service_credentials();
    let timeout = proxy.config().health.timeout;
    let target = ProbeTarget { endpoint: backend.pool.endpoint(), creds: &creds, timeout };
    let ejections = backend.ejections();
    let found = probe::probe(&target).await;
    let (outcome, result) = match &found.evidence {
        Evidence::Alive => ("alive".to_string(), "alive"),
        Evidence::ShuttingDown(t) => (format!("shutting down: {t}"), "shutting_down"),
        Evidence::Failed(t) | Evidence::Unreachable(t) | Evidence::Ejected(t) => (format!("failed: {t}"), "failed"),
    };
    proxy.metrics().probe(&backend.addr, result, found.latency);
    *backend.last_probe.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(ProbeReport { at: SystemTime::now(), latency: found.latency, outcome });
    if let Some(kind) = found.kind {
        backend.set_detected_kind(kind);
    }
    let stale = found.evidence == Evidence::Alive && backend.ejections() != ejections;
    if !stale {
        proxy.apply_evidence(backend, found.evidence);
    }
    if backend.removing.load(Ordering::Relaxed) && proxy.remove_backend(backend.id) {
        tracing::info!(backend = %backend.addr, "drained backend removed");
        return false;
    }
    true
}
