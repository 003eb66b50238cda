//! The mock impalad's sessions and operations, with Impala's lookup rules and error texts. No I/O.
//!
//! As in Impala, a session is not tied to the connection that opened it: any connection may use it, as
//! long as (on authenticated connections) the connection's user is the session's user. An operation's
//! secret is its session's secret, and closing a session closes its operations.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::rowset::ResultSet;
use crate::hs2::handle::{Guid, HandleId, Secret};
use crate::hs2::reply::{invalid_query_text, invalid_session_text};

pub struct Session {
    pub secret: Secret,
    /// The SASL user of the opening connection, else the request's `username` (Impala's `connected_user`).
    pub user: String,
    /// Query options set by OpenSession's configuration or `set k=v`, keys upper-cased.
    pub options: BTreeMap<String, String>,
    pub database: String,
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

pub struct Operation {
    /// The query id (the handle's guid).
    pub id: Guid,
    pub session: Guid,
    pub secret: Secret,
    pub op_type: i32,
    pub statement: String,
    pub state: OpState,
    /// `None` for statements without a result set.
    pub results: Option<ResultSet>,
    /// `select crash()`: the next FetchResults breaks the connection mid-reply.
    pub crash_on_fetch: bool,
}

impl Operation {
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
}

/// A handle that was missing or malformed is reported as the all-zero id, as Impala does.
fn guid_of(handle: Option<HandleId>) -> Guid {
    handle.map(|h| h.guid).unwrap_or(Guid([0; 16]))
}

/// Impala's check that an authenticated connection only uses its own user's sessions.
fn check_user(conn_user: Option<&str>, session: &Session) -> Result<(), String> {
    match conn_user {
        Some(u) if u != session.user => Err(format!(
            "The user authorized on the connection '{u}' does not match the session's user '{}'",
            session.user
        )),
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
        let session = self.sessions.get(&op.session).ok_or_else(invalid)?;
        check_user(conn_user, session)?;
        Ok(op)
    }

    /// Closes a session and every operation it owns.
    pub fn close_session(&mut self, guid: &Guid) {
        self.sessions.remove(guid);
        self.ops.retain(|_, op| op.session != *guid);
    }

    pub fn clear(&mut self) {
        self.sessions.clear();
        self.ops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2client::wire::op_type;

    fn session(user: &str) -> (HandleId, Session) {
        let id = HandleId::random();
        (id, Session { secret: id.secret, user: user.into(), options: BTreeMap::new(), database: "default".into() })
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

        let op_id = HandleId { guid: Guid::random(), secret: id.secret };
        let op = Operation {
            id: op_id.guid,
            session: id.guid,
            secret: id.secret,
            op_type: op_type::EXECUTE_STATEMENT,
            statement: "select 1".into(),
            state: OpState::Running { until: Instant::now() },
            results: None,
            crash_on_fetch: false,
        };
        st.ops.insert(op_id.guid, op);
        let op = st.operation_mut(Some(op_id), Some("alice")).unwrap();
        assert_eq!(op.state(), &OpState::Finished);
        st.close_session(&id.guid);
        assert_eq!(st.operation_mut(Some(op_id), None).err(), Some(invalid_query_text(&op_id.guid)));
    }
}
