//! Shared test setup: mock impalads and a proxy in front of them, all on loopback port 0.
#![allow(dead_code)]

pub mod instances;
pub mod pki;
pub mod zookeeper;

use std::time::Duration;

use hs2_proxy::config::{BackendConfig, BackendTransport, Config, FileConfig};
use hs2_proxy::hs2client::{ClientAuth, ClientError, Hs2Client};
use hs2_proxy::mock::{MockAuth, MockConfig, MockImpalad};
use hs2_proxy::server::{self, ProxyHandle};

/// A config with every default, listening on an ephemeral loopback port.
pub fn base_config() -> Config {
    let mut c = FileConfig::parse("").and_then(FileConfig::validate).expect("defaults validate");
    c.listen = "127.0.0.1:0".parse().expect("loopback");
    c.admin.listen = Some("127.0.0.1:0".parse().expect("loopback"));
    c
}

pub async fn mocks(n: usize, auth: MockAuth) -> Vec<MockImpalad> {
    let mut out = Vec::new();
    for i in 0..n {
        let cfg = MockConfig { name: format!("mock-{i}"), auth: auth.clone(), ..MockConfig::default() };
        out.push(MockImpalad::start("127.0.0.1:0", cfg).await.expect("mock starts"));
    }
    out
}

/// A proxy in front of `mocks`; `tweak` adjusts the config first.
pub async fn proxy(mocks: &[MockImpalad], transport: BackendTransport, tweak: impl FnOnce(&mut Config)) -> ProxyHandle {
    let mut c = base_config();
    c.backend_auth.transport = transport;
    c.backends = mocks.iter().map(|m| BackendConfig::new(&m.local_addr().to_string())).collect();
    tweak(&mut c);
    server::start(c).await.expect("proxy starts")
}

pub async fn connect(handle: &ProxyHandle, auth: &ClientAuth) -> Hs2Client {
    let mut c = Hs2Client::connect(handle.local_addr, auth).await.expect("client connects");
    c.set_timeout(Some(Duration::from_secs(20)));
    c
}

pub fn plain(user: &str, password: &str) -> ClientAuth {
    ClientAuth::Plain { user: user.into(), password: password.into() }
}

/// The error text of a failed call.
pub fn error_text(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Status { message, .. }) => message,
        Err(ClientError::Exception(m)) => m,
        other => panic!("expected an HS2 error, got {other:?}"),
    }
}

/// Waits (bounded) until `f` holds; events here are observed through sockets, so poll briefly.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}
