//! Backends: the impalads (or other HS2 servers) behind the proxy, their load counters and pools.

pub mod pool;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::balance::Candidate;
use crate::config::{BackendConfig, BackendTransport, Config};
use pool::Pool;

/// One backend. Shared by `Arc`: the session table holds one per session so counts follow entries.
#[derive(Debug)]
pub struct Backend {
    /// Position in [`Backends`]; stable for the process's life.
    pub id: usize,
    /// `host:port` as configured.
    pub addr: String,
    pub weight: AtomicU32,
    /// Live sessions pinned here through the proxy.
    pub sessions: AtomicU64,
    /// Calls being relayed right now.
    pub inflight: AtomicU64,
    pub pool: Pool,
}

impl Backend {
    pub fn new(id: usize, cfg: &BackendConfig, config: &Config) -> Backend {
        Backend {
            id,
            addr: cfg.addr.clone(),
            weight: AtomicU32::new(cfg.weight),
            sessions: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            pool: Pool::new(cfg.addr.clone(), config.backend_transport, config.pool.clone(), config.max_frame_bytes),
        }
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            sessions: self.sessions.load(Ordering::Relaxed),
            weight: self.weight.load(Ordering::Relaxed).max(1),
            eligible: true,
        }
    }
}

/// All backends.
#[derive(Debug)]
pub struct Backends {
    list: Vec<Arc<Backend>>,
    pub transport: BackendTransport,
}

impl Backends {
    pub fn new(config: &Config) -> Backends {
        let list = config.backends.iter().enumerate().map(|(i, b)| Arc::new(Backend::new(i, b, config))).collect();
        Backends { list, transport: config.backend_transport }
    }

    pub fn all(&self) -> &[Arc<Backend>] {
        &self.list
    }

    pub fn get(&self, id: usize) -> Option<&Arc<Backend>> {
        self.list.get(id)
    }

    /// Backends in the order a new session should try them.
    pub fn preference(&self, rotor: usize) -> Vec<Arc<Backend>> {
        let candidates: Vec<Candidate> = self.list.iter().map(|b| b.candidate()).collect();
        crate::balance::preference(&candidates, rotor).into_iter().map(|i| self.list[i].clone()).collect()
    }
}
