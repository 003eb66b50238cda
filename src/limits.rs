//! Per-user and per-address connection counts (`limits.max_connections_per_user`,
//! `limits.max_connections_per_address`). No I/O: a guard holds one connection's place and gives it back
//! when dropped, however the connection ends.

use std::sync::Arc;

use dashmap::DashMap;

/// Open connections per key (a user, or a client address).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    by_key: Arc<DashMap<String, usize>>,
}

/// One connection's place in a [`ConnectionCounts`].
#[derive(Debug)]
pub struct Held {
    counts: Arc<DashMap<String, usize>>,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counts.remove_if_mut(&self.key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl ConnectionCounts {
    /// Takes a place for `key` unless it already holds `max` (`None`: no cap); `Err` is the count it has.
    pub fn enter(&self, key: &str, max: Option<u64>) -> Result<Held, usize> {
        let mut n = self.by_key.entry(key.to_string()).or_insert(0);
        if max.is_some_and(|m| *n as u64 >= m) {
            return Err(*n);
        }
        *n += 1;
        drop(n);
        Ok(Held { counts: self.by_key.clone(), key: key.to_string() })
    }

    pub fn count(&self, key: &str) -> usize {
        self.by_key.get(key).map_or(0, |n| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_given_back() {
        let c = ConnectionCounts::default();
        let a = c.enter("alice", Some(2)).unwrap();
        let b = c.enter("alice", Some(2)).unwrap();
        assert_eq!(c.enter("alice", Some(2)).unwrap_err(), 2);
        assert!(c.enter("bob", Some(2)).is_ok(), "per key");
        drop(a);
        assert_eq!(c.count("alice"), 1);
        let _c = c.enter("alice", Some(2)).unwrap();
        drop(b);
        assert!(c.enter("x", None).is_ok(), "no cap");
    }
}
