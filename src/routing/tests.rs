use super::*;
use crate::hs2::idl::{self, names};
use crate::thrift::{MessageHeader, MessageKind};
use bytes::Bytes;

fn request(name: &str, session: Option<HandleId>, operation: Option<HandleId>) -> Request {
    Request {
        header: MessageHeader::new(name, MessageKind::Call, 1),
        method: idl::method(name),
        session,
        operation,
        operation_type: None,
        statement: None,
        session_at: None,
        bytes: Bytes::new(),
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// A session opened through this proxy by `owner` on `backend`, over upstream connection `conn`.
fn opened(routes: &Routes, backend: BackendId, owner: Option<&str>, conn: u64) -> (HandleId, Option<PoolIntent>) {
    let handle = HandleId::random();
    let users =
        SessionUsers { owner: owner.map(str::to_string), user: owner.map(str::to_string), effective_user: None };
    let intent = routes.learn_session(NewSession {
        handle,
        backend,
        users,
        origin: None,
        rule: None,
        carrier: None,
        conn: Some(conn),
        learned: Learned::Opened,
        client: Some(peer()),
    });
    (handle, intent)
}

fn pinned_to(route: Route) -> Option<BackendId> {
    match route {
        Route::Pinned { backend, .. } => Some(backend),
        _ => None,
    }
}

#[test]
fn sessions_route_to_their_backend_count_and_say_what_to_pin() {
    let routes = Routes::new();
    let (_s0, pin0) = opened(&routes, 0, None, 1);
    let (s1, pin1) = opened(&routes, 1, None, 2);
    assert_eq!(pin0, Some(PoolIntent::Pin { backend: 0, conn: 1 }));
    assert_eq!(pin1, Some(PoolIntent::Pin { backend: 1, conn: 2 }));
    assert_eq!(pinned_to(routes.route(&request(names::EXECUTE_STATEMENT, Some(s1), None), None)), Some(1));
    assert_eq!(routes.load(1), Load { sessions: 1, operations: 0 });
    let gone = routes.forget_session(&s1.guid).unwrap();
    assert_eq!(gone.unpin(), Some(PoolIntent::Unpin { backend: 1, conn: 2 }));
    assert_eq!(routes.load(1), Load::default());
    let r = routes.route(&request(names::EXECUTE_STATEMENT, Some(s1), None), None);
    assert!(matches!(r, Route::Reject(Reject::UnknownSession(g)) if g == s1.guid));
}

#[test]
fn a_wrong_secret_is_an_unknown_session() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 0, None, 1);
    let forged = HandleId { guid: s.guid, secret: Secret([0; 16]) };
    assert!(matches!(routes.route(&request(names::GET_INFO, Some(forged), None), None), Route::Reject(_)));
}

#[test]
fn operations_follow_their_session_or_its_secret() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 3, None, 1);
    let op = HandleId::random();
    routes.learn_operation(op, s.guid, Some("select 1"));
    assert_eq!(pinned_to(routes.route(&request(names::FETCH_RESULTS, None, Some(op)), None)), Some(3));
    // Never seen, but it carries the session's secret (Impala's rule).
    let unseen = HandleId { guid: Guid::random(), secret: s.secret };
    assert_eq!(pinned_to(routes.route(&request(names::GET_OPERATION_STATUS, None, Some(unseen)), None)), Some(3));
    let stranger = HandleId::random();
    assert!(matches!(
        routes.route(&request(names::FETCH_RESULTS, None, Some(stranger)), None),
        Route::Reject(Reject::UnknownOperation(_))
    ));
    routes.forget_operation(&op.guid);
    assert_eq!(routes.operation_count(), 0);
    assert_eq!(routes.with_session(&s.guid, |e| e.operations.len()), Some(0));
}

/// An operation call must carry the operation's own secret: a known guid with another secret is refused
/// like an unknown operation, and never routed (issue 11, defect 8).
#[test]
fn a_known_operation_with_a_wrong_secret_is_refused() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 0, None, 1);
    let op = HandleId { guid: Guid::random(), secret: s.secret };
    routes.learn_operation(op, s.guid, None);
    let forged = HandleId { guid: op.guid, secret: Secret([9; 16]) };
    let r = routes.route(&request(names::FETCH_RESULTS, None, Some(forged)), None);
    assert_eq!(r, Route::Reject(Reject::WrongSecret(op.guid)));
    assert!(r_text(&routes, forged).starts_with("Invalid or unknown query handle"));
    // A recovered operation is checked the same way.
    let orphan = HandleId::random();
    routes.learn_orphan_operation(orphan, 2);
    assert_eq!(pinned_to(routes.route(&request(names::FETCH_RESULTS, None, Some(orphan)), None)), Some(2));
    let forged = HandleId { guid: orphan.guid, secret: Secret([1; 16]) };
    assert!(matches!(routes.route(&request(names::FETCH_RESULTS, None, Some(forged)), None), Route::Reject(_)));
}

fn r_text(routes: &Routes, op: HandleId) -> String {
    match routes.route(&request(names::FETCH_RESULTS, None, Some(op)), None) {
        Route::Reject(r) => r.client_text(),
        other => panic!("routed: {other:?}"),
    }
}

#[test]
fn only_the_owner_may_use_a_session() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 0, Some("alice"), 1);
    let req = request(names::EXECUTE_STATEMENT, Some(s), None);
    assert!(pinned_to(routes.route(&req, Some("alice"))).is_some());
    assert!(matches!(routes.route(&req, Some("bob")), Route::Reject(Reject::WrongUser { .. })));
    assert!(matches!(routes.route(&req, None), Route::Reject(Reject::WrongUser { .. })));
}

#[test]
fn gone_errors_forget_entries() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 0, None, 1);
    let op = HandleId::random();
    routes.learn_operation(op, s.guid, None);
    let fetch = request(names::FETCH_RESULTS, None, Some(op));
    assert!(!routes.forget_on_error(&fetch, "some other failure").1);
    assert!(routes.forget_on_error(&fetch, "Invalid query handle: x").1);
    assert_eq!((routes.session_count(), routes.operation_count()), (1, 0));
    let (gone, dropped) =
        routes.forget_on_error(&request(names::GET_INFO, Some(s), None), "Client session expired ...");
    assert!(dropped && gone.is_some_and(|e| e.unpin().is_some()), "the forgotten session comes back to be unpinned");
    assert_eq!(routes.session_count(), 0);
}

#[test]
fn abandoned_sessions_wait_for_the_grace_period() {
    let routes = Routes::new();
    let (s, _) = opened(&routes, 0, None, 1);
    let t0 = Instant::now();
    let grace = Duration::from_secs(60);
    assert!(routes.abandoned(t0 + grace * 2, grace).is_empty(), "still attached");
    routes.detach(&s.guid, peer(), t0);
    assert!(routes.abandoned(t0 + grace / 2, grace).is_empty());
    assert_eq!(routes.abandoned(t0 + grace, grace), vec![s.guid]);
    routes.attach(&s.guid, peer());
    assert!(routes.abandoned(t0 + grace * 2, grace).is_empty(), "re-attached");
}

#[test]
fn a_recovered_session_starts_detached_until_a_connection_uses_it() {
    let routes = Routes::new();
    let handle = HandleId::random();
    let users = SessionUsers::default();
    routes.learn_session(NewSession {
        handle,
        backend: 0,
        users,
        origin: None,
        rule: None,
        carrier: None,
        conn: Some(5),
        learned: Learned::Recovered,
        client: None,
    });
    let view = &routes.snapshot(Instant::now())[0];
    assert_eq!((view.attached, view.learned, view.clients.len()), (0, Learned::Recovered, 0));
    routes.attach(&handle.guid, peer());
    assert_eq!(routes.snapshot(Instant::now())[0].attached, 1);
}

#[test]
fn new_sessions_and_unknown_methods() {
    let routes = Routes::new();
    assert!(matches!(routes.route(&request(names::OPEN_SESSION, None, None), None), Route::NewSession));
    assert!(matches!(routes.route(&request("Frobnicate", None, None), None), Route::Anywhere));
}

#[test]
fn a_backend_going_down_forgets_only_its_sessions_and_counts() {
    let routes = Routes::new();
    let (s0, _) = opened(&routes, 0, None, 1);
    let (s1, _) = opened(&routes, 1, None, 2);
    routes.learn_operation(HandleId::random(), s0.guid, None);
    routes.learn_operation(HandleId::random(), s1.guid, None);
    routes.learn_orphan_operation(HandleId::random(), 0);
    assert_eq!(routes.load(0), Load { sessions: 1, operations: 2 });
    assert_eq!(routes.forget_backend(0).len(), 1);
    assert_eq!((routes.session_count(), routes.operation_count()), (1, 1));
    assert_eq!(routes.load(0), Load::default());
    assert_eq!(routes.load(1), Load { sessions: 1, operations: 1 });
}

#[test]
fn user_names_in_log_lines_are_plain_or_escaped() {
    assert_eq!(LogName(Some("alice@EXAMPLE.COM")).to_string(), "alice@EXAMPLE.COM");
    assert_eq!(LogName(None).to_string(), "-");
    assert_eq!(LogName(Some("")).to_string(), "\"\"");
    // A name from the network never breaks the line or passes for another field.
    assert_eq!(LogName(Some("eve\nINFO forged")).to_string(), "\"eve\\nINFO forged\"");
    assert_eq!(LogName(Some("a user=root")).to_string(), "\"a user=root\"");
    assert_eq!(LogName(Some("x\"y")).to_string(), "\"x\\\"y\"");
}

#[test]
fn a_statement_is_kept_to_its_first_characters_whole() {
    assert_eq!(first_chars("select 1", 200), "select 1");
    assert_eq!(first_chars("select 1", 6), "select");
    assert_eq!(first_chars("", 3), "");
    // Multi-byte characters count as one each and are never cut.
    assert_eq!(first_chars("séléct ü", 4), "sélé");
    assert_eq!(first_chars("日本語のクエリ", 3), "日本語");
    let long = "é".repeat(STATEMENT_CHARS + 5);
    assert_eq!(first_chars(&long, STATEMENT_CHARS).chars().count(), STATEMENT_CHARS);
    assert_eq!(first_chars(&long, STATEMENT_CHARS), long.chars().take(STATEMENT_CHARS).collect::<String>());
}
