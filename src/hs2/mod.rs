//! HiveServer2 protocol knowledge: the method table, handles, request and reply views, synthesized replies.
//! No I/O.

pub mod call;
pub mod handle;
pub mod idl;
pub mod open_session;
pub mod reply;
pub mod requests;
pub mod session_state;
