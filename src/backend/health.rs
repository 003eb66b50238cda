//! Backend health as a pure state machine: outcomes in, transitions out. No I/O, no clocks.
//!
//! Two independent axes decide whether a backend gets new sessions:
//! - what the proxy *observes* (probes and live traffic): up, down, or draining (the server says it is
//!   shutting down);
//! - what the *operator* set: active, drain (no new sessions, existing ones keep working) or
//!   maintenance (the same, and shown as such).
//!
//! Like HAProxy's `rise`/`fall`, a backend goes down after `fall` consecutive failed probes and up again
//! after `rise` consecutive good ones. A server that says it is shutting down drains at once, and a
//! refused connection on live traffic is taken as down at once: both are unambiguous. Broken exchanges on
//! live traffic are counted by the backend (`health.eject_after` in a row, reset by any whole reply); the
//! streak's end arrives here as [`Evidence::Ejected`], which takes the backend down at once (passive
//! ejection). Probes alone bring it back, after `rise` good ones.

use std::fmt;

/// What probes and traffic say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    Up,
    Down,
    /// The server answers but is shutting down ("Server is being shut down").
    Draining,
}

/// What the operator set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    Active,
    Drain,
    Maintenance,
}

/// One piece of evidence about a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A well-formed HS2 reply (success or "invalid session": either way the server works).
    Alive,
    /// The server says it is shutting down.
    ShuttingDown(String),
    /// No reply within the timeout, a broken reply, or a failed read on live traffic.
    Failed(String),
    /// A connection was refused or timed out on live traffic.
    Unreachable(String),
    /// `health.eject_after` broken exchanges in a row on live traffic; the text says so, with the last.
    Ejected(String),
}

/// A change of observed state, with its reason, for the log and the operator view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Observed,
    pub to: Observed,
    pub reason: String,
}

/// Thresholds (HAProxy-like defaults: rise 2, fall 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub rise: u32,
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub observed: Observed,
    pub admin: AdminState,
    ok_streak: u32,
    fail_streak: u32,
    /// Why the backend is in its observed state.
    pub reason: String,
}

impl Default for Health {
    /// A new backend starts up: a proxy that just started serves at once, and the first probes correct it.
    fn default() -> Health {
        Health {
            observed: Observed::Up,
            admin: AdminState::Active,
            ok_streak: 0,
            fail_streak: 0,
            reason: "starting".into(),
        }
    }
}

impl Health {
    /// True when the backend may take new sessions.
    pub fn eligible(&self) -> bool {
        self.observed == Observed::Up && self.admin == AdminState::Active
    }

    /// True when calls on existing sessions may still go there.
    pub fn serving(&self) -> bool {
        self.observed != Observed::Down
    }

    /// Applies one piece of evidence; returns the transition it caused, if any.
    pub fn record(&mut self, evidence: Evidence, t: Thresholds) -> Option<Transition> {
        let to = match evidence {
            Evidence::Alive => {
                self.fail_streak = 0;
                self.ok_streak = self.ok_streak.saturating_add(1);
                let recovered = self.observed != Observed::Up && self.ok_streak >= t.rise;
                if !recovered {
                    return None;
                }
                (Observed::Up, format!("{} consecutive good probes", self.ok_streak))
            }
            Evidence::ShuttingDown(text) => {
                self.ok_streak = 0;
                (Observed::Draining, format!("server is shutting down: {text}"))
            }
            Evidence::Failed(text) => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1);
                if self.observed == Observed::Down || self.fail_streak < t.fall {
                    return None;
                }
                (Observed::Down, format!("{} consecutive failures, last: {text}", self.fail_streak))
            }
            Evidence::Unreachable(text) => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.max(t.fall);
                (Observed::Down, format!("unreachable: {text}"))
            }
            Evidence::Ejected(text) => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.max(t.fall);
                (Observed::Down, format!("ejected: {text}"))
            }
        };
        self.transition(to.0, to.1)
    }

    fn transition(&mut self, to: Observed, reason: String) -> Option<Transition> {
        if to == self.observed {
            return None;
        }
        let from = self.observed;
        self.observed = to;
        self.reason = reason.clone();
        Some(Transition { from, to, reason })
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Observed::Up => "up",
            Observed::Down => "down",
            Observed::Draining => "draining",
        })
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminState::Active => "active",
            AdminState::Drain => "drain",
            AdminState::Maintenance => "maintenance",
        })
    }
}

/// Every word [`state_name`] can say (the `state` label of the backend state metric).
pub const STATES: [&str; 5] = ["up", "draining", "drain", "maintenance", "down"];

/// The one word the operator view uses for a backend's state: what matters most first (down beats an
/// operator state, an operator state beats the server's own draining).
pub fn state_name(observed: Observed, admin: AdminState) -> &'static str {
    match (observed, admin) {
        (Observed::Down, _) => "down",
        (_, AdminState::Maintenance) => "maintenance",
        (_, AdminState::Drain) => "drain",
        (Observed::Draining, _) => "draining",
        (Observed::Up, AdminState::Active) => "up",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_put_what_matters_first() {
        use AdminState::*;
        use Observed::*;
        assert_eq!(state_name(Up, Active), "up");
        assert_eq!(state_name(Down, Maintenance), "down");
        assert_eq!(state_name(Draining, Drain), "drain");
        assert_eq!(state_name(Up, Maintenance), "maintenance");
        assert_eq!(state_name(Draining, Active), "draining");
        assert!(STATES.contains(&state_name(Up, Drain)));
    }

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    fn failed() -> Evidence {
        Evidence::Failed("timeout".into())
    }

    fn ejected() -> Evidence {
        Evidence::Ejected("5 broken exchanges in a row on live traffic, last: reset".into())
    }

    /// Runs `evidence` from a fresh state and returns the observed state after each step.
    fn run(start: Observed, evidence: &[Evidence]) -> Vec<Observed> {
        let mut h = Health { observed: start, ..Health::default() };
        evidence
            .iter()
            .map(|e| {
                h.record(e.clone(), T);
                h.observed
            })
            .collect()
    }

    #[test]
    fn transitions_from_a_table_of_outcomes() {
        use Observed::*;
        let alive = || Evidence::Alive;
        let cases: Vec<(Observed, Vec<Evidence>, Vec<Observed>)> = vec![
            (Up, vec![failed(), failed(), failed()], vec![Up, Up, Down]),
            (Up, vec![failed(), failed(), alive(), failed(), failed()], vec![Up, Up, Up, Up, Up]),
            (Down, vec![alive(), alive()], vec![Down, Up]),
            (Down, vec![alive(), failed(), alive()], vec![Down, Down, Down]),
            (Up, vec![Evidence::ShuttingDown("x".into())], vec![Draining]),
            (Draining, vec![alive(), alive()], vec![Draining, Up]),
            (Draining, vec![failed(), failed(), failed()], vec![Draining, Draining, Down]),
            (Up, vec![Evidence::Unreachable("refused".into())], vec![Down]),
            (Down, vec![Evidence::Unreachable("refused".into()), alive(), alive()], vec![Down, Down, Up]),
            (Up, vec![ejected()], vec![Down]),
            (Draining, vec![ejected()], vec![Down]),
            // One good probe before the ejection does not count towards coming back.
            (Down, vec![alive(), ejected(), alive(), alive()], vec![Down, Down, Down, Up]),
        ];
        for (start, evidence, want) in cases {
            assert_eq!(run(start, &evidence), want, "from {start:?} with {evidence:?}");
        }
    }

    #[test]
    fn transitions_carry_their_reason() {
        let mut h = Health::default();
        assert_eq!(h.record(failed(), T), None);
        assert_eq!(h.record(failed(), T), None);
        let t = h.record(failed(), T).expect("down");
        assert_eq!((t.from, t.to), (Observed::Up, Observed::Down));
        assert!(t.reason.contains("3 consecutive failures") && t.reason.contains("timeout"), "{}", t.reason);
        assert_eq!(h.reason, t.reason);
    }

    #[test]
    fn an_ejection_says_so() {
        let mut h = Health::default();
        let t = h.record(ejected(), T).expect("down at once");
        assert_eq!((t.from, t.to), (Observed::Up, Observed::Down));
        assert!(t.reason.starts_with("ejected: 5 broken exchanges"), "{}", t.reason);
        assert_eq!(h.record(ejected(), T), None, "already down");
    }

    #[test]
    fn eligibility_needs_up_and_active() {
        let mut h = Health::default();
        assert!(h.eligible() && h.serving());
        h.admin = AdminState::Drain;
        assert!(!h.eligible() && h.serving(), "drain keeps existing sessions working");
        h.admin = AdminState::Active;
        h.observed = Observed::Draining;
        assert!(!h.eligible() && h.serving());
        h.observed = Observed::Down;
        assert!(!h.serving());
    }
}
