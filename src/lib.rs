//! hs2-proxy: a session-aware HiveServer2 proxy for Impala.
pub mod conn;
pub mod hs2;
pub mod sasl;
pub mod thrift;
