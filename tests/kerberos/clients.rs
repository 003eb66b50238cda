//! Real Kerberos clients against the Kerberized mock impalad and a SPNEGO endpoint: impyla (pure-sasl +
//! pykerberos), beeline (Hive JDBC, Java's GSS), impala-shell `-k` (Cyrus SASL's GSSAPI plugin) and curl
//! `--negotiate`. Each logs in as alice from her kinit'd ccache; the tests record how each client ends
//! the SASL negotiation (the two shapes the server must accept).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hs2_proxy::kerberos::spnego;
use hs2_proxy::kerberos::testkdc::{self, TestKdc};
use hs2_proxy::kerberos::Credential;
use hs2_proxy::thrift::framing::SaslStatus;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::{gss, kerberized_mock};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup-python.sh (scripts/test.sh does)", p.display());
    p
}

/// `cmd` with the realm's environment and `user`'s ccache, a private HOME, and nothing of the machine's.
pub fn as_user(mut cmd: Command, user: &str) -> Command {
    let kdc = testkdc::shared();
    let ccache = kdc.kinit(user).expect("kinit");
    for (k, v) in kdc.env() {
        cmd.env(k, v);
    }
    let home = kdc.dir().join(format!("home-{user}"));
    std::fs::create_dir_all(&home).expect("home dir");
    cmd.env("KRB5CCNAME", ccache).env("HOME", home);
    cmd
}

pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Ran {
    pub fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

pub async fn run(mut cmd: Command) -> Ran {
    let shown = format!("{cmd:?}");
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{shown} did not start: {e}"));
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

const IMPYLA: &str = r#"
import sys
from impala.dbapi import connect
conn = connect(host='localhost', port=int(sys.argv[1]), auth_mechanism='GSSAPI', kerberos_service_name='impala')
cur = conn.cursor()
cur.execute('select current_user()')
print(cur.fetchall()[0][0])
cur.close()
conn.close()
"#;

#[tokio::test]
#[ignore = "needs MIT Kerberos and impyla (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impyla_gssapi_against_the_kerberized_mock() {
    let mock = kerberized_mock("").await;
    let mut cmd = Command::new(venv_bin("python"));
    cmd.args(["-c", IMPYLA, &mock.local_addr().port().to_string()]);
    let ran = run(as_user(cmd, "alice")).await;
    assert!(ran.ok && ran.stdout.trim() == "alice", "impyla GSSAPI:\n{}", ran.both());
    let logins = mock.kerberos_logins();
    let ending = &logins.last().expect("a Kerberos login").ending;
    // pure-sasl ends with OK and its principal as authzid.
    assert_eq!((ending.status, ending.authzid.as_str()), (SaslStatus::Ok, "alice@EXAMPLE.TEST"), "{logins:?}");
    println!("impyla GSSAPI: ok in {:.1}s; final message {ending:?}", ran.took.as_secs_f64());
}

/// A directory holding the one Hadoop setting Hive JDBC needs to use Kerberos.
fn hadoop_conf_dir(kdc: &TestKdc) -> PathBuf {
    let dir = kdc.dir().join("hadoop-client-conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    let xml = "<?xml version=\"1.0\"?>\n<configuration>\n  <property><name>hadoop.security.authentication</name>\
               <value>kerberos</value></property>\n</configuration>\n";
    std::fs::write(dir.join("core-site.xml"), xml).expect("core-site.xml");
    dir
}

/// beeline (Hive JDBC 2.3) with `url` as alice; Java needs the realm's krb5.conf as a property.
pub fn beeline(url: &str, statement: &str) -> Command {
    let kdc = testkdc::shared();
    let script = repo().join("scripts/beeline.sh");
    assert!(
        repo().join(".venv-spark").exists(),
        "pyspark is missing: run scripts/setup-spark.sh (scripts/test.sh does)"
    );
    let mut cmd = Command::new(script);
    cmd.env("BEELINE_CONF_DIR", hadoop_conf_dir(kdc));
    cmd.env("BEELINE_JAVA_OPTS", format!("-Djava.security.krb5.conf={}", kdc.krb5_conf().display()));
    cmd.args(["-u", url, "--silent=true", "--outputformat=tsv2", "--showHeader=false", "-e", statement]);
    as_user(cmd, "alice")
}

/// Output lines of beeline 2.3 `--outputformat=tsv2 --silent=true -e`, without the prompt it prints first
/// and log4j's status lines (with Kerberos, Hadoop's "Unable to load native-hadoop library" warning).
pub fn data_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| !l.contains(" main WARN "))
        .map(|l| l.rsplit_once("> ").map_or(l, |(_, r)| r))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test]
#[ignore = "needs MIT Kerberos and pyspark (scripts/setup-kerberos.sh, setup-spark.sh); run by scripts/test.sh"]
async fn beeline_kerberos_against_the_kerberized_mock() {
    let mock = kerberized_mock("").await;
    let url =
        format!("jdbc:hive2://localhost:{}/default;principal=impala/localhost@EXAMPLE.TEST", mock.local_addr().port());
    let ran = run(beeline(&url, "select current_user()")).await;
    assert!(ran.ok && data_lines(&ran.stdout) == ["alice"], "beeline Kerberos:\n{}", ran.both());
    let logins = mock.kerberos_logins();
    let ending = &logins.last().expect("a Kerberos login").ending;
    // Java's SASL client ends with COMPLETE and an empty authzid.
    assert_eq!((ending.status, ending.authzid.as_str()), (SaslStatus::Complete, ""), "{logins:?}");
    println!("beeline Kerberos: ok in {:.1}s; final message {ending:?}", ran.took.as_secs_f64());
}

#[tokio::test]
#[ignore = "needs MIT Kerberos and impala-shell (scripts/setup-kerberos.sh, setup-python.sh); run by scripts/test.sh"]
async fn impala_shell_k_against_the_kerberized_mock() {
    let mock = kerberized_mock("").await;
    let mut cmd = Command::new(venv_bin("impala-shell"));
    let port = mock.local_addr().port();
    cmd.args(["-i", &format!("localhost:{port}"), "--protocol=hs2", "-k", "--kerberos_service_name=impala"]);
    cmd.args(["-B", "-q", "select current_user()"]);
    let ran = run(as_user(cmd, "alice")).await;
    assert!(ran.ok && ran.stdout.trim() == "alice", "impala-shell -k:\n{}", ran.both());
    let logins = mock.kerberos_logins();
    let ending = &logins.last().expect("a Kerberos login").ending;
    // Cyrus SASL's GSSAPI plugin: OK and an empty authzid (a third shape).
    assert_eq!((ending.status, ending.authzid.as_str()), (SaslStatus::Ok, ""), "{logins:?}");
    println!("impala-shell -k: ok in {:.1}s; final message {ending:?}", ran.took.as_secs_f64());
}

/// A tiny HTTP server answering 401 Negotiate, then 200 with the principal (and the mutual-auth token).
async fn negotiate_server(acceptor: Credential) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let acceptor = acceptor.clone();
                async move { Ok::<_, Infallible>(negotiate(&acceptor, &req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    addr
}

async fn negotiate(acceptor: &Credential, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let reply = |code: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r
    };
    let Some(header) = header else {
        let mut r = reply(StatusCode::UNAUTHORIZED, "authenticate\n".into());
        r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, "Negotiate".parse().expect("header"));
        return r;
    };
    let acceptor = acceptor.clone();
    match tokio::task::spawn_blocking(move || spnego::accept(&acceptor, &header)).await.expect("join") {
        Ok(n) => {
            let mut r = reply(StatusCode::OK, format!("{}\n", n.principal));
            if let Some(token) = n.www_authenticate {
                r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, token.parse().expect("header"));
            }
            r
        }
        Err(e) => reply(StatusCode::UNAUTHORIZED, format!("{e}\n")),
    }
}

fn curl_negotiate(addr: SocketAddr) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-4", "--negotiate", "-u", ":", &format!("http://localhost:{}/cliservice", addr.port())]);
    cmd
}

#[tokio::test]
#[ignore = "needs MIT Kerberos (scripts/setup-kerberos.sh); run by scripts/test.sh"]
async fn spnego_with_curl_negotiate() {
    let kdc = testkdc::shared();
    // One keytab for both of the proxy's services, one acceptor for any of its principals.
    let keytab = kdc.merged_keytab(&["impala/localhost", "HTTP/localhost"], "proxy.keytab").expect("merged keytab");
    let addr = negotiate_server(gss().acceptor(&keytab, None).expect("acceptor")).await;
    let ran = run(as_user(curl_negotiate(addr), "alice")).await;
    assert!(ran.ok && ran.stdout == "alice@EXAMPLE.TEST\n", "curl --negotiate:\n{}", ran.both());
    // An acceptor bound to impala/localhost refuses HTTP/localhost tickets, with the reason.
    let impala_only = gss().acceptor(&keytab, Some("impala/localhost")).expect("acceptor");
    let addr = negotiate_server(impala_only).await;
    let ran = run(as_user(curl_negotiate(addr), "bob")).await;
    assert!(ran.stdout.contains("HTTP/localhost@EXAMPLE.TEST"), "{}", ran.both());
    println!("curl --negotiate: ok");
}
