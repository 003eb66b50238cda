//! Choosing the backend for a new session. Pure: no I/O, no clocks.
//!
//! The least-loaded backend wins: its load (`backend::load`: sessions, queries, admission figures)
//! divided by its effective weight (the configured weight, scaled down while slow start ramps it up),
//! compared by cross-multiplication, no floats. Ties rotate, so that equal backends fill evenly instead
//! of the first one taking every burst.
//!
//! Slow start scales the weight, so a backend that just came up at a tenth of its weight is chosen until
//! its load reaches a tenth of the others' load per weight, then for about a tenth of its fair share of
//! new sessions, and its allowance grows with the ramp: the catch-up is spread over `health.slow_start`
//! instead of every new session landing on the empty backend at once.

/// What the balancer knows of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub load: u64,
    /// The weight in thousandths (weight 1 = 1000), slow start's ramp applied.
    pub weight: u64,
    /// False for backends that must not get new sessions (down, draining, maintenance).
    pub eligible: bool,
}

/// Backends in the order a new session should try them: best first. `rotor` turns ties.
pub fn preference(candidates: &[Candidate], rotor: usize) -> Vec<usize> {
    let n = candidates.len();
    let mut order: Vec<usize> = (0..n).filter(|i| candidates[*i].eligible).collect();
    // Rotating the start before a stable sort makes ties come out in rotated order.
    let turn = rotor % order.len().max(1);
    order.rotate_left(turn);
    order.sort_by(|a, b| {
        let (a, b) = (&candidates[*a], &candidates[*b]);
        // u128: a load near u64::MAX times a weight in thousandths must not overflow.
        let (al, bl, aw, bw) = (a.load as u128, b.load as u128, a.weight.max(1) as u128, b.weight.max(1) as u128);
        (al * bw).cmp(&(bl * aw))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(load: u64, weight: u64) -> Candidate {
        Candidate { load, weight: weight * 1000, eligible: true }
    }

    #[test]
    fn least_sessions_first() {
        assert_eq!(preference(&[c(3, 1), c(1, 1), c(2, 1)], 0), vec![1, 2, 0]);
    }

    #[test]
    fn weight_divides_load() {
        // 4 sessions on weight 2 is a load of 2: lighter than 3 on weight 1.
        assert_eq!(preference(&[c(3, 1), c(4, 2)], 0)[0], 1);
    }

    #[test]
    fn ties_rotate() {
        let all = [c(0, 1), c(0, 1), c(0, 1)];
        let firsts: Vec<usize> = (0..6).map(|r| preference(&all, r)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn ineligible_backends_are_never_chosen() {
        let all = [Candidate { eligible: false, ..c(0, 1) }, c(5, 1)];
        assert_eq!(preference(&all, 0), vec![1]);
        assert!(preference(&[Candidate { eligible: false, ..c(0, 1) }], 3).is_empty());
    }

    #[test]
    fn filling_from_empty_spreads_evenly() {
        let mut all = vec![c(0, 1); 3];
        for r in 0..30 {
            let best = preference(&all, r)[0];
            all[best].load += 1;
        }
        assert!(all.iter().all(|b| b.load == 10));
    }

    /// Fills `n` sessions one by one onto `all`; returns what each got.
    fn fill(all: &mut [Candidate], n: usize) -> Vec<u64> {
        let before: Vec<u64> = all.iter().map(|b| b.load).collect();
        for r in 0..n {
            let best = preference(all, r)[0];
            all[best].load += 1;
        }
        all.iter().zip(before).map(|(b, was)| b.load - was).collect()
    }

    #[test]
    fn a_ramping_backend_gets_its_scaled_share() {
        // Empty cluster, one backend at a tenth of its weight: 0.1 / 2.1 of new sessions (~5%).
        let mut all = [c(0, 1), c(0, 1), Candidate { weight: 100, ..c(0, 1) }];
        assert_eq!(fill(&mut all, 210), vec![100, 100, 10]);
        // Back from failure while the others hold 50 each: without slow start it takes the next 50 at once,
        let mut flat = [c(50, 1), c(50, 1), c(0, 1)];
        assert_eq!(fill(&mut flat, 50), vec![0, 0, 50]);
        // at a tenth it catches up to a tenth of their load (5), then takes ~1 in 21.
        let mut ramped = [c(50, 1), c(50, 1), Candidate { weight: 100, ..c(0, 1) }];
        let got = fill(&mut ramped, 50);
        assert!(got[2] <= 8 && got[0].abs_diff(got[1]) <= 1, "{got:?}");
    }

    #[test]
    fn huge_loads_do_not_overflow() {
        let all = [c(u64::MAX, 1), c(u64::MAX - 1, 1)];
        assert_eq!(preference(&all, 0), vec![1, 0]);
    }
}
