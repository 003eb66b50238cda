//! The mock impalad's sessions and operations, with Impala's lookup rules and error texts. No I/O.
//!
//! As in Impala, a session is not tied to the connection that opened it: any connection may use it, as
//! long as (on authenticated connections) the connection's user is the session's user. An operation's
//! secret is its session's secret, and closing a session closes its operations. A closed query moves to
//! the query log, where GetExecSummary and GetRuntimeProfile still find it (impala-shell's `summary` and
//! `profile` run after the query was closed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::rowset::ResultSet;
use super::sql::Statement;
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::reply::{invalid_query_text, invalid_session_text};
use crate::hs2::rpc::hs2::TOperationType;

pub struct Session {
    pub secret: Secret,
    /// The SASL user of the opening connection (a Kerberos principal's short name), else the request's
    /// `username` (Impala's `connected_user`). Connections of this user may use the session.
    pub user: String,
    /// The user the session runs as, from `impala.doas.user` (Impala's `do_as_user`), if delegated.
    pub delegated: Option<String>,
    /// Query options set by OpenSession's configuration or `set k=v`, keys upper-cased.
    pub options: BTreeMap<String, String>,
    pub database: String,
    /// Wall-clock time of the last call that used the session, from any connection (impalad's
    /// `last_accessed_ms`, shown on its web port's `/sessions`).
    pub last_accessed: SystemTime,
    /// When OpenSession created it (a test bed tells sessions of an earlier proxy instance by it).
    pub opened: Instant,
}

impl Session {
    /// A new session of `user`, used now.
    pub fn new(secret: Secret, user: String, delegated: Option<String>, options: BTreeMap<String, String>) -> Session {
        let now = (SystemTime::now(), Instant::now());
        Session {
            secret,
            user,
            delegated,
            options,
            database: "default".to_string(),
            last_accessed: now.0,
            opened: now.1,
        }
    }

    /// Delegated user if any, else the connected user (Impala's `effective_user()`).
    pub fn effective_user(&self) -> &str {
        self.delegated.as_deref().unwrap_or(&self.user)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Running until the given instant (`sleep(MS)`); read through [`Operation::state`].
    Running {
        until: Instant,
    },
    Finished,
    Canceled,
    Failed(String),
}

/// Closed queries kept for GetExecSummary and GetRuntimeProfile (Impala's `--query_log_size`).
pub const QUERY_LOG_SIZE: usize = 100;

pub struct Operation {
    /// The query id (the handle's guid).
    pub id: Guid,
    pub session: Guid,
    pub secret: Secret,
    pub op_type: TOperationType,
    pub statement: String,
    /// The parsed statement; `None` for a metadata call (GetTables, ...).
    pub parsed: Option<Statement>,
    pub state: OpState,
    /// `None` for statements without a result set (and once the query is closed).
    pub results: Option<ResultSet>,
    /// `select crash()`: the next FetchResults breaks the connection mid-reply.
    pub crash_on_fetch: bool,
    /// The session's connected and effective users and its database when the query was submitted (the
    /// profile shows them).
    pub user: String,
    pub effective_user: String,
    pub database: String,
    /// Query options in effect: the session's, then the request's `confOverlay` (keys upper-cased).
    pub options: BTreeMap<String, String>,
    pub submitted: SystemTime,
    pub started: Instant,
    /// How long after `started` the query was closed.
    pub closed_after: Option<Duration>,
    pub rows_fetched: u64,
}

impl Operation {
    /// A finished operation without results, owned by `session`; callers set the rest.
    pub fn new(session_guid: Guid, session: &Session, op_type: TOperationType, statement: &str) -> Operation {
        Operation {
            id: Guid::random(),
            session: session_guid,
            secret: session.secret,
            op_type,
            statement: statement.to_string(),
            parsed: None,
            state: OpState::Finished,
            results: None,
            crash_on_fetch: false,
            user: session.user.clone(),
            effective_user: session.effective_user().to_string(),
            database: session.database.clone(),
            options: session.options.clone(),
            submitted: SystemTime::now(),
            started: Instant::now(),
            closed_after: None,
            rows_fetched: 0,
        }
    }

    /// How long the query has run (until it was closed).
    pub fn elapsed(&self) -> Duration {
        self.closed_after.unwrap_or_else(|| self.started.elapsed())
    }

    /// The state now: a running `sleep` finishes on its own once its time has come.
    pub fn state(&mut self) -> &OpState {
        if let OpState::Running { until } = self.state {
            if Instant::now() >= until {
                self.state = OpState::Finished;
            }
        }
        &self.state
    }

    /// How long until a running operation finishes (`None` when it is not running).
    pub fn remaining(&mut self) -> Option<Duration> {
        match *self.state() {
            OpState::Running { until } => Some(until.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }
}

/// Every session and operation of one mock impalad. Guarded by one mutex, never held across `.await`.
#[derive(Default)]
pub struct State {
    pub sessions: HashMap<Guid, Session>,
    pub ops: HashMap<Guid, Operation>,
    /// Closed queries, oldest first, at most [`QUERY_LOG_SIZE`].
    pub query_log: VecDeque<Operation>,
}

/// A handle that was missing or malformed is reported as the all-zero id, as Impala does.
fn guid_of(handle: Option<HandleId>) -> Guid {
    handle.map(|h| h.guid).unwrap_or(Guid([0; 16]))
}

/// Impala's check that an authenticated connection only uses its own user's sessions.
fn check_user(conn_user: Option<&str>, session: &Session) -> Result<(), String> {
    check_owner(conn_user, &session.user)
}

fn check_owner(conn_user: Option<&str>, owner: &str) -> Result<(), String> {
    match conn_user {
        Some(u) if u != owner => {
            Err(format!("The user authorized on the connection '{u}' does not match the session's user '{owner}'"))
        }
        _ => Ok(()),
    }
}

impl State {
    /// The session a request names (and its guid), checked as Impala checks it.
    pub fn session_mut(
        &mut self,
        handle: Option<HandleId>,
        conn_user: Option<&str>,
    ) -> Result<(Guid, &mut Session), String> {
        let invalid = || invalid_session_text(&guid_of(handle));
        let h = handle.ok_or_else(invalid)?;
        let session = self.sessions.get_mut(&h.guid).filter(|s| s.secret == h.secret).ok_or_else(invalid)?;
        check_user(conn_user, session)?;
        session.last_accessed = SystemTime::now();
        Ok((h.guid, session))
    }

    /// The operation a request names; its session must still be usable by this connection.
    pub fn operation_mut(
        &mut self,
        handle: Option<HandleId>,
        conn_user: Option<&str>,
    ) -> Result<&mut Operation, String> {
        let invalid = || invalid_query_text(&guid_of(handle));
        let h = handle.ok_or_else(invalid)?;
        let op = self.ops.get_mut(&h.guid).filter(|o| o.secret == h.secret).ok_or_else(invalid)?;
        // As impalad: a call on an operation keeps its session alive too.
        let session = self.sessions.get_mut(&op.session).ok_or_else(invalid)?;
        check_user(conn_user, session)?;
        session.last_accessed = SystemTime::now();
        Ok(op)
    }

    /// A live or logged query, for GetExecSummary and GetRuntimeProfile: Impala's text when it has neither.
    pub fn query_mut(&mut self, handle: Option<HandleId>, conn_user: Option<&str>) -> Result<&mut Operation, String> {
        let guid = guid_of(handle);
        let not_found = || format!("Query id {} not found.", guid.impala_id());
        let secret = handle.map(|h| h.secret).ok_or_else(not_found)?;
        let op = match self.ops.get_mut(&guid) {
            Some(op) => op,
            None => self.query_log.iter_mut().rev().find(|op| op.id == guid).ok_or_else(not_found)?,
        };
        if op.secret != secret {
            return Err(not_found());
        }
        check_owner(conn_user, &op.user)?;
        Ok(op)
    }

    /// Closes an operation: it leaves `ops` for the query log, without its results.
    pub fn close_operation(&mut self, guid: &Guid) -> Option<&Operation> {
        let mut op = self.ops.remove(guid)?;
        op.state();
        op.results = None;
        op.closed_after = Some(op.started.elapsed());
        if self.query_log.len() >= QUERY_LOG_SIZE {
            self.query_log.pop_front();
        }
        self.query_log.push_back(op);
        self.query_log.back()
    }

    /// Closes a session and every operation it owns.
    pub fn close_session(&mut self, guid: &Guid) {
        self.sessions.remove(guid);
        let owned: Vec<Guid> = self.ops.values().filter(|op| op.session == *guid).map(|op| op.id).collect();
        for op in owned {
            self.close_operation(&op);
        }
    }

    pub fn clear(&mut self) {
        self.sessions.clear();
        self.ops.clear();
        self.query_log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::rpc::hs2::TOperationType as op_type;

    fn session(user: &str) -> (HandleId, Session) {
        let id = HandleId::random();
        (id, Session::new(id.secret, user.into(), None, BTreeMap::new()))
    }

    #[test]
    fn lookups_follow_impala() {
        let mut st = State::default();
        let (id, s) = session("alice");
        st.sessions.insert(id.guid, s);
        assert!(st.session_mut(Some(id), Some("alice")).is_ok());
        assert!(st.session_mut(Some(id), None).is_ok(), "unauthenticated connections are not checked");
        let err = st.session_mut(Some(id), Some("bob")).err().unwrap();
        assert!(err.starts_with("The user authorized on the connection 'bob'"), "{err}");
        let wrong_secret = HandleId { guid: id.guid, secret: Secret([0; 16]) };
        assert_eq!(st.session_mut(Some(wrong_secret), None).err(), Some(invalid_session_text(&id.guid)));
        assert!(st.session_mut(None, None).err().unwrap().starts_with("Invalid session id: 0000000000000000:"));

        let mut op = Operation::new(id.guid, &st.sessions[&id.guid], op_type::EXECUTE_STATEMENT, "select 1");
        op.state = OpState::Running { until: Instant::now() };
        let op_id = HandleId { guid: op.id, secret: id.secret };
        st.ops.insert(op_id.guid, op);
        let op = st.operation_mut(Some(op_id), Some("alice")).unwrap();
        assert_eq!(op.state(), &OpState::Finished);
        st.close_session(&id.guid);
        assert_eq!(st.operation_mut(Some(op_id), None).err(), Some(invalid_query_text(&op_id.guid)));
        // Closed, but still in the query log for its summary and profile.
        assert_eq!(st.query_mut(Some(op_id), Some("alice")).map(|op| op.statement.clone()), Ok("select 1".into()));
        assert!(st.query_mut(Some(op_id), Some("bob")).is_err());
        let forged = HandleId { guid: op_id.guid, secret: Secret([0; 16]) };
        let not_found = format!("Query id {} not found.", op_id.guid.impala_id());
        assert_eq!(st.query_mut(Some(forged), None).err(), Some(not_found));
    }

    #[test]
    fn the_query_log_is_bounded() {
        let mut st = State::default();
        let (id, s) = session("alice");
        let first = Operation::new(id.guid, &s, op_type::EXECUTE_STATEMENT, "select 1").id;
        for i in 0..=QUERY_LOG_SIZE {
            let mut op = Operation::new(id.guid, &s, op_type::EXECUTE_STATEMENT, "select 1");
            if i == 0 {
                op.id = first;
            }
            let guid = op.id;
            st.ops.insert(guid, op);
            assert!(st.close_operation(&guid).is_some_and(|op| op.closed_after.is_some()));
        }
        assert_eq!(st.query_log.len(), QUERY_LOG_SIZE);
        assert!(st.query_mut(Some(HandleId { guid: first, secret: id.secret }), None).is_err(), "oldest dropped");
    }
}
