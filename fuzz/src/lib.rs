//! The fuzz targets' bodies and the invariants they assert, kept apart from libFuzzer so that the main
//! crate's `cargo test` replays every committed crash and corpus file through the same checks
//! (`tests/fuzz_regressions.rs` includes this file by path). No I/O except the config target's fixture
//! files.
//!
//! Every target takes raw bytes; a target that needs choices (limits, split points) reads them from a
//! few leading control bytes (see [`input`]), so that corpus files are plain bytes with a short prefix.
//! Each check panics with a message naming the broken invariant: libFuzzer records the input as a crash.

pub mod front;
pub mod input;
pub mod model;
pub mod roundtrip;
pub mod scan;
pub mod seeds;
pub mod wire;

/// A target: the name libFuzzer and the corpus directories use, and its body.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("scanner_splits", scan::scanner_splits),
    ("request_parse", scan::request_parse),
    ("error_reply", scan::error_reply),
    ("deframer", wire::deframer),
    ("sasl", wire::sasl),
    ("sniff", wire::sniff),
    ("config", front::config),
    ("http_auth", front::http_auth),
    ("value_roundtrip", roundtrip::value_roundtrip),
];
