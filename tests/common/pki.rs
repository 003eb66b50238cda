//! Test certificates (rcgen) and clients that speak TLS and HTTP, built from the proxy's own upstream
//! connector (`backend::connect`), which the upstream tests check against the proxy's server side.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hs2_proxy::backend::connect::{self, Endpoint};
use hs2_proxy::backend::pool::Credentials;
use hs2_proxy::config::{BackendTransport, UpstreamConfig, UpstreamTransport};
use hs2_proxy::hs2client::Hs2Client;
use hs2_proxy::tls::{UpstreamTls, UpstreamTlsSettings};

/// A CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `<prefix>ca.pem`, `<prefix>cert.pem`, `<prefix>key.pem` into `dir`.
pub fn write_pki(dir: &Path, prefix: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("hs2-proxy test CA {prefix}"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let pki = Pki {
        ca: dir.join(format!("{prefix}ca.pem")),
        cert: dir.join(format!("{prefix}cert.pem")),
        key: dir.join(format!("{prefix}key.pem")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).expect("write");
    std::fs::write(&pki.cert, leaf.pem()).expect("write");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write");
    pki
}

/// Client-side TLS trusting `ca` for `127.0.0.1`.
pub fn client_tls(ca: &Path) -> UpstreamTls {
    let s = UpstreamTlsSettings { server_name: "127.0.0.1", ca_file: Some(ca), verify: true, ..Default::default() };
    UpstreamTls::new(&s).expect("client TLS")
}

/// How a test client reaches the proxy.
pub struct Via {
    pub http: Option<&'static str>,
    pub tls: Option<UpstreamTls>,
    pub creds: Option<Credentials>,
}

/// An HS2 client over binary or HTTP, with or without TLS; `Err` is the connect error's text.
pub async fn client_via(addr: &str, via: Via) -> Result<Hs2Client, String> {
    let upstream = UpstreamConfig {
        transport: if via.http.is_some() { UpstreamTransport::Http } else { UpstreamTransport::Binary },
        http_path: via.http.unwrap_or("/cliservice").to_string(),
        tls: via.tls,
    };
    let auth = if via.creds.is_some() { BackendTransport::Sasl } else { BackendTransport::Nosasl };
    let creds = via.creds.unwrap_or(Credentials { user: "nobody".into(), password: String::new() });
    let ep = Endpoint { addr, auth, upstream: &upstream, max_frame: 1 << 30, kerberos: None, trusted_header: None };
    let opened = connect::open(&ep, &creds, true).await.map_err(|e| e.to_string())?;
    let mut c = Hs2Client::over(opened.conn);
    c.set_timeout(Some(std::time::Duration::from_secs(20)));
    Ok(c)
}

pub fn creds(user: &str, password: &str) -> Option<Credentials> {
    Some(Credentials { user: user.into(), password: password.into() })
}
