//! The tables' side of moving a session to another backend (`migrate` does the I/O). No I/O.
//!
//! A session can move when the proxy saw its OpenSession (it keeps the request and the credentials it
//! was opened with), every statement it ran is harmless or replayable (`hs2::session_state`), and it has
//! no open operation. While it moves, calls on it wait ([`Route::Moving`]). After the move the client
//! keeps its handle: the entry stays under the client's guid and remembers the handle on the new backend
//! (`upstream`), which every request's session handle is rewritten to.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{BackendId, Guid, HandleId, PoolIntent, Routes};
use crate::hs2::session_state::StateLog;
use crate::identity::Credentials;

/// What re-opening a session elsewhere needs: its OpenSession as the proxy sent it upstream, and the
/// credentials and delegation it was opened with (kept in memory only; never logged).
pub struct Origin {
    pub open_request: Bytes,
    pub creds: Credentials,
    pub delegate_as: Option<String>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({:?}, delegate_as: {:?})", self.creds, self.delegate_as)
    }
}

/// A session's movability and moves.
#[derive(Debug)]
pub struct Mobility {
    origin: Option<Arc<Origin>>,
    pub state: StateLog,
    /// The session's handle on its backend, once it was moved (the client keeps its own).
    pub upstream: Option<HandleId>,
    pub moving: bool,
    /// Calls of the session on their way to its backend now (counted from routing until their reply was
    /// learned): an evacuation waits for them, or the move would drop the operation such a call opens and
    /// miss a `USE` or `SET` it runs.
    pub calls: u32,
    /// Its backend went down while it could move: it moves on its next call.
    pub orphaned: bool,
    pub moves: u32,
}

impl Mobility {
    pub fn new(origin: Option<Arc<Origin>>) -> Mobility {
        Mobility {
            origin,
            state: StateLog::default(),
            upstream: None,
            moving: false,
            calls: 0,
            orphaned: false,
            moves: 0,
        }
    }

    /// Why the session can never move; `None` when it can (given no open operation).
    pub fn blocked(&self) -> Option<&str> {
        match self.origin {
            None => Some("found by asking the backends: the proxy never saw its OpenSession"),
            Some(_) => self.state.blocked(),
        }
    }
}

/// What a move needs, taken when it starts.
#[derive(Clone, Debug)]
pub struct MovePlan {
    pub guid: Guid,
    pub from: BackendId,
    /// The session's handle on `from` (to close it there afterwards).
    pub old: HandleId,
    pub origin: Arc<Origin>,
    pub statements: Vec<String>,
}

/// Why a session cannot move now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotNow {
    #[error("no such session")]
    Unknown,
    #[error("{0}")]
    Never(String),
    #[error("{0} open operation(s)")]
    Busy(usize),
    #[error("{0} call(s) on their way to its backend")]
    InFlight(u32),
    #[error("already moving")]
    Moving,
}

impl NotNow {
    /// True when waiting may help (operations close, a move ends).
    pub fn may_change(&self) -> bool {
        matches!(self, NotNow::Busy(_) | NotNow::InFlight(_) | NotNow::Moving)
    }
}

impl Routes {
    /// Records a statement the session's backend accepted, for its replay (or to block its moves). With
    /// the operation it opened, a replayable statement counts once that operation succeeded
    /// ([`Routes::operation_outcome`]); without one, at once.
    pub fn record_statement(&self, session: &Guid, op: Option<&Guid>, statement: &str) {
        if let Some(mut e) = self.sessions.get_mut(session) {
            match op {
                Some(op) => e.mobility.state.record_pending(op.0, statement),
                None => e.mobility.state.record(statement),
            }
        }
    }

    /// What GetOperationStatus said of an operation (`TOperationState`): a finished one makes its
    /// statement count for replay; a failed, cancelled or closed one drops it.
    pub fn operation_outcome(&self, op: &Guid, operation_state: i64) {
        use crate::hs2::idl::enums::t_operation_state as st;
        let failed = [st::ERROR_STATE, st::CANCELED_STATE, st::CLOSED_STATE, st::TIMEDOUT_STATE, st::UKNOWN_STATE];
        let succeeded = match operation_state {
            s if s == i64::from(st::FINISHED_STATE) => true,
            s if failed.iter().any(|f| i64::from(*f) == s) => false,
            _ => return,
        };
        self.settle_statement(op, succeeded);
    }

    /// Settles the statement of operation `op`, if one waits for it.
    pub(super) fn settle_statement(&self, op: &Guid, succeeded: bool) {
        let Some(session) = self.operations.get(op).and_then(|o| o.session) else { return };
        if let Some(mut e) = self.sessions.get_mut(&session) {
            e.mobility.state.settle(&op.0, succeeded);
        }
    }

    /// Starts moving `guid`: calls on it wait from now on. `ignore_operations` for a session whose backend
    /// is gone (its operations went with it).
    pub fn begin_move(&self, guid: &Guid, ignore_operations: bool) -> Result<MovePlan, NotNow> {
        let mut e = self.sessions.get_mut(guid).ok_or(NotNow::Unknown)?;
        if let Some(why) = e.mobility.blocked() {
            return Err(NotNow::Never(why.to_string()));
        }
        if e.mobility.moving {
            return Err(NotNow::Moving);
        }
        if !ignore_operations && !e.operations.is_empty() {
            return Err(NotNow::Busy(e.operations.len()));
        }
        if !ignore_operations && e.mobility.calls > 0 {
            return Err(NotNow::InFlight(e.mobility.calls));
        }
        let Some(origin) = e.mobility.origin.clone() else { return Err(NotNow::Never("no origin".into())) };
        e.mobility.moving = true;
        let statements = e.mobility.state.statements().map(str::to_string).collect();
        Ok(MovePlan { guid: *guid, from: e.backend, old: e.upstream_handle(*guid), origin, statements })
    }

    /// A call of `guid` is on its way to the session's backend: counted, and noted as the session's last
    /// use. False (nothing counted) when the session started moving since the call was routed: route it
    /// again. Checked under the same entry lock as [`Routes::begin_move`], so that a call and a move never
    /// both go ahead.
    pub fn enter_call(&self, guid: &Guid) -> bool {
        let Some(mut e) = self.sessions.get_mut(guid) else { return true };
        if e.mobility.moving {
            return false;
        }
        e.mobility.calls += 1;
        e.last_used = Instant::now();
        true
    }

    /// The call counted by [`Routes::enter_call`] is over (its reply learned, or it failed).
    pub fn leave_call(&self, guid: &Guid) {
        if let Some(mut e) = self.sessions.get_mut(guid) {
            e.mobility.calls = e.mobility.calls.saturating_sub(1);
        }
    }

    /// The move succeeded: the session now lives on `to` as `new` (opened over connection `conn`).
    /// Returns what to do to the pools (unpin the old connection, pin the new one).
    pub fn finish_move(&self, plan: &MovePlan, to: BackendId, new: HandleId, conn: u64) -> Vec<PoolIntent> {
        let mut intents = Vec::new();
        let Some(mut e) = self.sessions.get_mut(&plan.guid) else { return intents };
        intents.extend(e.unpin());
        let operations: Vec<Guid> = e.operations.drain().collect();
        let from = e.backend;
        e.backend = to;
        e.pinned_conn = Some(conn);
        e.mobility.upstream = Some(new);
        e.mobility.moving = false;
        e.mobility.orphaned = false;
        e.mobility.moves += 1;
        // Only an operation that was open could still have a step waiting: it died with the old session.
        e.mobility.state.drop_pending();
        e.statement_op = None;
        drop(e);
        intents.push(PoolIntent::Pin { backend: to, conn });
        for op in &operations {
            if self.operations.remove(op).is_some() {
                self.count_operation_gone(from);
            }
        }
        if let Some(mut l) = self.loads.get_mut(&from) {
            l.sessions = l.sessions.saturating_sub(1);
        }
        self.loads.entry(to).or_default().sessions += 1;
        // Impala gives the new session's operations its secret: they must still find this session.
        self.by_secret.remove_if(&plan.old.secret.0, |_, g| *g == plan.guid);
        self.by_secret.insert(new.secret.0, plan.guid);
        intents
    }

    /// The move failed: the session stays where it was.
    pub fn abort_move(&self, guid: &Guid) {
        if let Some(mut e) = self.sessions.get_mut(guid) {
            e.mobility.moving = false;
        }
    }

    /// Marks the sessions of a backend that went down: those that can move stay known (without their
    /// operations, which died with the backend) and move on their next call; the rest are forgotten and
    /// returned, like [`Routes::forget_backend`] does for all of them.
    pub fn orphan_backend(&self, backend: BackendId) -> (usize, Vec<(Guid, super::SessionEntry)>) {
        let on_it: Vec<Guid> = self.sessions.iter().filter(|e| e.backend == backend).map(|e| *e.key()).collect();
        let mut kept = 0;
        let mut forgotten = Vec::new();
        for guid in on_it {
            let movable = self.sessions.get(&guid).is_some_and(|e| e.mobility.blocked().is_none());
            if !movable {
                forgotten.extend(self.forget_session(&guid).map(|e| (guid, e)));
                continue;
            }
            let ops: Vec<Guid> = match self.sessions.get_mut(&guid) {
                Some(mut e) => {
                    e.mobility.orphaned = true;
                    e.mobility.state.drop_pending();
                    e.statement_op = None;
                    e.operations.drain().collect()
                }
                None => continue,
            };
            ops.iter().for_each(|op| {
                if self.operations.remove(op).is_some() {
                    self.count_operation_gone(backend);
                }
            });
            kept += 1;
        }
        let orphans: Vec<Guid> =
            self.operations.iter().filter(|o| o.session.is_none() && o.backend == backend).map(|o| *o.key()).collect();
        orphans.iter().for_each(|op| self.forget_operation(op));
        (kept, forgotten)
    }

    /// True when the session waits for a move because its backend died.
    pub fn is_orphaned(&self, guid: &Guid) -> bool {
        self.sessions.get(guid).is_some_and(|e| e.mobility.orphaned)
    }

    /// Sessions on `backend` (for an evacuation), with whether each can move now.
    pub fn sessions_on(&self, backend: BackendId) -> Vec<Guid> {
        self.sessions.iter().filter(|e| e.backend == backend).map(|e| *e.key()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Learned, NewSession, SessionUsers};
    use super::*;

    fn movable(routes: &Routes) -> Guid {
        let handle = HandleId::random();
        let origin = Origin {
            open_request: Bytes::new(),
            creds: Credentials { user: "u".into(), password: "p".into() },
            delegate_as: None,
        };
        routes.learn_session(NewSession {
            handle,
            backend: 0,
            users: SessionUsers { owner: None, user: None, effective_user: None },
            origin: Some(Arc::new(origin)),
            rule: None,
            carrier: None,
            conn: Some(1),
            learned: Learned::Opened,
            client: None,
        });
        handle.guid
    }

    /// A call on its way and a move never both go ahead: the entry lock orders them.
    #[test]
    fn a_move_waits_for_calls_on_their_way_and_calls_wait_for_a_move() {
        let routes = Routes::new();
        let g = movable(&routes);
        assert!(routes.enter_call(&g));
        assert_eq!(routes.begin_move(&g, false).unwrap_err(), NotNow::InFlight(1));
        assert!(routes.begin_move(&g, false).unwrap_err().may_change());
        routes.leave_call(&g);
        let plan = routes.begin_move(&g, false).expect("idle: it may move");
        assert!(!routes.enter_call(&g), "a call routed before the move started must route again");
        routes.abort_move(&plan.guid);
        assert!(routes.enter_call(&g));
        // A backend that died takes its calls with it: a move on failure does not wait for them.
        assert!(routes.begin_move(&g, true).is_ok());
    }

    /// A statement counts for replay when GetOperationStatus says FINISHED, or when its operation is closed
    /// unseen; not when it says ERROR.
    #[test]
    fn statements_count_by_their_operations_outcome() {
        use crate::hs2::idl::enums::t_operation_state as st;
        let routes = Routes::new();
        let g = movable(&routes);
        let run = |statement: &str| {
            let op = HandleId::random();
            routes.learn_operation(op, g, Some(statement));
            routes.record_statement(&g, Some(&op.guid), statement);
            op.guid
        };
        let ok = run("use a");
        routes.operation_outcome(&ok, i64::from(st::RUNNING_STATE));
        routes.operation_outcome(&ok, i64::from(st::FINISHED_STATE));
        let failed = run("use no_such_db");
        routes.operation_outcome(&failed, i64::from(st::ERROR_STATE));
        let unseen = run("set k=1");
        for op in [ok, failed, unseen] {
            routes.forget_operation(&op);
        }
        let plan = routes.begin_move(&g, false).expect("idle");
        assert_eq!(plan.statements, ["use a", "set k=1"]);
    }
}
