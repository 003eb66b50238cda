use super::*;
use crate::config::{BackendConfig, FileConfig};
use crate::hs2::idl;
use crate::thrift::{MessageHeader, MessageKind};
use bytes::Bytes;

fn backend(id: u64) -> Arc<Backend> {
    let config = FileConfig::parse("").and_then(FileConfig::validate).unwrap();
    Arc::new(Backend::new(id, &BackendConfig::new(&format!("b{id}:1")), &config))
}

fn request(name: &str, session: Option<HandleId>, operation: Option<HandleId>) -> Request {
    Request {
        header: MessageHeader::new(name, MessageKind::Call, 1),
        method: idl::method(name),
        session,
        operation,
        statement: None,
        bytes: Bytes::new(),
    }
}

fn pinned_to(route: Route) -> Option<u64> {
    match route {
        Route::Pinned { backend, .. } => Some(backend.id),
        _ => None,
    }
}

#[test]
fn sessions_route_to_their_backend_and_count() {
    let routes = Routes::new();
    let (b0, b1) = (backend(0), backend(1));
    let (s0, s1) = (HandleId::random(), HandleId::random());
    routes.learn_session(s0, b0.clone(), None, 1);
    routes.learn_session(s1, b1.clone(), None, 2);
    assert_eq!(pinned_to(routes.route(&request("ExecuteStatement", Some(s1), None), None)), Some(1));
    assert_eq!(b1.sessions.load(Ordering::Relaxed), 1);
    assert_eq!(b1.pool.stats().pinned, 1);
    routes.forget_session(&s1.guid);
    assert_eq!(b1.sessions.load(Ordering::Relaxed), 0);
    assert_eq!(b1.pool.stats().pinned, 0);
    let r = routes.route(&request("ExecuteStatement", Some(s1), None), None);
    assert!(matches!(r, Route::Reject(Reject::UnknownSession(g)) if g == s1.guid));
}

#[test]
fn a_wrong_secret_is_an_unknown_session() {
    let routes = Routes::new();
    let s = HandleId::random();
    routes.learn_session(s, backend(0), None, 1);
    let forged = HandleId { guid: s.guid, secret: Secret([0; 16]) };
    assert!(matches!(routes.route(&request("GetInfo", Some(forged), None), None), Route::Reject(_)));
}

#[test]
fn operations_follow_their_session_or_its_secret() {
    let routes = Routes::new();
    let s = HandleId::random();
    routes.learn_session(s, backend(3), None, 1);
    let op = HandleId::random();
    routes.learn_operation(op.guid, s.guid);
    assert_eq!(pinned_to(routes.route(&request("FetchResults", None, Some(op)), None)), Some(3));
    // Never seen, but it carries the session's secret (Impala's rule).
    let unseen = HandleId { guid: Guid::random(), secret: s.secret };
    assert_eq!(pinned_to(routes.route(&request("GetOperationStatus", None, Some(unseen)), None)), Some(3));
    let stranger = HandleId::random();
    assert!(matches!(
        routes.route(&request("FetchResults", None, Some(stranger)), None),
        Route::Reject(Reject::UnknownOperation(_))
    ));
    routes.forget_operation(&op.guid);
    assert_eq!(routes.operation_count(), 0);
    assert_eq!(routes.with_session(&s.guid, |e| e.operations.len()), Some(0));
}

#[test]
fn only_the_owner_may_use_a_session() {
    let routes = Routes::new();
    let s = HandleId::random();
    routes.learn_session(s, backend(0), Some("alice".into()), 1);
    let req = request("ExecuteStatement", Some(s), None);
    assert!(pinned_to(routes.route(&req, Some("alice"))).is_some());
    assert!(matches!(routes.route(&req, Some("bob")), Route::Reject(Reject::WrongUser { .. })));
    assert!(matches!(routes.route(&req, None), Route::Reject(Reject::WrongUser { .. })));
}

#[test]
fn gone_errors_forget_entries() {
    let routes = Routes::new();
    let s = HandleId::random();
    routes.learn_session(s, backend(0), None, 1);
    let op = HandleId::random();
    routes.learn_operation(op.guid, s.guid);
    assert!(!routes.forget_on_error(&request("FetchResults", None, Some(op)), "some other failure"));
    assert!(routes.forget_on_error(&request("FetchResults", None, Some(op)), "Invalid query handle: x"));
    assert_eq!((routes.session_count(), routes.operation_count()), (1, 0));
    assert!(routes.forget_on_error(&request("GetInfo", Some(s), None), "Client session expired due to ..."));
    assert_eq!(routes.session_count(), 0);
}

#[test]
fn abandoned_sessions_wait_for_the_grace_period() {
    let routes = Routes::new();
    let s = HandleId::random();
    routes.learn_session(s, backend(0), None, 1);
    let t0 = Instant::now();
    let grace = std::time::Duration::from_secs(60);
    assert!(routes.abandoned(t0 + grace * 2, grace).is_empty(), "still attached");
    routes.detach(&s.guid, t0);
    assert!(routes.abandoned(t0 + grace / 2, grace).is_empty());
    assert_eq!(routes.abandoned(t0 + grace, grace), vec![s.guid]);
    routes.attach(&s.guid);
    assert!(routes.abandoned(t0 + grace * 2, grace).is_empty(), "re-attached");
}

#[test]
fn new_sessions_and_unknown_methods() {
    let routes = Routes::new();
    assert!(matches!(routes.route(&request("OpenSession", None, None), None), Route::NewSession));
    assert!(matches!(routes.route(&request("Frobnicate", None, None), None), Route::Anywhere));
}

#[test]
fn a_backend_going_down_forgets_only_its_sessions_and_counts() {
    let routes = Routes::new();
    let (b0, b1) = (backend(0), backend(1));
    let (s0, s1) = (HandleId::random(), HandleId::random());
    routes.learn_session(s0, b0.clone(), None, 1);
    routes.learn_session(s1, b1.clone(), None, 2);
    routes.learn_operation(Guid::random(), s0.guid);
    routes.learn_operation(Guid::random(), s1.guid);
    routes.learn_orphan_operation(Guid::random(), b0.clone());
    assert_eq!(b0.operations.load(Ordering::Relaxed), 2);
    assert_eq!(routes.forget_backend_sessions(b0.id).len(), 1);
    assert_eq!((routes.session_count(), routes.operation_count()), (1, 1));
    assert_eq!((b0.sessions.load(Ordering::Relaxed), b0.operations.load(Ordering::Relaxed)), (0, 0));
    assert_eq!((b1.sessions.load(Ordering::Relaxed), b1.operations.load(Ordering::Relaxed)), (1, 1));
}
