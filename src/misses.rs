//! Handles that no backend held when last asked, remembered for a while so that a client retrying a
//! stale handle does not make the proxy ask every backend on every call. No I/O.
//!
//! Bounded: when full, the oldest entry makes room (the cache only saves work, so forgetting is safe).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hs2::handle::Guid;

/// How long "no backend holds this handle" is remembered.
pub const MISS_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most.
pub const MAX_MISSES: usize = 10_000;

#[derive(Default)]
struct Inner {
    at: HashMap<Guid, Instant>,
    /// Insertion order, for evicting the oldest; may hold stale pairs for re-inserted guids.
    order: VecDeque<(Guid, Instant)>,
}

pub struct Misses {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

impl Default for Misses {
    fn default() -> Misses {
        Misses::new(MAX_MISSES, MISS_TTL)
    }
}

impl Misses {
    pub fn new(capacity: usize, ttl: Duration) -> Misses {
        Misses { inner: Mutex::new(Inner::default()), capacity: capacity.max(1), ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when `guid` was found nowhere less than the TTL ago.
    pub fn recently_missed(&self, guid: &Guid, now: Instant) -> bool {
        self.lock().at.get(guid).is_some_and(|t| now.saturating_duration_since(*t) < self.ttl)
    }

    pub fn remember(&self, guid: Guid, now: Instant) {
        let mut inner = self.lock();
        inner.at.insert(guid, now);
        inner.order.push_back((guid, now));
        while inner.at.len() > self.capacity || inner.order.len() > 2 * self.capacity {
            let Some((old, t)) = inner.order.pop_front() else { break };
            // Only the pair that is still current evicts its entry.
            if inner.at.get(&old) == Some(&t) {
                inner.at.remove(&old);
            }
        }
    }

    /// A handle that turned out to exist after all (learned from a reply).
    pub fn forget(&self, guid: &Guid) {
        self.lock().at.remove(guid);
    }

    pub fn len(&self) -> usize {
        self.lock().at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(i: u8) -> Guid {
        Guid([i; 16])
    }

    #[test]
    fn misses_expire_and_the_oldest_makes_room() {
        let m = Misses::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for i in 0..3 {
            m.remember(g(i), t0);
        }
        assert!(m.recently_missed(&g(0), t0 + Duration::from_secs(29)));
        assert!(!m.recently_missed(&g(0), t0 + Duration::from_secs(30)), "expired");
        m.remember(g(3), t0);
        assert_eq!(m.len(), 3, "bounded");
        assert!(!m.recently_missed(&g(0), t0), "the oldest was evicted");
        assert!((1..4).all(|i| m.recently_missed(&g(i), t0)), "the others are kept, not wiped");
        // Re-remembering refreshes an entry: it is no longer the oldest.
        m.remember(g(1), t0 + Duration::from_secs(1));
        m.remember(g(4), t0 + Duration::from_secs(1));
        assert!(m.recently_missed(&g(1), t0 + Duration::from_secs(1)));
        assert!(!m.recently_missed(&g(2), t0 + Duration::from_secs(1)));
        m.forget(&g(1));
        assert!(!m.recently_missed(&g(1), t0));
    }
}
