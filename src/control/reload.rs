//! Applying a new configuration's backend list (SIGHUP): new backends are added (probed at once, and
//! ramped up over `health.slow_start`), known ones re-weighted, removed ones drained; a drained backend
//! leaves once its last session is gone (its health task removes it). The routing rules (`[[groups]]`,
//! `[[rules]]`, `[user_groups]`) are replaced with them; sessions already open stay where they are. Other
//! settings need a restart.

use std::sync::atomic::Ordering;

use crate::backend::health::AdminState;
use crate::config::Config;
use crate::proxy::Proxy;

pub fn apply(proxy: &Proxy, config: &Config) {
    let known = proxy.backends();
    for cfg in &config.backends {
        match known.iter().find(|b| b.addr == cfg.addr) {
            Some(b) => {
                b.weight.store(cfg.weight, Ordering::Relaxed);
                if b.removing.swap(false, Ordering::Relaxed) {
                    b.set_admin(AdminState::Active);
                }
            }
            None => {
                let b = proxy.add_backend(cfg);
                // A new backend ramps up like a recovered one (`health.slow_start`).
                b.start_slow_start();
                tracing::info!(backend = %b.addr, "backend added");
                super::health::spawn(proxy, b.clone());
                super::load::spawn(proxy, b);
            }
        }
    }
    for b in known.iter().filter(|b| !config.backends.iter().any(|c| c.addr == b.addr)) {
        if !b.removing.swap(true, Ordering::Relaxed) {
            b.set_admin(AdminState::Drain);
            tracing::info!(backend = %b.addr, sessions = proxy.load(b.id).sessions,
                "backend removed from the configuration: draining");
        }
    }
    proxy.set_policy(config.policy.clone());
    tracing::info!(groups = config.policy.groups.len(), rules = config.policy.rules.len(), "routing rules applied");
    proxy.refresh_availability();
}
