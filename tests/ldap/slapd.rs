//! A private OpenLDAP directory for tests: Debian's `slapd` (scripts/setup-ldap.sh) with its own
//! slapd.conf, an mdb database filled offline by `slapadd`, and a free loopback port, all in one temporary
//! directory. Nothing of the system's directory (/etc/ldap/slapd.d) is read or written.
//!
//! The tree: `dc=example,dc=test`, people under `ou=People` as `uid=<name>` (inetOrgPerson, the password
//! in `userPassword`), which is what HiveServer2 binds as with `hive.server2.authentication.ldap.baseDN`.
//! Anonymous users may only bind (`by anonymous auth`), users read their own password, the admin writes.
//!
//! slapd runs in the foreground (`-d 0`) under a small `sh` watchdog that reads a pipe only this process
//! writes to: when the [`Slapd`] is dropped, or the process exits however it exits, the pipe closes and the
//! watchdog stops slapd and removes the directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// What scripts/setup-ldap.sh installs and checks (keep the two in step).
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const LDAPWHOAMI: &str = "/usr/bin/ldapwhoami";
const SCHEMAS: [&str; 4] = ["core", "cosine", "inetorgperson", "nis"];

pub const SUFFIX: &str = "dc=example,dc=test";
pub const PEOPLE: &str = "ou=People,dc=example,dc=test";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running directory; dropping it stops slapd and removes its directory.
pub struct Slapd {
    dir: PathBuf,
    port: u16,
    admin_password: String,
    watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the admin password.
        write!(f, "Slapd({SUFFIX} on 127.0.0.1:{}, {})", self.port, self.dir.display())
    }
}

impl Slapd {
    /// A directory holding `users` (name, password), listening on return. Panics (tests only) with the
    /// setup command when slapd is missing, and with slapd's output when it does not start.
    pub fn start(users: &[(&str, &str)]) -> Slapd {
        for tool in [SLAPD, SLAPADD, LDAPWHOAMI] {
            assert!(Path::new(tool).exists(), "{tool} is missing: run scripts/setup-ldap.sh (scripts/test.sh does)");
        }
        let t0 = Instant::now();
        let dir = std::env::temp_dir().join(format!("hs2-slapd-{}-{}", std::process::id(), seq()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let admin_password = format!("admin-{}-{}", std::process::id(), nanos());
        let mut slapd = Slapd { dir, port, admin_password, watchdog: None };
        slapd.write_config();
        slapd.load(users);
        slapd.run();
        println!("slapd ready on {} with {} users after {:.2}s", slapd.url(), users.len(), t0.elapsed().as_secs_f64());
        slapd
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The DN a user binds as: `uid=<name>,ou=People,dc=example,dc=test`.
    pub fn user_dn(name: &str) -> String {
        format!("uid={name},{PEOPLE}")
    }

    /// `ldapwhoami` as `name`: the directory's own verdict on a password (`Err` holds its message).
    pub fn bind(&self, name: &str, password: &str) -> Result<String, String> {
        let out = Command::new(LDAPWHOAMI)
            .args(["-x", "-H", &self.url(), "-D", &Slapd::user_dn(name), "-y"])
            .arg(self.secret_file(password))
            .output()
            .expect("ldapwhoami runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    }

    /// A password in a file (`ldapwhoami -y`), so that it never shows on a command line.
    fn secret_file(&self, password: &str) -> PathBuf {
        let path = self.dir.join(format!("pw-{}", seq()));
        std::fs::write(&path, password).expect("password file");
        path
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let mut conf: String = SCHEMAS.iter().map(|s| format!("include /etc/ldap/schema/{s}.schema\n")).collect();
        conf += &format!(
            "pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nmaxsize 16777216\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw {}\n\
             directory {d}/db\n\
             access to attrs=userPassword by self read by anonymous auth by * none\naccess to * by * read\n",
            self.admin_password
        );
        let path = self.dir.join("slapd.conf");
        std::fs::write(&path, conf).expect("slapd.conf");
        set_private(&path);
    }

    /// The tree and the users, added offline (`slapadd`, before slapd runs: no network, no admin bind).
    fn load(&self, users: &[(&str, &str)]) {
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n\n"
        );
        for (name, password) in users {
            ldif += &format!(
                "dn: {}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\nuserPassword: {password}\n\n",
                Slapd::user_dn(name)
            );
        }
        let file = self.dir.join("base.ldif");
        std::fs::write(&file, ldif).expect("base.ldif");
        set_private(&file);
        let out = Command::new(SLAPADD).arg("-f").arg(self.dir.join("slapd.conf")).arg("-l").arg(&file).output();
        let out = out.expect("slapadd runs");
        assert!(out.status.success(), "slapadd failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// slapd in the foreground under the watchdog; waits until an LDAP bind works.
    fn run(&mut self) {
        let script = r#"dir="$1"; "$2" -f "$dir/slapd.conf" -h "$3" -d 0 </dev/null >>"$dir/slapd.log" 2>&1 & pid=$!; read -r _ignored; kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir""#;
        let mut child = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&self.dir)
            .arg(SLAPD)
            .arg(format!("{}/", self.url()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh for slapd");
        let stdin = child.stdin.take().expect("watchdog pipe");
        self.watchdog = Some((child, stdin));
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.watchdog.as_mut().and_then(|(c, _)| c.try_wait().ok().flatten());
            let log = || std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default();
            assert!(exited.is_none(), "slapd exited: {}", log());
            assert!(Instant::now() < deadline, "slapd not listening after {READY_TIMEOUT:?}: {}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Readable by this user only: the files hold passwords.
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

fn seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
