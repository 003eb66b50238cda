//! The binary with a configuration file that lists no backends: a configuration error (exit code 2, naming
//! `backends`), never the demo cluster, so that a service started before its backends were set says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_config_file_without_backends_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hs2-proxy.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nbackends = []\n[admin]\nlisten = \"off\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .arg("--config")
        .arg(&file)
        .env_remove("HS2_PROXY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A regression would serve the demo forever: bound the wait instead of hanging the suite.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hs2-proxy kept running with a config file that lists no backends");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("configuration error: backends: none configured in"), "{stderr}");
    assert!(out.stdout.is_empty(), "no demo banner: {}", String::from_utf8_lossy(&out.stdout));
}

/// Runs the binary with `config` and returns its exit code and stderr (it must exit on its own).
fn run_with(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hs2-proxy.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hs2-proxy"))
        .arg("--config")
        .arg(&file)
        .env_remove("HS2_PROXY_CONFIG")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Values that would crash or spin later, and Kerberos settings that cannot work, stop the start with one
/// line naming the key (issue 11 defect 4, issue 12).
#[test]
fn bad_values_exit_2_naming_the_key() {
    let base = "listen = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"off\"\n";
    for (extra, key) in [
        ("[sessions]\nreap_interval = \"0s\"\n", "sessions.reap_interval"),
        ("[health]\ninterval = \"0\"\n", "health.interval"),
        ("[pool]\nwait_timeout = \"100000d\"\n", "pool.wait_timeout"),
        ("[kerberos]\nkeytab = \"/nonexistent/hs2-proxy.keytab\"\n", "kerberos.keytab"),
        ("[backend_auth]\ntransport = \"gssapi\"\n", "backend_auth.transport"),
        ("[backend_auth]\ndelegate = true\n", "backend_auth.delegate"),
    ] {
        let (code, stderr) = run_with(&format!("{base}{extra}"));
        assert_eq!(code, Some(2), "{extra}: {stderr}");
        let line = stderr.lines().next().unwrap_or_default();
        assert!(line.starts_with(&format!("hs2-proxy: configuration error: {key}: ")), "{extra}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
