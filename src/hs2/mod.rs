//! HiveServer2 protocol knowledge: the method table, handles, request and reply views, synthesized replies.
//! No I/O. For the test bed only (`testbed` feature): [`generated`] (Apache Thrift's code for `idl/`) and
//! [`rpc`] (calls and replies through it).

pub mod call;
#[cfg(feature = "testbed")]
pub mod generated;
pub mod handle;
pub mod idl;
pub mod open_session;
pub mod reply;
pub mod requests;
#[cfg(feature = "testbed")]
pub mod rpc;
pub mod session_state;
