//! The checked-in Apache Thrift code (`src/hs2/generated/`) is what Debian's `thrift-compiler` makes of
//! `idl/` today: a change to the IDL without `scripts/gen-thrift.sh` fails here.
//!
//! Needs the compiler (installed by `scripts/gen-thrift.sh --install`, which scripts/test.sh runs), so it is
//! a real-peer test: ignored in plain `cargo test`; a missing compiler fails it.

use std::path::Path;
use std::process::Command;

/// The IDL files compiled into the test bed, and the file each becomes.
const COMPILED: &[(&str, &str)] = &[("idl/hs2.thrift", "hs2.rs"), ("idl/impala.thrift", "impala.rs")];
const GENERATED: &str = "src/hs2/generated";
/// The compiler whose output is checked in (its version is written into every file).
const COMPILER: &str = "Thrift version 0.17.0";

#[test]
#[ignore = "needs Debian's thrift-compiler (scripts/gen-thrift.sh --install); run by scripts/test.sh"]
fn the_generated_code_matches_the_idl() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let version = Command::new("thrift")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("no Apache Thrift compiler ({e}): run scripts/gen-thrift.sh --install"));
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), COMPILER, "run scripts/gen-thrift.sh --install");
    let out = tempfile::tempdir().unwrap();
    for (idl, rs) in COMPILED {
        let status =
            Command::new("thrift").args(["--gen", "rs", "-out"]).arg(out.path()).arg(root.join(idl)).output().unwrap();
        assert!(status.status.success(), "thrift --gen rs {idl}: {}", String::from_utf8_lossy(&status.stderr));
        let fresh = std::fs::read_to_string(out.path().join(rs)).unwrap();
        let checked_in = std::fs::read_to_string(root.join(GENERATED).join(rs)).unwrap();
        assert!(fresh == checked_in, "{GENERATED}/{rs} is stale against {idl}: run scripts/gen-thrift.sh");
    }
}

/// Without the compiler: every struct and enum of the IDL has its generated type (a file added to or
/// renamed in `idl/` without regenerating is caught by plain `cargo test`).
#[test]
fn every_idl_type_has_generated_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated: String =
        COMPILED.iter().map(|(_, rs)| std::fs::read_to_string(root.join(GENERATED).join(rs)).unwrap()).collect();
    for s in hs2_proxy::hs2::idl::STRUCTS.iter().filter(|s| s.name != "TApplicationException") {
        let declared = [format!("pub struct {} {{", s.name), format!("pub enum {} {{", s.name)];
        assert!(declared.iter().any(|d| generated.contains(d.as_str())), "no generated type for {}", s.name);
    }
    for e in hs2_proxy::hs2::idl::ENUMS.iter().filter(|e| e.name != "TApplicationExceptionType") {
        assert!(generated.contains(&format!("pub struct {}(pub i32);", e.name)), "no generated enum {}", e.name);
    }
}
