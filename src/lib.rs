//! hs2-proxy: a session-aware HiveServer2 proxy for Impala.
pub mod thrift;
