//! Where a new session goes and whether it may open: the routing policy's placement (`rules`), the
//! group's backends first, the others after them when the rule falls back, and the limits on sessions
//! (`limits.max_sessions_per_user`, a group's `max_sessions`). Also the answer to "where would a new
//! session go, and why" (`GET /api/route`, `hs2-proxy explain`).
//!
//! Limits count the sessions this instance holds plus the OpenSessions on their way (a [`Plan`] holds a
//! place until the reply is learned), so that a burst of OpenSessions cannot pass a limit together.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::limits::Held;
use crate::proxy::Proxy;
use crate::rules::{Fallback, Placement, Who};

/// The backends a new session tries, in order, and the places it holds under the limits.
pub struct Plan {
    pub placement: Placement,
    /// The group's backends (least loaded first), then, with `fallback = "any"`, the others.
    pub backends: Vec<Arc<Backend>>,
    /// Given back once the new session is counted ([`Plan::settle`]), or when the plan is dropped (the
    /// OpenSession failed).
    held: std::sync::Mutex<Vec<Held>>,
}

impl Plan {
    /// The session is counted now (`routing` holds it): its places are given back at once, before the
    /// client sees the reply, so that its next OpenSession is not refused by its own first one.
    pub fn settle(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The rule that placed a session opened on `backend`, as the session view shows it: the rule's
    /// name, and whether it fell back outside its group.
    pub fn placed_by(&self, backend: &Backend) -> Option<String> {
        let rule = self.placement.rule.as_ref()?;
        Some(if self.placement.allows(&backend.addr) { rule.clone() } else { format!("{rule} (fallback)") })
    }
}

/// The plan for a new session of `who`, or the HS2 error text that refuses it.
pub fn plan(proxy: &Proxy, who: &Who<'_>) -> Result<Plan, String> {
    plan_over(proxy, who, proxy.preference())
}

/// The plan over backends in the order `all` (least loaded first).
fn plan_over(proxy: &Proxy, who: &Who<'_>, all: Vec<Arc<Backend>>) -> Result<Plan, String> {
    let mut held = Vec::new();
    if let (Some(user), Some(max)) = (who.user, proxy.config().limits.max_sessions_per_user) {
        held.push(take_place(proxy, &format!("user:{user}"), proxy.sessions_of(user), max).map_err(|n| {
            format!(
                "hs2-proxy: user '{user}' already has {n} sessions through this proxy \
                 (limits.max_sessions_per_user = {max})"
            )
        })?);
    }
    let placement = proxy.policy().place(who);
    let (mut in_group, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|b| placement.allows(&b.addr));
    let mut why_not = None;
    if let Some(group) = &placement.group {
        if let Some(max) = group.max_sessions {
            let sessions = group_sessions(proxy, &group.backends);
            match take_place(proxy, &format!("group:{}", group.name), sessions, max) {
                Ok(h) => held.push(h),
                Err(n) => {
                    in_group.clear();
                    why_not = Some(format!("already has {n} sessions through this proxy (its max_sessions = {max})"));
                }
            }
        }
        if in_group.is_empty() && why_not.is_none() {
            why_not = Some("has no backend taking new sessions".to_string());
        }
    }
    let backends = match (placement.fallback, &why_not) {
        (Fallback::Any, _) => in_group.into_iter().chain(rest).collect(),
        (Fallback::None, None) => in_group,
        (Fallback::None, Some(why)) => {
            let (rule, group) = (placement.rule.as_deref().unwrap_or("?"), placement.group_name());
            return Err(format!(
                "hs2-proxy: rule '{rule}' sends this session to group '{group}', which {why} (fallback = \"none\")"
            ));
        }
    };
    if backends.is_empty() {
        return Err("hs2-proxy: no backend is available for a new session".into());
    }
    Ok(Plan { placement, backends, held: std::sync::Mutex::new(held) })
}

/// Holds a place for an OpenSession of `key` unless `held` sessions plus those on their way reach `max`;
/// `Err` is that count.
fn take_place(proxy: &Proxy, key: &str, held: u64, max: u64) -> Result<Held, u64> {
    let room = max.saturating_sub(held);
    proxy.opening().enter(key, Some(room)).map_err(|on_the_way| held + on_the_way as u64)
}

fn group_sessions(proxy: &Proxy, members: &[String]) -> u64 {
    members.iter().filter_map(|addr| proxy.find_backend(addr)).map(|b| proxy.load(b.id).sessions).sum()
}

/// Where a new session would go, and why (`GET /api/route`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Explanation {
    /// The rule that matches, if any.
    pub rule: Option<String>,
    pub group: Option<String>,
    pub fallback: String,
    /// The backend a session would open on now, in order of preference; empty when refused.
    pub backends: Vec<String>,
    /// Why it would be refused, with the error the client would get.
    pub refused: Option<String>,
    /// The rule or "no rule matched", in words.
    pub reason: String,
}

/// Explains the placement of a session of `who` without opening one (limits count as they are now).
pub fn explain(proxy: &Proxy, who: &Who<'_>) -> Explanation {
    let placement = proxy.policy().place(who);
    let reason = placement.describe();
    // Asking must not turn the tie rotor (nor hold a place, which the plan gives back when dropped here).
    let (backends, refused) = match plan_over(proxy, who, proxy.preference_now()) {
        Ok(p) => (p.backends.iter().map(|b| b.addr.clone()).collect(), None),
        Err(text) => (Vec::new(), Some(text)),
    };
    Explanation {
        rule: placement.rule.clone(),
        group: placement.group.as_ref().map(|g| g.name.clone()),
        fallback: match placement.fallback {
            Fallback::Any => "any".into(),
            Fallback::None => "none".into(),
        },
        backends,
        refused,
        reason,
    }
}
