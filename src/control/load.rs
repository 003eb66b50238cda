//! One task per backend with `metrics_url`: reads the impalad's own load (open sessions, registered
//! queries) every `health.interval`, and soon after this instance opens a session anywhere, so that the
//! least-loaded choice sees what the other instances did as well as what this one did. Reads are
//! coalesced (at most one in flight per backend) and at least [`MIN_GAP`] apart, so that a burst of
//! OpenSessions costs the impalad's web server a few page loads, not one per session. Between reads,
//! what this instance itself opens and closes counts on top of the last figures (`Backend::candidate`).

use std::sync::Arc;
use std::time::Duration;

use super::stopped;
use crate::backend::{impalad_metrics, Backend};
use crate::proxy::Proxy;

/// Two reads of one impalad's figures are at least this far apart.
pub const MIN_GAP: Duration = Duration::from_millis(20);

/// Starts the load task of `backend`, if it has a `metrics_url`.
pub fn spawn(proxy: &Proxy, backend: Arc<Backend>) {
    let Some(url) = backend.metrics_url.clone() else { return };
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut stop = proxy.stop_signal();
        let (interval, timeout) = (proxy.config().health.interval, proxy.config().health.timeout);
        loop {
            let figures = impalad_metrics::load(&url, timeout).await;
            // Read after the page: a session opened during the read then counts once, at the next read.
            let local = proxy.load(backend.id);
            if let Err(e) = &figures {
                tracing::debug!(backend = %backend.addr, error = %e, "impalad metrics unavailable");
            }
            backend.set_impalad_load(figures.ok(), local);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = backend.load_now.notified() => tokio::time::sleep(MIN_GAP).await,
                _ = stopped(&mut stop) => return,
            }
            if proxy.backend(backend.id).is_none() {
                return;
            }
        }
    });
}
