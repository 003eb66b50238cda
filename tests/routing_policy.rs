//! Routing policy through real sockets (issue 17): `[[groups]]` and `[[rules]]` place new sessions by
//! user, effective user, user group, client address, OpenSession configuration and listener, checked on
//! the mock impalads themselves; `fallback`; the session limits and the connection limits with their
//! texts; `/api/route` and `hs2-proxy explain`; reload of the rules on SIGHUP's path.

mod common;

use std::time::Duration;

use common::pki::{client_via, Via};
use common::*;
use hs2_proxy::admin::api::SessionsJson;
use hs2_proxy::config::{Config, FileConfig};
use hs2_proxy::conn::ThriftConn;
use hs2_proxy::hs2::handle::HandleId;
use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::placement::Explanation;
use hs2_proxy::server::{self, ProxyHandle};
use hs2_proxy::thrift::framing::Framing;
use tokio::net::TcpSocket;

/// The config of a proxy in front of `mocks` with `policy` (TOML: groups, rules, user_groups), where
/// `{0}`, `{1}`, ... in `policy` stand for the mocks' addresses.
fn config_with(mocks: &[MockImpalad], policy: &str, extra: &str) -> Config {
    let addrs: Vec<String> = mocks.iter().map(|m| m.local_addr().to_string()).collect();
    let mut policy = policy.to_string();
    for (i, a) in addrs.iter().enumerate() {
        policy = policy.replace(&format!("{{{i}}}"), a);
    }
    let list: Vec<String> = addrs.iter().map(|a| format!("{a:?}")).collect();
    let text = format!("backends = [{}]\n{extra}\n{policy}", list.join(", "));
    let mut c = FileConfig::parse(&text).and_then(FileConfig::validate).unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    c.health.interval = Duration::from_secs(3600);
    c
}

async fn start(c: Config) -> ProxyHandle {
    server::start(c).await.expect("proxy starts")
}

async fn open_as(proxy: &ProxyHandle, user: &str, config: &[(&str, &str)]) -> Result<HandleId, String> {
    let mut c = connect(proxy, &ClientAuth::NoSasl).await;
    c.open_session(Some(user), config).await.map_err(|e| error_text(Err::<(), _>(e)))
}

/// Which mock holds `s` (ground truth from the backends).
fn holder(mocks: &[MockImpalad], s: &HandleId) -> usize {
    let held: Vec<usize> = (0..mocks.len()).filter(|i| mocks[*i].has_session(&s.guid)).collect();
    assert_eq!(held.len(), 1, "exactly one impalad holds {s:?}: {held:?}");
    held[0]
}

async fn admin_get(proxy: &ProxyHandle, path: &str) -> (u16, String) {
    let addr = proxy.admin_addr.expect("admin listener").to_string();
    hs2_proxy::cli_admin::http(&addr, "GET", path, None).await.expect("admin answers")
}

const POLICY: &str = r#"
[user_groups]
analysts = ["dave", "erin"]

[[groups]]
name = "a"
backends = ["{0}"]

[[groups]]
name = "b"
backends = ["{1}"]

[[groups]]
name = "c"
backends = ["{2}"]

[[rules]]
name = "alice to a"
user = "alice"
group = "a"

[[rules]]
name = "as carol to b"
effective_user = "carol"
group = "b"

[[rules]]
name = "analysts to c"
user_group = "analysts"
group = "c"

[[rules]]
name = "etl pool to b"
config = { request_pool = "etl" }
group = "b"

[[rules]]
name = "hiveconf to a"
config = { "set:hiveconf:*" = "*" }
group = "a"

[[rules]]
name = "second loopback to c"
address = "127.0.0.2/32"
group = "c"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_kind_places_sessions_in_its_group() {
    let mut cfgs = Vec::new();
    for i in 0..3 {
        let mut cfg = MockConfig { name: format!("mock-{i}"), ..MockConfig::default() };
        cfg.authorized_proxy_users.allow("hue", ["*"]);
        cfgs.push(cfg);
    }
    let mut mocks = Vec::new();
    for cfg in cfgs {
        mocks.push(MockImpalad::start("127.0.0.1:0", cfg).await.unwrap());
    }
    let proxy = start(config_with(&mocks, POLICY, "")).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);
    let cases: [Case; 5] = [
        ("alice", &[], 0),
        ("hue", &[("impala.doas.user", "carol")], 1),
        ("dave", &[], 2),
        ("zed", &[("request_pool", "etl")], 1),
        ("zed", &[("set:hiveconf:mapreduce.job.queuename", "q")], 0),
    ];
    for (user, conf, want) in cases {
        for _ in 0..4 {
            let s = open_as(&proxy, user, conf).await.unwrap();
            assert_eq!(holder(&mocks, &s), want, "{user} {conf:?}");
        }
    }
    // The client address: a connection from 127.0.0.2.
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = socket.connect(proxy.local_addr).await.unwrap();
        let mut c = Hs2Client::over(ThriftConn::new(Box::new(stream), Framing::Unframed, 1 << 30));
        let s = c.open_session(Some("zed"), &[]).await.unwrap();
        assert_eq!(holder(&mocks, &s), 2, "from 127.0.0.2");
    }
    // No rule matches: every backend, least loaded first.
    let mut spread = [0; 3];
    for _ in 0..9 {
        spread[holder(&mocks, &open_as(&proxy, "zed", &[]).await.unwrap())] += 1;
    }
    assert!(spread.iter().all(|n| *n > 0), "unmatched sessions go everywhere: {spread:?}");
    // The session view says which rule placed each session.
    let (status, body) = admin_get(&proxy, "/api/sessions?user=alice").await;
    assert_eq!(status, 200);
    let sessions: SessionsJson = serde_json::from_str(&body).unwrap();
    assert_eq!(sessions.sessions.len(), 4);
    assert!(sessions.sessions.iter().all(|s| s.rule.as_deref() == Some("alice to a")), "{body}");
    let (_, body) = admin_get(&proxy, "/api/sessions?user=zed").await;
    let sessions: SessionsJson = serde_json::from_str(&body).unwrap();
    let unplaced = sessions.sessions.iter().filter(|s| s.rule.is_none()).count();
    assert_eq!(unplaced, 9, "sessions no rule placed show none: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_rule_tells_listeners_apart() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let http_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let policy = format!(
        "[[groups]]\nname = \"web\"\nbackends = [\"{{1}}\"]\n\n[[rules]]\nlistener = \"127.0.0.1:{http_port}\"\n\
         group = \"web\"\nfallback = \"none\"\n"
    );
    let mut c = config_with(&mocks, &policy, "");
    c.http.listen = Some(format!("127.0.0.1:{http_port}").parse().unwrap());
    let proxy = start(c).await;
    let http = format!("127.0.0.1:{http_port}");
    for _ in 0..4 {
        let via = Via { http: Some("/cliservice"), tls: None, creds: None };
        let mut h = client_via(&http, via).await.unwrap();
        let s = h.open_session(Some("zed"), &[]).await.unwrap();
        assert_eq!(holder(&mocks, &s), 1, "the HTTP listener's sessions go to group web");
    }
    let mut binary = [0; 2];
    for _ in 0..6 {
        binary[holder(&mocks, &open_as(&proxy, "zed", &[]).await.unwrap())] += 1;
    }
    assert!(binary[0] > 0, "the binary listener matches no rule: every backend ({binary:?})");
}

const FALLBACK: &str = r#"
[[groups]]
name = "etl"
backends = ["{0}"]

[[rules]]
name = "etl strict"
config = { request_pool = "etl" }
group = "etl"
fallback = "none"

[[rules]]
name = "etl-ish lenient"
config = { request_pool = "etl2" }
group = "etl"
fallback = "any"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_none_refuses_naming_the_rule_and_any_goes_elsewhere() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = start(config_with(&mocks, FALLBACK, "")).await;
    let strict = open_as(&proxy, "zed", &[("request_pool", "etl")]).await.unwrap();
    assert_eq!(holder(&mocks, &strict), 0);
    // The group's only impalad is put in maintenance: strict sessions are refused, lenient ones move on.
    let (status, _) = {
        let addr = proxy.admin_addr.unwrap().to_string();
        let path = format!("/api/backends/{}/maintenance", mocks[0].local_addr());
        hs2_proxy::cli_admin::http(&addr, "POST", &path, None).await.unwrap()
    };
    assert_eq!(status, 200);
    let text = open_as(&proxy, "zed", &[("request_pool", "etl")]).await.unwrap_err();
    assert_eq!(
        text,
        "hs2-proxy: rule 'etl strict' sends this session to group 'etl', which has no backend taking new \
         sessions (fallback = \"none\")"
    );
    let lenient = open_as(&proxy, "zed", &[("request_pool", "etl2")]).await.unwrap();
    assert_eq!(holder(&mocks, &lenient), 1, "fallback = any: another backend");
    let (_, body) = admin_get(&proxy, "/api/sessions").await;
    let sessions: SessionsJson = serde_json::from_str(&body).unwrap();
    let fell = sessions.sessions.iter().find(|s| s.id == lenient.guid.impala_id()).expect("listed");
    assert_eq!(fell.rule.as_deref(), Some("etl-ish lenient (fallback)"));
    // Sessions already open stay usable on it.
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    let op = c.execute(&strict, "select 1").await.unwrap();
    assert_eq!(c.fetch_all_i64(&op).await.unwrap(), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_refuse_with_the_limit_and_the_count() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let policy = r#"
[[groups]]
name = "small"
backends = ["{1}"]
max_sessions = 2

[[groups]]
name = "rest"
backends = ["{0}"]

[[rules]]
name = "tiny"
user = "tina"
group = "small"
fallback = "none"

[[rules]]
name = "everyone else"
user = "*"
group = "rest"
"#;
    let proxy = start(config_with(&mocks, policy, "[limits]\nmax_sessions_per_user = 3\n")).await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(open_as(&proxy, "alice", &[]).await.unwrap());
    }
    let text = open_as(&proxy, "alice", &[]).await.unwrap_err();
    assert_eq!(
        text,
        "hs2-proxy: user 'alice' already has 3 sessions through this proxy (limits.max_sessions_per_user = 3)"
    );
    assert!(open_as(&proxy, "bob", &[]).await.is_ok(), "the limit is per user");
    // Closing one gives the place back.
    let mut c = connect(&proxy, &ClientAuth::NoSasl).await;
    c.close_session(&alice[0]).await.unwrap();
    assert!(open_as(&proxy, "alice", &[]).await.is_ok());
    // A group's max_sessions.
    for _ in 0..2 {
        assert_eq!(holder(&mocks, &open_as(&proxy, "tina", &[]).await.unwrap()), 1);
    }
    let text = open_as(&proxy, "tina", &[]).await.unwrap_err();
    assert_eq!(
        text,
        "hs2-proxy: rule 'tiny' sends this session to group 'small', which already has 2 sessions through this \
         proxy (its max_sessions = 2) (fallback = \"none\")"
    );
    // Concurrent OpenSessions cannot pass the limit together.
    let mut opens = Vec::new();
    for _ in 0..8 {
        let addr = proxy.local_addr;
        opens.push(tokio::spawn(async move {
            let mut c = Hs2Client::connect(addr, &ClientAuth::NoSasl).await.unwrap();
            c.open_session(Some("carl"), &[]).await.is_ok()
        }));
    }
    let mut ok = 0;
    for o in opens {
        ok += usize::from(o.await.unwrap());
    }
    assert_eq!(ok, 3, "8 concurrent opens, limit 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_close_with_a_reason() {
    let mocks = mocks(1, MockAuth::Plain { users: None }).await;
    let extra = "[limits]\nmax_connections_per_user = 2\nmax_connections_per_address = 4\n\
                 [backend_auth]\ntransport = \"sasl\"\n";
    let proxy = start(config_with(&mocks, "", extra)).await;
    let a1 = connect(&proxy, &plain("alice", "pw")).await;
    let mut a2 = connect(&proxy, &plain("alice", "pw")).await;
    assert!(a2.open_session(None, &[]).await.is_ok());
    // The third of alice's connections is refused at its first call, with the reason.
    let mut a3 = connect(&proxy, &plain("alice", "pw")).await;
    let text = error_text(a3.open_session(None, &[]).await);
    assert_eq!(text, "hs2-proxy: user 'alice' already has 2 connections (limits.max_connections_per_user = 2)");
    let b1 = connect(&proxy, &plain("bob", "pw")).await;
    // Four connections from 127.0.0.1 are open (a3 is closed): the fifth is closed at once.
    let p = proxy.proxy.clone();
    eventually("a3 closed", move || p.metrics().client_connections() == 4).await;
    let mut b2 = Hs2Client::connect(proxy.local_addr, &plain("bob", "pw")).await;
    let refused = match &mut b2 {
        Ok(c) => c.open_session(None, &[]).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "the fifth connection from one address is closed");
    drop((a1, b1));
    let p = proxy.proxy.clone();
    eventually("places given back", move || p.metrics().client_connections() <= 1).await;
    let mut again = connect(&proxy, &plain("alice", "pw")).await;
    assert!(again.open_session(None, &[]).await.is_ok(), "a closed connection gives its place back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_where_a_session_would_go_and_why() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = start(config_with(&mocks, FALLBACK, "")).await;
    let (status, body) = admin_get(&proxy, "/api/route?user=zed&conf=request_pool%3Detl").await;
    assert_eq!(status, 200, "{body}");
    let e: Explanation = serde_json::from_str(&body).unwrap();
    assert_eq!((e.rule.as_deref(), e.group.as_deref(), e.fallback.as_str()), (Some("etl strict"), Some("etl"), "none"));
    assert_eq!(e.backends, vec![mocks[0].local_addr().to_string()]);
    let (_, body) = admin_get(&proxy, "/api/route?user=zed").await;
    let e: Explanation = serde_json::from_str(&body).unwrap();
    assert_eq!((e.rule, e.backends.len()), (None, 2), "no rule: every backend");
    let (status, body) = admin_get(&proxy, "/api/route?colour=red").await;
    assert_eq!(status, 400, "{body}");
    // The CLI, as an operator runs it.
    let admin = proxy.admin_addr.unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
            .args(["explain", "--user", "zed", "--conf", "request_pool=etl", "--admin", &admin])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rule etl strict -> group etl"), "{text}");
    assert!(text.contains(&format!("would open on: {}", mocks[0].local_addr())), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_with_the_backends_and_a_bad_rule_is_refused_by_key() {
    let mocks = mocks(2, MockAuth::NoSasl).await;
    let proxy = start(config_with(&mocks, FALLBACK, "")).await;
    let addrs: Vec<String> = mocks.iter().map(|m| m.local_addr().to_string()).collect();
    let moved = FALLBACK.replace("{0}", &addrs[1]);
    let text = format!("backends = [{:?}, {:?}]\n{moved}", addrs[0], addrs[1]);
    let config = FileConfig::parse(&text).and_then(FileConfig::validate).unwrap();
    hs2_proxy::control::reload::apply(&proxy.proxy, &config);
    let s = open_as(&proxy, "zed", &[("request_pool", "etl")]).await.unwrap();
    assert_eq!(holder(&mocks, &s), 1, "the reloaded rule sends etl to the other impalad");
    // A rule naming an unknown group is refused at load, with the key.
    let bad = format!("backends = [{:?}]\n[[rules]]\ngroup = \"nope\"\n", addrs[0]);
    let err = FileConfig::parse(&bad).and_then(FileConfig::validate).unwrap_err().to_string();
    assert!(err.contains("rules[0].group"), "{err}");
    let bad = format!("backends = [{:?}]\n[[groups]]\nname = \"g\"\nbackends = [\"elsewhere:1\"]\n", addrs[0]);
    let err = FileConfig::parse(&bad).and_then(FileConfig::validate).unwrap_err().to_string();
    assert!(err.contains("groups[0].backends"), "{err}");
}
