//! The `load` object of a backend in `GET /api/backends`: every input of the figure balancing compares
//! (`backend::load`), the weight slow start gives it now, and the passive-ejection streak.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::backend::load::FULL_WEIGHT;
use crate::backend::Backend;
use crate::proxy::Proxy;
use crate::timefmt::rfc3339;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadJson {
    /// This instance's sessions and open operations on the backend.
    pub sessions: u64,
    pub operations: u64,
    /// The impalad's own figures (`metrics_url`), with what this instance changed since the read;
    /// `null` without `metrics_url` or when its page did not answer.
    pub impalad_sessions: Option<u64>,
    pub impalad_queries: Option<u64>,
    /// The impalad's admission controller, every pool: admitted and running, queued.
    pub admitted_running: Option<u64>,
    pub queued: Option<u64>,
    /// When the impalad's figures were read (RFC 3339).
    pub read_at: Option<String>,
    /// max(sessions, impalad_sessions) + max(operations, impalad_queries) + admitted_running + 4 x queued.
    pub load: u64,
    /// The configured weight times `weight_percent`.
    pub effective_weight: f64,
    /// The share of its weight slow start gives it now: 100 unless it came up less than
    /// `health.slow_start` ago (from 10).
    pub weight_percent: f64,
    /// `load / effective_weight`: the lowest eligible score gets the next session.
    pub score: f64,
    /// Broken exchanges in a row on live traffic now (`health.eject_after` of them take it down).
    pub broken_exchanges: u32,
    /// Times live traffic took it down.
    pub ejections: u64,
}

pub fn load_view(proxy: &Proxy, b: &Backend) -> LoadJson {
    let f = b.load_figures(proxy.load(b.id));
    let ramp = b.ramp() as f64 / FULL_WEIGHT as f64;
    let effective_weight = f64::from(b.weight.load(Ordering::Relaxed).max(1)) * ramp;
    LoadJson {
        sessions: f.own.sessions,
        operations: f.own.operations,
        impalad_sessions: f.impalad_sessions,
        impalad_queries: f.impalad_queries,
        admitted_running: f.admitted_running,
        queued: f.queued,
        read_at: f.read_at.map(rfc3339),
        load: f.load,
        effective_weight,
        weight_percent: ramp * 100.0,
        score: f.load as f64 / effective_weight,
        broken_exchanges: b.broken_in_a_row(),
        ejections: b.ejections(),
    }
}
