//! A backend's load as balancing compares it, from this instance's own counts and, with `metrics_url`,
//! the impalad's own figures; and slow start's ramp of its weight. Pure: no I/O, no clocks (callers pass
//! the times).
//!
//! ```text
//! load  = max(own sessions, impalad sessions)        every open session
//!       + max(own open operations, impalad queries)  every registered query: running, queued, or done
//!                                                    and not yet closed (Hue keeps them open)
//!       + admitted running                           a running query costs one more
//!       + 4 x queued                                 a queued one four more: the coordinator is full
//! score = load / (weight x ramp)                     lowest score wins; ramp = 1 unless slow start
//! ```
//! The impalad's figures are a snapshot: what this instance opened or closed since the read counts on top
//! of them (`own now - own at the read`), and never less than this instance's own count. Admission
//! figures come from the impalad only (`impalad_metrics`); without them the terms are 0.

use std::time::{Duration, SystemTime};

use super::impalad_metrics::ImpaladLoad;
use crate::routing::Load;

/// How many times over a queued query counts. A queue means this coordinator cannot admit more now
/// (its pool is full, or its own memory is: `Not enough memory available on host`), so each queued query
/// should turn several new sessions away, but a few queued queries must not outweigh dozens of sessions.
pub const QUEUED_WEIGHT: u64 = 4;

/// Slow start begins at this share of the weight, in thousandths (HAProxy's `slowstart` starts near
/// zero; a tenth keeps a recovered backend in use from its first moment).
pub const RAMP_START: u64 = 100;
/// The full weight, in thousandths.
pub const FULL_WEIGHT: u64 = 1000;

/// One read of an impalad's figures, with this instance's own counts at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub figures: ImpaladLoad,
    pub local: Load,
    pub at: SystemTime,
}

/// Every input of a backend's load, and the load they add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadFigures {
    /// This instance's sessions and open operations on the backend now.
    pub own: Load,
    /// The impalad's sessions and registered queries, with what this instance changed since the read.
    pub impalad_sessions: Option<u64>,
    pub impalad_queries: Option<u64>,
    /// The impalad's admission figures as read (every pool).
    pub admitted_running: Option<u64>,
    pub queued: Option<u64>,
    /// When the impalad's figures were read.
    pub read_at: Option<SystemTime>,
    pub load: u64,
}

/// Combines this instance's counts with the impalad's last reading, if any.
pub fn figures(own: Load, reading: Option<&Reading>) -> LoadFigures {
    let Some(r) = reading else {
        return LoadFigures {
            own,
            impalad_sessions: None,
            impalad_queries: None,
            admitted_running: None,
            queued: None,
            read_at: None,
            load: own.sessions.saturating_add(own.operations),
        };
    };
    let sessions = since_read(r.figures.sessions, own.sessions, r.local.sessions);
    let queries = r.figures.queries.map(|q| since_read(q, own.operations, r.local.operations));
    let (running, queued) = (r.figures.admitted_running, r.figures.queued);
    let load = sessions
        .max(own.sessions)
        .saturating_add(queries.unwrap_or(0).max(own.operations))
        .saturating_add(running.unwrap_or(0))
        .saturating_add(queued.unwrap_or(0).saturating_mul(QUEUED_WEIGHT));
    LoadFigures {
        own,
        impalad_sessions: Some(sessions),
        impalad_queries: queries,
        admitted_running: running,
        queued,
        read_at: Some(r.at),
        load,
    }
}

/// `read`, moved by what this instance changed since (`now - then`), never below 0.
fn since_read(read: u64, now: u64, then: u64) -> u64 {
    u64::try_from(read as i128 + now as i128 - then as i128).unwrap_or(0)
}

/// The share of its weight a backend gets, in thousandths: from [`RAMP_START`] when it came up, growing
/// linearly to [`FULL_WEIGHT`] at `slow_start`; full when it did not just come up or slow start is off.
pub fn ramp(since_up: Option<Duration>, slow_start: Duration) -> u64 {
    match since_up {
        Some(t) if t < slow_start => {
            let grown = (FULL_WEIGHT - RAMP_START) as u128 * t.as_nanos() / slow_start.as_nanos();
            RAMP_START + grown as u64
        }
        _ => FULL_WEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sessions: u64, operations: u64) -> Load {
        Load { sessions, operations }
    }

    fn reading(sessions: u64, queries: u64, running: u64, queued: u64, local: Load) -> Reading {
        let figures =
            ImpaladLoad { sessions, queries: Some(queries), admitted_running: Some(running), queued: Some(queued) };
        Reading { figures, local, at: SystemTime::UNIX_EPOCH }
    }

    #[test]
    fn without_the_impalads_figures_load_is_own_sessions_and_operations() {
        let f = figures(load(5, 3), None);
        assert_eq!((f.load, f.impalad_sessions, f.queued), (8, None, None));
    }

    #[test]
    fn the_formula_from_a_table() {
        // (own now, impalad read: sessions, queries, running, queued, own at the read) -> load
        let cases = [
            // Other instances' sessions and queries count: 20 + 6.
            (load(2, 1), (20, 6, 0, 0, load(2, 1)), 26),
            // A running query costs 2 (registered + running), a queued one 5 (registered + 4).
            (load(0, 0), (10, 3, 1, 2, load(0, 0)), 10 + 3 + 1 + 8),
            // Opened here since the read: 3 sessions and 2 queries on top of the snapshot.
            (load(5, 2), (10, 4, 0, 0, load(2, 0)), 13 + 6),
            // Closed here since the read: the snapshot shrinks, never below own counts.
            (load(1, 0), (3, 0, 0, 0, load(6, 2)), 1),
        ];
        for (own, (s, q, run, queued, then), want) in cases {
            let r = reading(s, q, run, queued, then);
            assert_eq!(figures(own, Some(&r)).load, want, "own {own:?}, read {r:?}");
        }
    }

    #[test]
    fn older_impalads_without_query_or_admission_figures_count_sessions() {
        let figures_read = ImpaladLoad { sessions: 9, queries: None, admitted_running: None, queued: None };
        let r = Reading { figures: figures_read, local: load(1, 4), at: SystemTime::UNIX_EPOCH };
        let f = figures(load(1, 4), Some(&r));
        assert_eq!(f.load, 9 + 4, "own operations still count");
        assert_eq!((f.impalad_queries, f.admitted_running), (None, None));
    }

    #[test]
    fn slow_start_ramps_linearly_from_a_tenth() {
        let s = Duration::from_secs(60);
        assert_eq!(ramp(None, s), FULL_WEIGHT);
        assert_eq!(ramp(Some(Duration::ZERO), s), 100);
        assert_eq!(ramp(Some(Duration::from_secs(30)), s), 550);
        assert_eq!(ramp(Some(Duration::from_secs(54)), s), 910);
        assert_eq!(ramp(Some(s), s), FULL_WEIGHT);
        assert_eq!(ramp(Some(Duration::from_secs(3600)), s), FULL_WEIGHT);
        assert_eq!(ramp(Some(Duration::ZERO), Duration::ZERO), FULL_WEIGHT, "off");
    }
}
