//! `hs2-proxy demo`: three mock impalads on loopback behind the proxy, and how to connect to it.

use crate::config::{BackendConfig, Config};
use crate::mock::{MockConfig, MockImpalad};
use crate::server::{self, ProxyHandle};

/// How many mock impalads the demo runs.
pub const DEMO_IMPALADS: usize = 3;

/// Starts the mock impalads, points `config` at them and starts the proxy.
pub async fn start(mut config: Config) -> Result<(ProxyHandle, Vec<MockImpalad>), server::StartError> {
    let mut mocks = Vec::new();
    config.backends.clear();
    for i in 1..=DEMO_IMPALADS {
        let cfg = MockConfig { name: format!("impalad-{i}"), ..MockConfig::default() };
        let mock = MockImpalad::start("127.0.0.1:0", cfg).await?;
        // With its web port, as an operator configures an impalad: load figures and session clean-up.
        let web = mock.start_web("127.0.0.1:0").await?;
        let mut backend = BackendConfig::new(&mock.local_addr().to_string());
        backend.metrics_url = crate::config::HttpUrl::parse(&format!("http://{web}/jsonmetrics"));
        config.backends.push(backend);
        mocks.push(mock);
    }
    config.backend_auth.transport = crate::config::BackendTransport::Nosasl;
    let handle = server::start(config).await?;
    Ok((handle, mocks))
}

/// The banner printed when the demo is up.
pub fn banner(handle: &ProxyHandle, mocks: &[MockImpalad]) -> String {
    let addr = handle.local_addr;
    let (host, port) = (addr.ip(), addr.port());
    let mut s = String::from("hs2-proxy demo: three mock impalads behind the proxy\n");
    for (i, m) in mocks.iter().enumerate() {
        s += &format!("  impalad-{}  {}\n", i + 1, m.local_addr());
    }
    s += &format!("  proxy      {addr}  (HS2 binary, NOSASL or SASL PLAIN with any password)\n\n");
    s += "Try it with impyla (pip install impyla):\n";
    s += &format!(
        "  python3 -c \"from impala.dbapi import connect; c = connect('{host}', {port}, auth_mechanism='NOSASL').cursor(); \
         c.execute('select id from range(5)'); print(c.fetchall())\"\n"
    );
    s += "or beeline:\n";
    s += &format!("  beeline -u 'jdbc:hive2://{host}:{port}/default;auth=noSasl' -e 'select 1'\n");
    s += "or point Hue at it (hue.ini):\n";
    s += &format!("  [impala]\n  server_host={host}\n  server_port={port}\n  use_sasl=false\n");
    s += "The mocks understand: select 1 | select id from range(N) | set all | show databases | select sleep(MS)\n";
    s
}
