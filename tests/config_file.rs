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
