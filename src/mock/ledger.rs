//! What the mock holds, and the calls that named a handle it does not hold: the evidence a test bed
//! with several mocks needs to tell a misrouted call from a stale one. No I/O.
//!
//! A mock alone cannot call a call misrouted: a handle it does not hold may be stale (its session was
//! closed, or lived on a server that died) or belong to another server. So every such call is recorded
//! here with the method and seqid it came with, and whoever runs the mocks decides: a call is misrouted
//! only if ANOTHER mock holds the handle (`hs2_proxy::soak` checks that). The all-zero handle is left
//! out: it is the health probe's, and no server holds it.

use std::collections::VecDeque;
use std::time::Instant;

use super::{lock, Inner, MockImpalad};
use crate::hs2::handle::Guid;
use crate::thrift::value::{Struct, Value};

/// Recorded calls kept until taken; beyond it the oldest are dropped (and counted as dropped, so that a
/// checker knows it could not see everything).
pub const MAX_RECORDED: usize = 100_000;

/// Which table a handle was looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    Session,
    Operation,
}

/// One call that named a handle this mock did not hold.
#[derive(Clone, Debug)]
pub struct UnknownHandle {
    pub guid: Guid,
    pub kind: HandleKind,
    pub method: String,
    pub seqid: i32,
    pub at: Instant,
}

#[derive(Default)]
pub(super) struct UnknownLog {
    entries: VecDeque<UnknownHandle>,
    total: u64,
    dropped: u64,
}

/// Methods whose `req.1` is an operation handle, as the mock's own dispatch reads them (`op_calls`).
const OPERATION_AT_1: &[&str] = &[
    "GetOperationStatus",
    "CancelOperation",
    "CloseOperation",
    "CloseImpalaOperation",
    "GetResultSetMetadata",
    "FetchResults",
    "GetLog",
];
/// Methods with an operation at `req.1` and a session at `req.2`.
const QUERY_AND_SESSION: &[&str] = &["GetExecSummary", "GetRuntimeProfile"];
/// Methods whose `req.1` is a session handle and that the mock checks (`calls`).
const SESSION_AT_1: &[&str] = &[
    "CloseSession",
    "GetInfo",
    "ExecuteStatement",
    "GetTypeInfo",
    "GetCatalogs",
    "GetSchemas",
    "GetTables",
    "GetTableTypes",
    "GetColumns",
    "GetFunctions",
    "GetPrimaryKeys",
    "GetCrossReference",
    "PingImpalaHS2Service",
    "GetBackendConfig",
    "GetExecutorMembership",
];

/// The guid of the `THandleIdentifier` in handle field `id` of `req`.
fn guid_at(req: &Struct, id: i16) -> Option<Guid> {
    let bytes = req.get_struct(id)?.get_struct(1)?.get_bytes(1)?;
    Some(Guid(bytes.try_into().ok()?))
}

/// The handles a call names, where the mock's dispatch looks for them.
pub(super) fn named_handles(method: &str, args: &Struct) -> Vec<(HandleKind, Guid)> {
    let Some(req) = args.get(1).and_then(Value::as_struct) else { return Vec::new() };
    let mut out = Vec::new();
    if OPERATION_AT_1.contains(&method) || QUERY_AND_SESSION.contains(&method) {
        out.extend(guid_at(req, 1).map(|g| (HandleKind::Operation, g)));
    }
    if QUERY_AND_SESSION.contains(&method) {
        out.extend(guid_at(req, 2).map(|g| (HandleKind::Session, g)));
    }
    if SESSION_AT_1.contains(&method) {
        out.extend(guid_at(req, 1).map(|g| (HandleKind::Session, g)));
    }
    out.retain(|(_, g)| g.0 != [0; 16]);
    out
}

impl Inner {
    /// True when this mock has the handle: a live session, a live operation, or a query in the log.
    fn holds(&self, kind: HandleKind, guid: &Guid) -> bool {
        let st = self.state();
        match kind {
            HandleKind::Session => st.sessions.contains_key(guid),
            HandleKind::Operation => st.ops.contains_key(guid) || st.query_log.iter().any(|op| op.id == *guid),
        }
    }

    /// Records every handle of this call that the mock does not hold (before the call runs).
    pub(super) fn note_unknown_handles(&self, method: &str, seqid: i32, args: &Struct) {
        for (kind, guid) in named_handles(method, args) {
            if self.holds(kind, &guid) {
                continue;
            }
            let mut log = lock(&self.unknown);
            log.total += 1;
            if log.entries.len() >= MAX_RECORDED {
                log.entries.pop_front();
                log.dropped += 1;
            }
            log.entries.push_back(UnknownHandle { guid, kind, method: method.to_string(), seqid, at: Instant::now() });
        }
    }
}

impl MockImpalad {
    /// Takes the calls recorded since the last take that named a handle this mock did not hold.
    pub fn take_unknown_handles(&self) -> Vec<UnknownHandle> {
        lock(&self.inner.unknown).entries.drain(..).collect()
    }

    /// How many such calls there were in all, and how many were dropped before anyone took them.
    pub fn unknown_handle_counts(&self) -> (u64, u64) {
        let log = lock(&self.inner.unknown);
        (log.total, log.dropped)
    }

    /// True when this mock holds `guid` as a session, a live operation or a logged query.
    pub fn holds(&self, guid: &Guid) -> bool {
        self.inner.holds(HandleKind::Session, guid) || self.inner.holds(HandleKind::Operation, guid)
    }

    /// Every live session with the instant it was opened.
    pub fn sessions_opened(&self) -> Vec<(Guid, Instant)> {
        self.inner.state().sessions.iter().map(|(g, s)| (*g, s.opened)).collect()
    }

    /// The live operations of `session`, with the instant each started.
    pub fn operations_of(&self, session: &Guid) -> Vec<(Guid, Instant)> {
        let st = self.inner.state();
        st.ops.values().filter(|op| op.session == *session).map(|op| (op.id, op.started)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::handle::HandleId;
    use crate::hs2::requests;

    #[test]
    fn handles_are_found_where_the_mock_reads_them() {
        let (s, op) = (HandleId::random(), HandleId::random());
        let session_req = Struct::new().with(1, requests::session_handle(&s));
        let args = |req: Struct| Struct::new().with(1, req.into_value());
        assert_eq!(named_handles("ExecuteStatement", &args(session_req.clone())), vec![(HandleKind::Session, s.guid)]);
        let op_req = Struct::new().with(1, requests::session_handle(&op));
        assert_eq!(named_handles("FetchResults", &args(op_req.clone())), vec![(HandleKind::Operation, op.guid)]);
        let both = op_req.with(2, requests::session_handle(&s));
        assert_eq!(
            named_handles("GetRuntimeProfile", &args(both)),
            vec![(HandleKind::Operation, op.guid), (HandleKind::Session, s.guid)]
        );
        assert!(named_handles("OpenSession", &args(session_req)).is_empty());
        let zero = Struct::new().with(1, requests::session_handle(&crate::backend::probe::zero_handle()));
        assert!(named_handles("GetInfo", &args(zero)).is_empty(), "the probe's zero handle is nobody's");
        assert!(named_handles("GetInfo", &Struct::new()).is_empty());
    }
}
