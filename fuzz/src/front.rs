//! Targets at the edges an operator or an HTTP client controls: the config file, the `Authorization:
//! Basic` parser and the proxy's signed cookie.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use hs2_proxy::config::{ConfigError, FileBackend, FileConfig};
use hs2_proxy::frontend::cookie::{CookieCheck, CookieSigner};
use hs2_proxy::http::{basic_authorization, parse_basic};

use super::input::control;

/// The top-level tables and keys of the config file: every error names one of them (or `config`, for
/// a file that is not valid TOML of the right shape).
const TOP_KEYS: &[&str] = &[
    "listen",
    "reuse_port",
    "backends",
    "backend_auth",
    "limits",
    "pool",
    "sessions",
    "timeouts",
    "health",
    "admin",
    "tls",
    "http",
    "discovery",
    "kerberos",
    "groups",
    "rules",
    "user_groups",
];

/// A directory holding one small file that the config target's paths are pointed at.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hs2-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("secret");
        let _ = std::fs::write(&file, "fuzz-secret-0123456789\nsecond line\n");
        (file, dir.join("missing"))
    })
}

/// The file paths a config names are the operator's; a fuzzer must not read `/dev/zero` with them.
/// Each becomes the fixture file or a missing one (by the original's length), so both paths through
/// `validate` run.
fn redirect(path: &mut Option<PathBuf>) {
    if let Some(p) = path {
        let (file, missing) = fixture();
        *p = if p.as_os_str().len() % 2 == 0 { file.clone() } else { missing.clone() };
    }
}

fn redirect_all(f: &mut FileConfig) {
    redirect(&mut f.backend_auth.password_file);
    redirect(&mut f.admin.token_file);
    redirect(&mut f.tls.cert_file);
    redirect(&mut f.tls.key_file);
    redirect(&mut f.http.cookie_secret_file);
    for b in &mut f.backends {
        if let FileBackend::Table { upstream, .. } = b {
            redirect(&mut upstream.ca_file);
            redirect(&mut upstream.cert_file);
            redirect(&mut upstream.key_file);
        }
    }
}

/// One line, `<key>: <reason>`, and the key is one the file can hold.
fn check_error(e: &ConfigError) {
    let text = e.to_string();
    assert!(!text.contains(['\n', '\r']), "a config error of several lines: {text:?}");
    assert!(text.starts_with(&format!("{}: ", e.key)), "the error does not lead with its key: {text:?}");
    // `rules[2].address`: a table of an array names its index.
    let top = e.key.split(['.', '[']).next().unwrap_or("");
    assert!(e.key == "config" || TOP_KEYS.contains(&top), "the error names no config key: {text:?}");
    let key_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c);
    assert!(e.key.chars().all(key_char), "key {:?}", e.key);
}

/// Target `config`: a config file's text. Parsing and validating never panic; errors are one line
/// naming a key.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut file = match FileConfig::parse(text) {
        Ok(f) => f,
        Err(e) => return check_error(&e),
    };
    redirect_all(&mut file);
    if let Err(e) = file.validate() {
        check_error(&e);
    }
}

/// RFC 6265 `cookie-octet`: what a cookie value may hold without quoting.
fn cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn check_basic(value: &[u8]) {
    match parse_basic(Some(value)) {
        Ok(Some(c)) => {
            assert!(!c.user.is_empty() && !c.user.contains(':'), "user {:?}", c.user);
            let again = basic_authorization(&c.user, &c.password);
            assert_eq!(parse_basic(Some(again.as_bytes())), Ok(Some(c)), "Basic does not round-trip");
        }
        Ok(None) => panic!("a header that is there read as absent"),
        Err(why) => assert!(!why.contains(['\n', '\r']), "an error of several lines: {why:?}"),
    }
}

fn check_cookie(user: &str, noise: &[u8], offset: u64, secure: bool) {
    let signer = CookieSigner::new("impala.auth", Duration::from_secs(60), Some(b"fuzz-cookie-key-0123456789"));
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + offset);
    // Anything the input holds is unsigned: it never passes for a user.
    let forged = signer.check([noise].into_iter(), now);
    assert!(!matches!(forged, CookieCheck::Valid(_)), "an unsigned cookie passed: {forged:?}");
    let set = signer.issue(user, now, secure);
    assert!(!set.contains(['\r', '\n']), "Set-Cookie holds a line break");
    let pair = set.split(';').next().unwrap_or("");
    let value = pair.strip_prefix("impala.auth=").unwrap_or_else(|| panic!("Set-Cookie {set:?}"));
    assert!(value.bytes().all(cookie_octet), "a cookie value outside RFC 6265: {value:?}");
    let headers = [noise, pair.as_bytes()];
    assert_eq!(signer.check(headers.into_iter(), now), CookieCheck::Valid(user.to_string()));
    let later = now + Duration::from_secs(60);
    assert!(matches!(signer.check(headers.into_iter(), later), CookieCheck::Invalid(_)), "an expired cookie passed");
}

/// Target `http_auth`: control byte `[mode]`, then an `Authorization` value; for the cookie check, a user
/// name, a 0xff byte, and a `Cookie` header sent beside the proxy's cookie.
pub fn http_auth(data: &[u8]) {
    let (ctl, rest) = control::<1>(data);
    check_basic(rest);
    let (user, noise) = rest.split_at(rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len()));
    let user = String::from_utf8_lossy(user);
    check_cookie(&user, noise.get(1..).unwrap_or(&[]), u64::from(ctl[0] >> 1), ctl[0] & 1 == 1);
}
