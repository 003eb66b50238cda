//! Choosing the backend for a new session. Pure: no I/O, no clocks.
//!
//! The least-loaded backend wins: load is live sessions pinned through the proxy divided by the
//! backend's weight (compared by cross-multiplication, no floats). Ties rotate, so that equal backends
//! fill evenly instead of the first one taking every burst.

/// What the balancer knows of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub sessions: u64,
    pub weight: u32,
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
        (a.sessions * b.weight as u64).cmp(&(b.sessions * a.weight as u64))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sessions: u64, weight: u32) -> Candidate {
        Candidate { sessions, weight, eligible: true }
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
            all[best].sessions += 1;
        }
        assert!(all.iter().all(|b| b.sessions == 10));
    }
}
