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
use thrift::protocol::{TBinaryInputProtocol, TInputProtocol, TType};

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

/// The handles a call names, where the mock's dispatch looks for them. `args` is the call's body after
/// the message header; it is read with Apache Thrift's protocol (never the proxy's codec).
pub(super) fn named_handles(method: &str, args: &[u8]) -> Vec<(HandleKind, Guid)> {
    let (op_field, session_field) = if QUERY_AND_SESSION.contains(&method) {
        (Some(1), Some(2))
    } else if OPERATION_AT_1.contains(&method) {
        (Some(1), None)
    } else if SESSION_AT_1.contains(&method) {
        (None, Some(1))
    } else {
        return Vec::new();
    };
    let wanted: Vec<i16> = op_field.into_iter().chain(session_field).collect();
    let mut rest = args;
    let mut input = TBinaryInputProtocol::new(&mut rest, true);
    let found = request_handles(&mut input, &wanted).unwrap_or_default();
    let kind_of = |id: i16| if Some(id) == op_field { HandleKind::Operation } else { HandleKind::Session };
    let mut out: Vec<(HandleKind, Guid)> = found.into_iter().map(|(id, g)| (kind_of(id), g)).collect();
    out.sort_by_key(|(k, _)| *k != HandleKind::Operation);
    out.retain(|(_, g)| g.0 != [0; 16]);
    out
}

/// The guids of the handles in fields `ids` of the request (`args.1`).
fn request_handles(i: &mut dyn TInputProtocol, ids: &[i16]) -> thrift::Result<Vec<(i16, Guid)>> {
    let mut out = Vec::new();
    i.read_struct_begin()?;
    loop {
        let f = i.read_field_begin()?;
        if f.field_type == TType::Stop {
            break;
        }
        if f.id == Some(1) && f.field_type == TType::Struct {
            i.read_struct_begin()?;
            loop {
                let g = i.read_field_begin()?;
                if g.field_type == TType::Stop {
                    break;
                }
                match g.id {
                    Some(id) if ids.contains(&id) && g.field_type == TType::Struct => {
                        out.extend(handle_guid(i)?.map(|guid| (id, guid)));
                    }
                    _ => i.skip(g.field_type)?,
                }
                i.read_field_end()?;
            }
            i.read_struct_end()?;
        } else {
            i.skip(f.field_type)?;
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    Ok(out)
}

/// A `TSessionHandle` or `TOperationHandle`: field 1 is its `THandleIdentifier`, whose field 1 is the guid.
fn handle_guid(i: &mut dyn TInputProtocol) -> thrift::Result<Option<Guid>> {
    let mut guid = None;
    i.read_struct_begin()?;
    loop {
        let f = i.read_field_begin()?;
        if f.field_type == TType::Stop {
            break;
        }
        if f.id == Some(1) && f.field_type == TType::Struct {
            i.read_struct_begin()?;
            loop {
                let g = i.read_field_begin()?;
                if g.field_type == TType::Stop {
                    break;
                }
                if g.id == Some(1) && g.field_type == TType::String {
                    guid = <[u8; 16]>::try_from(i.read_bytes()?).ok().map(Guid);
                } else {
                    i.skip(g.field_type)?;
                }
                i.read_field_end()?;
            }
            i.read_struct_end()?;
        } else {
            i.skip(f.field_type)?;
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    Ok(guid)
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
    pub(super) fn note_unknown_handles(&self, method: &str, seqid: i32, args: &[u8]) {
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

    #[test]
    fn handles_are_found_where_the_mock_reads_them() {
        use crate::hs2::rpc::{self, hs2::*, impala::*};
        use crate::hs2::rpc::{session_handle, Method};
        fn body<M: Method>(req: &M::Req) -> Vec<u8> {
            let bytes = rpc::encode_call::<M>(1, req).unwrap();
            rpc::decode_header(&bytes, &crate::thrift::Limits::REQUEST).unwrap().1.to_vec()
        }
        let (s, op) = (HandleId::random(), HandleId::random());
        let op_handle =
            TOperationHandle::new(THandleIdentifier::from(&op), TOperationType::EXECUTE_STATEMENT, true, None);
        let exec = TExecuteStatementReq::new(session_handle(&s), "select 1".to_string(), None, None, None);
        assert_eq!(
            named_handles("ExecuteStatement", &body::<rpc::ExecuteStatement>(&exec)),
            vec![(HandleKind::Session, s.guid)]
        );
        let fetch = TFetchResultsReq::new(op_handle.clone(), TFetchOrientation::FETCH_NEXT, 10, None);
        assert_eq!(
            named_handles("FetchResults", &body::<rpc::FetchResults>(&fetch)),
            vec![(HandleKind::Operation, op.guid)]
        );
        let profile = TGetRuntimeProfileReq::new(op_handle, session_handle(&s), None, None);
        assert_eq!(
            named_handles("GetRuntimeProfile", &body::<rpc::GetRuntimeProfile>(&profile)),
            vec![(HandleKind::Operation, op.guid), (HandleKind::Session, s.guid)]
        );
        let open = TOpenSessionReq::new(TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6, None, None, None);
        assert!(named_handles("OpenSession", &body::<rpc::OpenSession>(&open)).is_empty());
        let zero = crate::backend::probe::zero_handle();
        let info = TGetInfoReq::new(session_handle(&zero), TGetInfoType::CLI_DBMS_VER);
        assert!(
            named_handles("GetInfo", &body::<rpc::GetInfo>(&info)).is_empty(),
            "the probe's zero handle is nobody's"
        );
        assert!(named_handles("GetInfo", &[]).is_empty());
    }
}
