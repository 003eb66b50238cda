//! hs2-proxy: a session-aware HiveServer2 proxy for Impala.
pub mod backend;
pub mod balance;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod demo;
pub mod hs2;
pub mod hs2client;
pub mod mock;
pub mod recover;
pub mod routing;
pub mod sasl;
pub mod server;
pub mod thrift;
