//! hs2-proxy: a session-aware HiveServer2 proxy for Impala.
pub mod backend;
pub mod balance;
pub mod config;
pub mod conn;
pub mod hs2;
pub mod routing;
pub mod sasl;
pub mod thrift;
