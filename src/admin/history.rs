//! The status page's memory of the last 15 minutes: sessions per backend, calls, errors and p99 latency,
//! sampled every `admin.history_interval` by one task into a bounded ring.
//!
//! - The running counts it differences are [`crate::metrics::totals::Totals`], bumped on the call path.
//! - [`Ring`]: the samples, each the difference between two readings of the totals plus the sessions per
//!   backend read from [`crate::proxy::Proxy::figures`]. Pure, no I/O; at most [`MAX_SAMPLES`].
//! - [`spawn`]: the sampling task (stops with the proxy); [`History`] is the handle the page reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::control::stopped;
use crate::metrics::totals::{p99_ms, Reading};
use crate::metrics::StateFigures;
use crate::proxy::Proxy;

/// How far back the charts look.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most samples kept, whatever the interval: bounds the memory (a short interval shortens the window).
pub const MAX_SAMPLES: usize = 900;

/// What happened during one sampling interval, and the sessions at its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// End of the interval, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Length of the interval.
    pub seconds: f64,
    /// Calls and failed calls during the interval.
    pub calls: u64,
    pub errors: u64,
    /// 99th percentile latency of the interval's calls; `None` when there were none.
    pub p99_ms: Option<f64>,
    /// Sessions per backend (address, count) at the end of the interval, in configuration order.
    pub sessions: Vec<(String, u64)>,
}

impl Sample {
    pub fn calls_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn errors_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.errors as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The samples, oldest first, and the reading the next one is measured from.
#[derive(Debug)]
pub struct Ring {
    samples: VecDeque<Sample>,
    capacity: usize,
    last: (Instant, Reading),
}

impl Ring {
    /// A ring for samples taken every `interval`: enough for [`WINDOW`], at most [`MAX_SAMPLES`]. The
    /// first sample counts from zero (totals start with the proxy), its interval from `start`.
    pub fn new(interval: Duration, start: Instant) -> Ring {
        let wanted = WINDOW.as_secs_f64() / interval.as_secs_f64().max(0.001);
        let capacity = (wanted.ceil() as usize).clamp(1, MAX_SAMPLES);
        Ring { samples: VecDeque::with_capacity(capacity), capacity, last: (start, Reading::zero()) }
    }

    /// Records the interval since the previous reading.
    pub fn record(&mut self, now: Instant, wall: SystemTime, reading: Reading, figures: &StateFigures) {
        let (then, before) = std::mem::replace(&mut self.last, (now, reading.clone()));
        let delta: Vec<u64> = reading.latency.iter().zip(&before.latency).map(|(a, b)| a.saturating_sub(*b)).collect();
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms: wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            seconds: now.saturating_duration_since(then).as_secs_f64(),
            calls: reading.calls.saturating_sub(before.calls),
            errors: reading.errors.saturating_sub(before.errors),
            p99_ms: p99_ms(&delta),
            sessions: figures.backends.iter().map(|b| (b.addr.clone(), b.sessions)).collect(),
        });
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The shared ring: written by the sampler, read by the page. A std mutex: every hold is a short copy,
/// never across an `.await`.
#[derive(Clone, Debug)]
pub struct History(Arc<Mutex<Ring>>);

impl History {
    pub fn new(interval: Duration) -> History {
        History(Arc::new(Mutex::new(Ring::new(interval, Instant::now()))))
    }

    pub fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic elsewhere leaves the samples usable.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.ring().samples().cloned().collect()
    }

    fn sample(&self, proxy: &Proxy) {
        let reading = proxy.metrics().totals().read();
        let figures = proxy.figures();
        self.ring().record(Instant::now(), SystemTime::now(), reading, &figures);
    }
}

/// Samples `proxy` into `history` every `admin.history_interval` until the proxy stops; the first
/// reading is taken at once.
pub fn spawn(proxy: Proxy, history: History) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(proxy.config().admin.history_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = proxy.stop_signal();
        loop {
            tokio::select! {
                _ = tick.tick() => history.sample(&proxy),
                _ = stopped(&mut stop) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::totals::Totals;
    use crate::metrics::BackendFigures;

    fn figures(sessions: &[(&str, u64)]) -> StateFigures {
        StateFigures {
            sessions: 0,
            operations: 0,
            max_client_connections: 1,
            buffered_request_bytes: 0,
            max_buffered_request_bytes: 1,
            backends: sessions
                .iter()
                .map(|(addr, n)| BackendFigures {
                    addr: addr.to_string(),
                    sessions: *n,
                    operations: 0,
                    inflight: 0,
                    weight: 1,
                    state: "up",
                    impalad_sessions: None,
                    load: Default::default(),
                    pool: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn samples_are_differences_and_the_ring_is_bounded() {
        let totals = Totals::default();
        let (t0, w0) = (Instant::now(), UNIX_EPOCH + Duration::from_secs(1000));
        totals.call(Duration::from_millis(1));
        let mut ring = Ring::new(Duration::from_secs(300), t0);
        assert_eq!(ring.capacity(), 3);
        ring.record(t0, w0, totals.read(), &figures(&[("a", 0)]));
        let first: Vec<_> = ring.samples().map(|s| s.calls).collect();
        assert_eq!(first, [1], "the first sample counts from zero: a call before the sampler started");
        for i in 1..=5u64 {
            for _ in 0..10 * i {
                totals.call(Duration::from_millis(2));
            }
            totals.error(true);
            let at = Duration::from_secs(300 * i);
            ring.record(t0 + at, w0 + at, totals.read(), &figures(&[("a", i), ("b", 2 * i)]));
        }
        let samples: Vec<_> = ring.samples().cloned().collect();
        assert_eq!(samples.len(), 3, "bounded");
        assert_eq!(samples.iter().map(|s| s.calls).collect::<Vec<_>>(), [31, 41, 51]);
        assert!(samples.iter().all(|s| s.errors == 1 && s.seconds == 300.0));
        assert_eq!(samples[2].sessions, vec![("a".to_string(), 5), ("b".to_string(), 10)]);
        assert_eq!(samples[2].at_ms, 1_000_000 + 1_500_000);
        assert!((samples[2].calls_per_second() - 51.0 / 300.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_interval_shortens_the_window_not_the_bound() {
        assert_eq!(Ring::new(Duration::from_millis(100), Instant::now()).capacity(), MAX_SAMPLES);
        assert_eq!(Ring::new(Duration::from_secs(5), Instant::now()).capacity(), 180);
    }
}
