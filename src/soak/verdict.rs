//! The soak's judgements from figures alone: does a series grow without bound, and does the proxy's view
//! agree with what the mock impalads hold. No I/O.
//!
//! Growth is judged on the last two thirds of the load phase, never on one sample: a least-squares
//! slope over that window, projected across it, must stay within the series' tolerance, and the last
//! third's median must not exceed the first third's by more than half of it. Both must fail for a
//! verdict of "grows": a leak is steady growth (slope) that does not come back down (medians); a
//! warm-up in the first third, or one burst, is neither.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::hs2::handle::Guid;

/// How much a series may grow across the window: `absolute + relative × its median`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub absolute: f64,
    pub relative: f64,
}

/// One series' figures over the window.
#[derive(Clone, Debug)]
pub struct Growth {
    pub samples: usize,
    pub first_third_median: f64,
    pub last_third_median: f64,
    pub max: f64,
    /// Least-squares slope, per minute.
    pub slope_per_minute: f64,
    /// The slope times the window's length.
    pub projected: f64,
    pub allowed: f64,
    pub grows: bool,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Least-squares slope of `y` over `x` (0 with fewer than two distinct `x`).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) =
        points.iter().fold((0.0, 0.0), |(num, den), (x, y)| (num + (x - mx) * (y - my), den + (x - mx).powi(2)));
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Judges `points` (seconds, value) that fall in `window` (seconds from, to).
pub fn growth(points: &[(f64, f64)], window: (f64, f64), tol: Tolerance) -> Growth {
    let inside: Vec<(f64, f64)> = points.iter().copied().filter(|(t, _)| *t >= window.0 && *t <= window.1).collect();
    let span = window.1 - window.0;
    let third = |k: f64| -> Vec<f64> {
        let (lo, hi) = (window.0 + span * k / 3.0, window.0 + span * (k + 1.0) / 3.0);
        inside.iter().filter(|(t, _)| *t >= lo && *t <= hi).map(|(_, v)| *v).collect()
    };
    let first = median(&mut third(0.0));
    let last = median(&mut third(2.0));
    let all_median = median(&mut inside.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    let per_second = slope(&inside);
    let projected = per_second * span;
    let allowed = tol.absolute + tol.relative * all_median.abs();
    let grows = inside.len() >= 3 && projected > allowed && last - first > allowed / 2.0;
    Growth {
        samples: inside.len(),
        first_third_median: first,
        last_third_median: last,
        max: inside.iter().map(|(_, v)| *v).fold(f64::NEG_INFINITY, f64::max),
        slope_per_minute: per_second * 60.0,
        projected,
        allowed,
        grows,
    }
}

/// A session as the proxy's admin API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedSession {
    pub id: Guid,
    /// Its id on its backend: `id` unless the session was moved.
    pub held_as: Guid,
    pub backend: String,
    pub operations: Vec<Guid>,
}

/// What one mock impalad holds, read once.
#[derive(Clone, Debug, Default)]
pub struct MockHoldings {
    /// Sessions with the instant each opened.
    pub sessions: HashMap<Guid, Instant>,
    /// Live operations per session, with the instant each started.
    pub operations: HashMap<Guid, Vec<(Guid, Instant)>>,
}

/// Compares two listings of the proxy's sessions taken around one read of the mocks (by backend
/// address). Only sessions in both listings count (the clean-up task may close one in between). Every
/// such session must be held by the mock the proxy names and by no other; every operation listed under
/// it must be live there; and every live operation of it there must be listed, unless it started before
/// `proxy_started` (it was opened through an earlier instance and never used since).
pub fn compare_sessions(
    before: &[ListedSession],
    after: &[ListedSession],
    mocks: &HashMap<String, MockHoldings>,
    proxy_started: Instant,
) -> Vec<String> {
    let later: HashSet<(&Guid, &str)> = after.iter().map(|s| (&s.id, s.backend.as_str())).collect();
    let mut problems = Vec::new();
    for s in before.iter().filter(|s| later.contains(&(&s.id, s.backend.as_str()))) {
        let id = s.id.impala_id();
        let holders: Vec<&String> =
            mocks.iter().filter(|(_, m)| m.sessions.contains_key(&s.held_as)).map(|(a, _)| a).collect();
        let Some(mock) = mocks.get(&s.backend).filter(|m| m.sessions.contains_key(&s.held_as)) else {
            problems.push(format!(
                "session {id}: the proxy routes it to {} but that impalad does not hold it (held by {holders:?})",
                s.backend
            ));
            continue;
        };
        if holders.len() > 1 {
            problems.push(format!("session {id} is held by several impalads: {holders:?}"));
        }
        let live = mock.operations.get(&s.held_as).cloned().unwrap_or_default();
        for op in &s.operations {
            if !live.iter().any(|(g, _)| g == op) {
                problems.push(format!(
                    "operation {} of session {id}: listed by the proxy, not live on {}",
                    op.impala_id(),
                    s.backend
                ));
            }
        }
        for (op, started) in &live {
            if !s.operations.contains(op) && *started >= proxy_started {
                problems.push(format!(
                    "operation {} of session {id}: live on {}, unknown to the proxy",
                    op.impala_id(),
                    s.backend
                ));
            }
        }
    }
    problems
}

/// After the proxy has closed every session it knew (clean-up), sessions still open on a mock must be
/// explained: opened before the current proxy instance started (it never learned them), or named in the
/// proxy's log as left for the server to expire. Anything else is a session the proxy forgot while the
/// impalad kept it: a leak on the impalad.
pub fn leftover_sessions(
    mocks: &HashMap<String, MockHoldings>,
    proxy_started: Instant,
    left_to_server: &HashSet<Guid>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (addr, m) in mocks {
        for (g, opened) in &m.sessions {
            if *opened >= proxy_started && !left_to_server.contains(g) {
                problems
                    .push(format!("session {} still open on {addr}, but the proxy no longer knows it", g.impala_id()));
            }
        }
    }
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TOL: Tolerance = Tolerance { absolute: 4.0, relative: 0.1 };

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=90).map(|i| (i as f64 * 2.0, f(i as f64 * 2.0))).collect()
    }

    #[test]
    fn a_flat_noisy_series_does_not_grow() {
        let pts = series(|t| 100.0 + ((t * 7.0) % 11.0) - 5.0);
        let g = growth(&pts, (60.0, 180.0), TOL);
        assert!(!g.grows, "{g:?}");
        assert_eq!(g.samples, 61);
    }

    #[test]
    fn a_steady_leak_grows() {
        let g = growth(&series(|t| 100.0 + t * 0.5), (60.0, 180.0), TOL);
        assert!(g.grows, "{g:?}");
        assert!((g.slope_per_minute - 30.0).abs() < 1e-6, "{g:?}");
    }

    #[test]
    fn a_warm_up_before_the_window_and_a_sawtooth_do_not_grow() {
        let warm = series(|t| if t < 50.0 { t * 4.0 } else { 200.0 });
        assert!(!growth(&warm, (60.0, 180.0), TOL).grows);
        // Sessions that build up and are reaped every 20 s.
        let saw = series(|t| (t % 20.0) * 2.0);
        assert!(!growth(&saw, (60.0, 180.0), TOL).grows);
        // One spike at the end is a single sample, not growth.
        let spike = series(|t| if t >= 178.0 { 1000.0 } else { 50.0 });
        assert!(!growth(&spike, (60.0, 180.0), TOL).grows);
    }

    fn g(i: u8) -> Guid {
        Guid([i; 16])
    }

    #[test]
    fn sessions_must_agree_with_the_mocks() {
        let t0 = Instant::now();
        let started = t0 + Duration::from_secs(10);
        let after = started + Duration::from_secs(1);
        let mut a = MockHoldings::default();
        a.sessions.insert(g(1), after);
        a.operations.insert(g(1), vec![(g(11), after), (g(12), t0)]);
        a.sessions.insert(g(2), t0);
        let mut b = MockHoldings::default();
        b.sessions.insert(g(3), after);
        let mocks = HashMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let listed = |id: u8, backend: &str, ops: Vec<Guid>| ListedSession {
            id: g(id),
            held_as: g(id),
            backend: backend.into(),
            operations: ops,
        };
        let good = vec![listed(1, "a", vec![g(11)]), listed(3, "b", vec![])];
        assert!(compare_sessions(&good, &good, &mocks, started).is_empty(), "op 12 predates the proxy");
        let wrong = vec![listed(3, "a", vec![])];
        let p = compare_sessions(&wrong, &wrong, &mocks, started);
        assert!(p.len() == 1 && p[0].contains("does not hold it"), "{p:?}");
        // Reaped between the two listings: not judged.
        assert!(compare_sessions(&wrong, &[], &mocks, started).is_empty());
        let missing_op = vec![listed(1, "a", vec![])];
        assert!(compare_sessions(&missing_op, &missing_op, &mocks, started)[0].contains("unknown to the proxy"));
        let ghost_op = vec![listed(1, "a", vec![g(11), g(13)])];
        assert!(compare_sessions(&ghost_op, &ghost_op, &mocks, started)[0].contains("not live"));

        let excused = HashSet::from([g(3)]);
        let left = leftover_sessions(&mocks, started, &excused);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains(&g(1).impala_id()), "g(2) predates the proxy, g(3) was left to the server");
    }
}
