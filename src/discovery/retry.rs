//! Retry pacing for the registrar: exponential backoff with jitter, and a gate that lets one warning
//! through per failure streak (then one a minute, or when the error changes), so that a ZooKeeper outage
//! logs a few lines, not one per attempt. No I/O.

use std::time::{Duration, Instant};

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest retry delay: an outage's end is noticed within this (plus jitter).
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// During one failure streak, the same error is logged again after this.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Doubling delays from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt. `jitter` in `[0, 1)` takes up to a quarter off, so that
    /// instances restarted together do not retry in lockstep.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Decides which failures of a streak are worth a log line.
#[derive(Debug, Default)]
pub struct LogGate {
    failures: u64,
    last: Option<(Instant, String)>,
}

impl LogGate {
    /// Counts a failure; true when it should be logged (the first, a new error text, or
    /// [`LOG_EVERY`] since the last logged one).
    pub fn failed(&mut self, now: Instant, error: &str) -> bool {
        self.failures += 1;
        let log = match &self.last {
            None => true,
            Some((at, text)) => text != error || now.duration_since(*at) >= LOG_EVERY,
        };
        if log {
            self.last = Some((now, error.to_string()));
        }
        log
    }

    /// Ends the streak; returns how many failures it had (0: there was none).
    pub fn succeeded(&mut self) -> u64 {
        self.last = None;
        std::mem::take(&mut self.failures)
    }

    /// Failures in the current streak.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000]);
        assert_eq!(b.next_delay(0.999).as_millis(), 11253, "jitter takes at most a quarter off");
        b.reset();
        assert_eq!(b.next_delay(0.0), BACKOFF_MIN);
    }

    #[test]
    fn a_streak_logs_its_first_failure_new_errors_and_one_line_a_minute() {
        let t0 = Instant::now();
        let mut g = LogGate::default();
        let logged: Vec<bool> = [0, 1, 2, 59, 61, 62]
            .iter()
            .map(|s| g.failed(t0 + Duration::from_secs(*s), "connection refused"))
            .collect();
        assert_eq!(logged, [true, false, false, false, true, false]);
        assert!(g.failed(t0 + Duration::from_secs(63), "session expired"), "a new error is logged");
        assert_eq!(g.succeeded(), 7);
        assert_eq!(g.succeeded(), 0);
        assert!(g.failed(t0 + Duration::from_secs(64), "session expired"), "a new streak logs again");
    }
}
