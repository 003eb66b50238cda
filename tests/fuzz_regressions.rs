//! The fuzz targets' invariants in plain `cargo test` (stable, no libFuzzer): every committed seed,
//! corpus file and crash reproducer under `fuzz/` is replayed through the same checks the fuzzers run
//! (`fuzz/src`, included here by path), and each crash the fuzzers found has a named test.
//!
//! `HS2_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_regressions` rewrites `fuzz/seeds/*/own-*` from our
//! encoder after the IDL changes; without it a drifted seed fails the run.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod hs2_fuzz;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn target(name: &str) -> hs2_fuzz::Target {
    hs2_fuzz::TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).unwrap_or_else(|| panic!("no target {name}"))
}

/// Runs `name` on every file in `dir`; returns how many ran. A failing file is named in the panic.
fn replay_dir(name: &str, dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    for path in &files {
        // A fuzzer running on this checkout may replace corpus files meanwhile.
        let Ok(bytes) = std::fs::read(path) else { continue };
        let run = std::panic::catch_unwind(|| target(name)(&bytes));
        assert!(
            run.is_ok(),
            "{name}: {} breaks an invariant (reproduce: scripts/fuzz.sh --repro {name} {})",
            path.display(),
            path.display()
        );
    }
    files.len()
}

/// Replays one committed reproducer by name: `fuzz/regressions/<target>/<file>`.
fn regression(name: &str, file: &str) {
    let path = fuzz_dir().join("regressions").join(name).join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    target(name)(&bytes);
}

#[test]
fn every_committed_fuzz_input_holds_the_invariants() {
    for (name, _) in hs2_fuzz::TARGETS {
        let mut n = 0;
        for kind in ["seeds", "corpus", "regressions"] {
            n += replay_dir(name, &fuzz_dir().join(kind).join(name));
        }
        assert!(n > 0, "{name}: no seed, corpus or regression file is committed");
    }
}

#[test]
fn our_own_seeds_match_the_encoder() {
    let write = std::env::var_os("HS2_FUZZ_WRITE_SEEDS").is_some();
    for (name, file, bytes) in hs2_fuzz::seeds::own_seeds() {
        let path = fuzz_dir().join("seeds").join(name).join(&file);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == bytes, "{} differs from the encoder: HS2_FUZZ_WRITE_SEEDS=1 rewrites it", path.display());
        target(name)(&bytes);
    }
}

/// Found by `error_reply` in its first seconds: the proxy's own `TApplicationException` for a method the
/// IDL does not know was read back without its message, because the reply scanner of an unknown method
/// captured nothing (so the relay logged a backend's exception for such a call without its text).
#[test]
fn an_unknown_methods_exception_reply_reads_back_its_message() {
    regression("error_reply", "unknown-method-exception-text");
}

/// Found by `request_parse` within seconds: a request naming the operation-handle struct twice (the
/// second without its secret) was routed by the first one's secret and the second one's guid, a handle
/// no Thrift reader sees (a reader assigns the whole struct again, so the backend reads the second).
#[test]
fn a_repeated_handle_struct_replaces_the_earlier_one() {
    regression("request_parse", "repeated-handle-struct-mixes-two-handles");
}

/// The same defect seen by `scanner_splits` in a reply: an UploadData reply repeating its operation
/// handle kept the first occurrence's secret.
#[test]
fn a_repeated_struct_drops_the_captures_of_the_earlier_one() {
    regression("scanner_splits", "repeated-struct-keeps-a-stale-capture");
}

/// Noticed while writing the `config` target (not a fuzzer crash: the target stops at `validate`): values
/// the glue cannot use must be refused at load. `sessions.reap_interval = "0s"` would make
/// `tokio::time::interval` panic in the reaper, and `health.interval = "0s"` spin the probe loop; the
/// ranges of `config/check.rs` refuse both.
#[test]
fn zero_intervals_are_refused_at_load() {
    use hs2_proxy::config::FileConfig;
    for (table, key) in [("sessions", "reap_interval"), ("health", "interval")] {
        let text = format!("[{table}]\n{key} = \"0s\"\n");
        let err = FileConfig::parse(&text).and_then(FileConfig::validate).map(|_| ()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{table}.{key}: ")), "{err}");
    }
}

/// As above: a duration too large to add to an `Instant` would make `Instant::now() + wait_timeout` panic
/// in the pool when a call has to wait; its range refuses it.
#[test]
fn durations_that_overflow_an_instant_are_refused_at_load() {
    use hs2_proxy::config::FileConfig;
    let text = "[pool]\nwait_timeout = \"18446744073709551615s\"\n";
    let err = FileConfig::parse(text).and_then(FileConfig::validate).map(|_| ()).unwrap_err().to_string();
    assert!(err.starts_with("pool.wait_timeout: "), "{err}");
}

/// Found by CI's brief run of `request_parse`: a GetInfo *reply* sent by a client as a request is
/// refused on purpose (`ProtocolError::NotACall`, since impalad would drop the connection), but the
/// target took every refusal of a whole, decodable message for a defect.
#[test]
fn a_reply_sent_as_a_request_is_refused_as_not_a_call() {
    regression("request_parse", "reply-sent-as-a-request");
}
