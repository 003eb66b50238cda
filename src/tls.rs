//! TLS from PEM files, on both sides: the listeners' certificate (re-read when its files change) and the
//! client configuration the proxy uses towards TLS backends.
//!
//! rustls with the ring provider; PEM is read with `rustls-pki-types` (`PemObject`). Configuration
//! errors are plain strings that `config` attaches to the key that named the file. No sockets here:
//! `frontend` runs the server handshake, `backend::connect` the client one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often a listener looks at its certificate files' modification times, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (a chain: leaf first).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

/// A server configuration from a certificate chain file and its key file.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("{} and {} do not make a usable certificate: {e}", cert_file.display(), key_file.display())
        })?;
    Ok(Arc::new(config))
}

/// The listeners' TLS: the certificate is re-read on a new connection when either file's modification
/// time changed (so a renewed certificate is served without a restart); a new file that does not load
/// keeps the previous certificate, with a warning.
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// A std mutex: held only to compare times and swap an `Arc`, never across an `.await`.
    current: Mutex<Loaded>,
}

struct Loaded {
    acceptor: Option<TlsAcceptor>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Option<Instant>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerTls({}, {})", self.cert_file.display(), self.key_file.display())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ServerTls {
    /// Loads lazily: the configuration was checked when it was validated.
    pub fn new(cert_file: &Path, key_file: &Path) -> ServerTls {
        ServerTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: Mutex::new(Loaded { acceptor: None, stamps: (None, None), checked: None }),
        }
    }

    /// The acceptor for a new connection, reloading the files first when they changed. `None` when
    /// they never loaded.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cur.checked.is_some_and(|t| now.duration_since(t) < RELOAD_CHECK_INTERVAL) {
            return cur.acceptor.clone();
        }
        cur.checked = Some(now);
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        if cur.acceptor.is_some() && stamps == cur.stamps {
            return cur.acceptor.clone();
        }
        match server_config(&self.cert_file, &self.key_file) {
            Ok(config) => {
                if cur.acceptor.is_some() {
                    tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                }
                cur.acceptor = Some(TlsAcceptor::from(config));
                cur.stamps = stamps;
            }
            Err(e) => {
                // Keep serving the old certificate; a half-written file is retried on the next check.
                tracing::warn!(error = %e, "TLS certificate not (re)loaded; keeping the previous one");
            }
        }
        cur.acceptor.clone()
    }
}

/// TLS towards one backend, as configured.
#[derive(Clone)]
pub struct UpstreamTls {
    pub server_name: ServerName<'static>,
    /// False only when `tls_verify = false` was written: then any certificate is accepted (signatures
    /// are still checked, so the handshake is real; the peer is not authenticated).
    pub verify: bool,
    pub connector: TlsConnector,
    /// The settings it was built from, for equality and display.
    settings: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamTls({})", self.settings)
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &UpstreamTls) -> bool {
        self.settings == other.settings
    }
}
impl Eq for UpstreamTls {}

/// What `[[backends]]` says about TLS.
#[derive(Debug, Default)]
pub struct UpstreamTlsSettings<'a> {
    pub server_name: &'a str,
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    pub verify: bool,
}

impl UpstreamTls {
    /// Builds the client configuration; the error names the setting at fault.
    pub fn new(s: &UpstreamTlsSettings) -> Result<UpstreamTls, (&'static str, String)> {
        let server_name = ServerName::try_from(s.server_name.to_string())
            .map_err(|e| ("tls_server_name", format!("{:?}: {e}", s.server_name)))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ("tls", e.to_string()))?;
        let builder = if s.verify {
            let ca =
                s.ca_file.ok_or(("ca_file", "required with tls = true (or set tls_verify = false)".to_string()))?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca).map_err(|e| ("ca_file", e))? {
                roots.add(cert).map_err(|e| ("ca_file", format!("{}: {e}", ca.display())))?;
            }
            builder.with_root_certificates(roots)
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        };
        let config = match (s.cert_file, s.key_file) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert).map_err(|e| ("cert_file", e))?;
                let key = read_key(key).map_err(|e| ("key_file", e))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| ("cert_file", e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(("key_file", "required with cert_file".into())),
            (None, Some(_)) => return Err(("cert_file", "required with key_file".into())),
        };
        let shown = |p: Option<&Path>| p.map_or("-".to_string(), |p| p.display().to_string());
        let settings = format!(
            "server_name={} ca_file={} cert_file={} verify={}",
            s.server_name,
            shown(s.ca_file),
            shown(s.cert_file),
            s.verify
        );
        Ok(UpstreamTls { server_name, verify: s.verify, connector: TlsConnector::from(Arc::new(config)), settings })
    }
}

/// `tls_verify = false`: the handshake's signatures are checked, the certificate's chain and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pki(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&paths.0, ca_cert.pem()).unwrap();
        std::fs::write(&paths.1, leaf.pem()).unwrap();
        std::fs::write(&paths.2, key.serialize_pem()).unwrap();
        paths
    }

    #[test]
    fn server_and_client_configs_load_from_pem_and_errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = write_pki(dir.path(), &["localhost"]);
        assert!(server_config(&cert, &key).is_ok());
        let err = server_config(&key, &key).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let tls = ServerTls::new(&cert, &key);
        assert!(tls.acceptor().is_some());
        let s =
            UpstreamTlsSettings { server_name: "localhost", ca_file: Some(&ca), verify: true, ..Default::default() };
        assert!(UpstreamTls::new(&s).is_ok());
        let missing = UpstreamTlsSettings { ca_file: None, ..s };
        assert_eq!(UpstreamTls::new(&missing).unwrap_err().0, "ca_file");
        let unverified = UpstreamTlsSettings { verify: false, ..missing };
        assert!(!UpstreamTls::new(&unverified).unwrap().verify);
        let half = UpstreamTlsSettings {
            server_name: "localhost",
            cert_file: Some(&cert),
            verify: false,
            ..Default::default()
        };
        assert_eq!(UpstreamTls::new(&half).unwrap_err().0, "key_file");
        let bad_name = UpstreamTlsSettings { server_name: "not a name!", verify: false, ..Default::default() };
        assert_eq!(UpstreamTls::new(&bad_name).unwrap_err().0, "tls_server_name");
    }

    #[test]
    fn a_broken_replacement_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = write_pki(dir.path(), &["localhost"]);
        let tls = ServerTls::new(&cert, &key);
        assert!(tls.acceptor().is_some());
        std::fs::write(&cert, "garbage").unwrap();
        tls.current.lock().unwrap().checked = None;
        tls.current.lock().unwrap().stamps.0 = None;
        assert!(tls.acceptor().is_some(), "the previous certificate stays");
    }
}
