//! A private MIT Kerberos realm for tests: `krb5kdc -n` on a free loopback port, its database, principals,
//! keytabs and user ccaches, all in one temporary directory. Nothing of the system's Kerberos is read or
//! written; processes find the realm through the variables of [`TestKdc::env`].
//!
//! Not for production: it shells out to MIT's tools (Debian `krb5-kdc`, `krb5-admin-server`,
//! `krb5-user`; `scripts/setup-kerberos.sh` installs them) and every error says so.
//!
//! The KDC runs under a small `sh` watchdog that reads a pipe only this process writes to: when the
//! [`TestKdc`] is dropped, or the process exits however it exits, the pipe closes and the watchdog kills
//! the KDC and removes the directory.
//!
//! GSS-API inside this process reads `KRB5_CONFIG` and friends from the environment, which is
//! process-wide: [`shared`] starts one realm per process and sets them once. Child processes (kinit,
//! impyla, beeline) get [`TestKdc::env`] explicitly.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test realm.
pub const REALM: &str = "EXAMPLE.TEST";

/// Principals every realm starts with (each with its own keytab): the services clients ask for
/// (`impala/localhost`, `HTTP/localhost` for SPNEGO, `hive/localhost` for a Kerberized Spark), the
/// proxy's own client principal, and two users.
pub const DEFAULT_PRINCIPALS: &[&str] =
    &["impala/localhost", "HTTP/localhost", "hive/localhost", "hs2proxy", "alice", "bob"];

/// How long the KDC may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("test KDC: {0}")]
pub struct KdcError(String);

fn err(text: impl Into<String>) -> KdcError {
    KdcError(text.into())
}

/// A running realm; dropping it stops the KDC and removes its directory.
pub struct TestKdc {
    dir: PathBuf,
    port: u16,
    /// The watchdog and the pipe whose closing tells it to stop the KDC; `None` until the KDC runs.
    watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for TestKdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKdc({REALM} on 127.0.0.1:{}, {})", self.port, self.dir.display())
    }
}

/// The process-wide realm, started by the first caller, with `KRB5_CONFIG`, `KRB5_KDC_PROFILE` and
/// `KRB5RCACHEDIR` set for this process. Panics (tests only) with the setup command when tools are missing.
pub fn shared() -> &'static TestKdc {
    static KDC: OnceLock<TestKdc> = OnceLock::new();
    KDC.get_or_init(|| {
        let kdc = TestKdc::start().unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in kdc.env() {
            // Once, before any GSS-API call of this process reads them.
            std::env::set_var(k, v);
        }
        kdc
    })
}

impl TestKdc {
    /// A new realm with [`DEFAULT_PRINCIPALS`] and their keytabs; the KDC is listening on return.
    pub fn start() -> Result<TestKdc, KdcError> {
        let t0 = Instant::now();
        let dir = temp_dir()?;
        for sub in ["rcache", "keytabs", "ccaches"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| err(format!("mkdir {}: {e}", dir.display())))?;
        }
        let port = free_port()?;
        write_configs(&dir, port)?;
        let mut kdc = TestKdc { watchdog: None, dir, port };
        kdc.run(tool("kdb5_util")?.args(["create", "-s", "-r", REALM, "-P"]).arg(master_password()))?;
        let mut script = String::new();
        for p in DEFAULT_PRINCIPALS {
            script += &format!("addprinc -randkey {p}\nktadd -norandkey -k {} {p}\n", kdc.keytab(p).display());
        }
        kdc.kadmin(&script)?;
        kdc.start_kdc()?;
        tracing::info!(port, dir = %kdc.dir.display(), took_ms = t0.elapsed().as_millis() as u64, "test KDC ready");
        Ok(kdc)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The realm's `krb5.conf` (Java needs it as `-Djava.security.krb5.conf=...`: it ignores KRB5_CONFIG).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// What a process needs to use this realm (and nothing of the system's).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let p = |f: &str| self.dir.join(f).display().to_string();
        vec![("KRB5_CONFIG", p("krb5.conf")), ("KRB5_KDC_PROFILE", p("kdc.conf")), ("KRB5RCACHEDIR", p("rcache"))]
    }

    /// `name@EXAMPLE.TEST`.
    pub fn principal(name: &str) -> String {
        format!("{name}@{REALM}")
    }

    /// The keytab holding `principal`'s keys (made by [`TestKdc::start`] or [`TestKdc::add_principal`]).
    pub fn keytab(&self, principal: &str) -> PathBuf {
        self.dir.join("keytabs").join(format!("{}.keytab", principal.replace(['/', '@'], "_")))
    }

    /// Adds a principal with a random key and writes its keytab. `max_life` caps its tickets (a TGT
    /// shorter than a test exercises renewal).
    pub fn add_principal(&self, principal: &str, max_life: Option<Duration>) -> Result<PathBuf, KdcError> {
        let life = max_life.map(|d| format!("-maxlife \"{} seconds\" ", d.as_secs().max(1))).unwrap_or_default();
        let keytab = self.keytab(principal);
        self.kadmin(&format!(
            "addprinc -randkey {life}{principal}\nktadd -norandkey -k {} {principal}\n",
            keytab.display()
        ))?;
        Ok(keytab)
    }

    /// One keytab holding several principals' keys (a server with two identities), at `dir/keytabs/file`.
    pub fn merged_keytab(&self, principals: &[&str], file: &str) -> Result<PathBuf, KdcError> {
        let path = self.dir.join("keytabs").join(file);
        let script: String =
            principals.iter().map(|p| format!("ktadd -norandkey -k {} {p}\n", path.display())).collect();
        self.kadmin(&script)?;
        Ok(path)
    }

    /// A user's ccache, from its keytab (`kinit -k -t`): returns `FILE:<path>` for `KRB5CCNAME`.
    pub fn kinit(&self, principal: &str) -> Result<String, KdcError> {
        let ccache = format!("FILE:{}", self.dir.join("ccaches").join(principal.replace(['/', '@'], "_")).display());
        let mut cmd = tool("kinit")?;
        cmd.args(["-k", "-t"]).arg(self.keytab(principal)).args(["-c", &ccache, principal]);
        self.run(&mut cmd)?;
        Ok(ccache)
    }

    /// The end of the KDC's log (for a failing test's message).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("kdc.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs `kadmin.local` with `script` on stdin (one process for many commands).
    fn kadmin(&self, script: &str) -> Result<(), KdcError> {
        let mut cmd = tool("kadmin.local")?;
        self.env_on(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("kadmin.local: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(|e| err(format!("kadmin.local stdin: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| err(format!("kadmin.local: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        // kadmin.local exits 0 even when a command fails: look at what it said.
        let failed = text.lines().find(|l| l.contains("while ") || l.contains("rror"));
        match (out.status.success(), failed) {
            (true, None) => Ok(()),
            (_, line) => Err(err(format!("kadmin.local failed: {}", line.unwrap_or(&text)))),
        }
    }

    fn env_on(&self, cmd: &mut Command) {
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<(), KdcError> {
        self.env_on(cmd);
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| err(format!("{cmd:?}: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// Starts `krb5kdc -n` under the watchdog and waits until it accepts TCP.
    fn start_kdc(&mut self) -> Result<(), KdcError> {
        let krb5kdc = find_tool("krb5kdc")?;
        // The watchdog: starts the KDC, then blocks reading stdin; EOF (we dropped the pipe or died) stops
        // the KDC and removes the realm's directory.
        let script = r#"dir="$1"; "$2" -n </dev/null >>"$dir/kdc.out" 2>&1 & kdc=$!; read -r _ignored; kill "$kdc" 2>/dev/null; wait "$kdc"; rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script, "sh"]).arg(&self.dir).arg(&krb5kdc);
        self.env_on(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot start sh for krb5kdc: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| err("no stdin pipe to the krb5kdc watchdog"))?;
        self.watchdog = Some((child, stdin));
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.watchdog.as_mut().and_then(|(child, _)| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(err(format!("krb5kdc exited ({status}): {}", self.startup_output())));
            }
            if Instant::now() >= deadline {
                return Err(err(format!("krb5kdc not listening after {READY_TIMEOUT:?}: {}", self.startup_output())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn startup_output(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("kdc.out")).unwrap_or_default();
        format!("{out}{}", self.log_tail())
    }
}

impl Drop for TestKdc {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        // Also when the KDC never started (the watchdog would have removed it).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_configs(dir: &Path, port: u16) -> Result<(), KdcError> {
    let d = dir.display();
    let krb5 = format!(
        "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_realm = false\n  dns_lookup_kdc = false\n  \
         dns_canonicalize_hostname = false\n  rdns = false\n  udp_preference_limit = 1\n  \
         default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n  \
         default_tgs_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n  \
         permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n\n\
         [realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\n[domain_realm]\n  localhost = {REALM}\n"
    );
    let kdc = format!(
        "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\n\
         [realms]\n  {REALM} = {{\n    database_name = {d}/principal\n    key_stash_file = {d}/stash\n    \
         acl_file = {d}/kadm5.acl\n    max_life = 10h\n    max_renewable_life = 0\n    \
         supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n    \
         default_principal_flags = +preauth\n  }}\n\n[logging]\n  kdc = FILE:{d}/kdc.log\n  default = FILE:{d}/krb5.log\n"
    );
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| err(format!("write {}/{name}: {e}", dir.display())))
    };
    write("krb5.conf", &krb5)?;
    write("kdc.conf", &kdc)?;
    write("kadm5.acl", "")
}

/// A throw-away master key: the database lives as long as the test.
fn master_password() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("test-master-{}-{nanos}", std::process::id())
}

fn temp_dir() -> Result<PathBuf, KdcError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hs2-testkdc-{}-{seq}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("mkdir {}: {e}", dir.display())))?;
    Ok(dir)
}

fn free_port() -> Result<u16, KdcError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("bind 127.0.0.1:0: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| err(e.to_string()))
}

/// MIT's admin tools live in /usr/sbin, which a non-root PATH may lack.
fn find_tool(name: &str) -> Result<PathBuf, KdcError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| err(format!("{name} is missing: run scripts/setup-kerberos.sh (scripts/test.sh does)")))
}

fn tool(name: &str) -> Result<Command, KdcError> {
    find_tool(name).map(Command::new)
}
