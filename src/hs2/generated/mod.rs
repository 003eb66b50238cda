//! Apache Thrift's own code for our IDL, for the test bed (the `testbed` feature) only. No I/O.
//!
//! `hs2.rs` (from `idl/hs2.thrift`) and `impala.rs` (from `idl/impala.thrift`) are the unedited output of
//! Debian's `thrift-compiler` 0.17, written by `scripts/gen-thrift.sh` and checked in; their runtime is the
//! `thrift` crate. `tests/generated_code.rs` fails when they drift from the IDL. The IDL's
//! `namespace rs hs2.generated` is what makes `impala.rs` find `hs2.rs` here (`crate::hs2::generated::hs2`).
//!
//! The test client, the mock impalad and the load generator encode and decode with these types through
//! [`super::rpc`], so that the proxy's own scanner and value codec are checked against an independent
//! implementation. The proxy never uses them: its hot path keeps its resumable scanner.

// Generated code: the compiler's style, not ours.
#[allow(clippy::all, clippy::pedantic, dead_code, unused_imports, unused_extern_crates, non_camel_case_types)]
#[rustfmt::skip]
pub mod hs2;
#[allow(clippy::all, clippy::pedantic, dead_code, unused_imports, unused_extern_crates, non_camel_case_types)]
#[rustfmt::skip]
pub mod impala;
