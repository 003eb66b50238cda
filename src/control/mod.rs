//! The proxy's control-plane jobs, each a small task over the shared `Proxy` handle:
//!
//! - [`health`]: one task per backend: probe, apply the evidence (failover), remove a drained backend
//!   that left the configuration.
//! - [`load`]: one task per backend with `metrics_url`: reads the impalad's own load, often.
//! - [`eject`]: passive ejection: broken exchanges on live traffic take a backend down.
//! - [`reaper`]: judges sessions no client of this instance has used for the grace period by the
//!   [`cleanup`] rule (closed upstream only on the backend's word), and closes idle upstream connections.
//! - [`reload`]: applies a new backend list (SIGHUP).
//! - [`evacuate`]: moves a backend's sessions to the others for a rolling restart.
//!
//! Every task ends when the proxy stops. None of them closes a session on shutdown: impalad keeps
//! sessions, and another instance (or this one, restarted) finds them again.

pub mod cleanup;
pub mod eject;
pub mod evacuate;
pub mod health;
pub mod load;
pub mod reaper;
pub mod reload;

use tokio::sync::watch;

/// Resolves once the stop switch is on.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped at once: it must not live across an await.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}
