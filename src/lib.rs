//! hs2-proxy: a session-aware HiveServer2 proxy for Impala.
//!
//! # Layout
//! - Pure, no I/O: [`thrift`] (scanner, value codec, framing), [`hs2`] (the method table generated
//!   from `idl/`, handles, request and reply views, synthesized replies), [`routing`] (which backend
//!   holds each handle), [`balance`] (choosing a backend), [`rules`] (groups and routing rules), [`misses`], [`fasthash`] (the routing tables' hasher), [`backend::health`] (the health
//!   state machine), [`backend::load`] (the load balancing compares, slow start's ramp), [`metrics`]
//!   (every metric name), [`config`] (file and flags to a validated config).
//! - I/O, one thing each: [`conn`] (the only Thrift socket code: read, write, relay into a reply sink),
//!   [`splice`] (a relay's large strings moved socket to socket in the kernel),
//!   [`backend`] (backends, upstream pools, connecting, probes, impalad's web port), [`sasl`],
//!   [`tls`], [`http`] (HTTP backends, the small HTTP client).
//! - The request path: [`server`] (listeners, connection limit, graceful shutdown) -> [`frontend`]
//!   (sniff, TLS, who the caller is; binary and HTTP connections) -> [`dispatch`] (one call) with
//!   [`recover`] (owners of unknown handles) and [`placement`] (where a new session goes: [`rules`],
//!   limits), over the shared [`proxy::Proxy`] handle; [`limits`] counts connections per user/address.
//! - Control plane: [`control`] (health tasks, the session reaper, reload); [`admin`] (API, status
//!   page, `/metrics`) and [`cli_admin`] (its CLI).
//! - Test bed, behind the `testbed` feature (on by default): [`mock`] (a mock impalad), [`hs2client`]
//!   (a small HS2 client), [`bench`] (the load generator), [`soak`] (the soak with faults), [`demo`]; they
//!   encode and decode with Apache Thrift's code generated from `idl/` ([`hs2::rpc`]), never with the
//!   proxy's own codec.
//!
//! # The request path
//! ```text
//! accept (server) -> sniff, TLS (frontend) -> handshake, read a request (frontend::binary | frontend::http)
//!   -> dispatch::call: route (routing) -> [recover: ask every backend, bounded] -> checkout (pool)
//!        -> exchange: write the request, relay the reply into the client's sink (conn)
//!        -> learn: new/closed sessions and operations (routing, through proxy)
//! ```
pub mod admin;
pub mod backend;
pub mod balance;
#[cfg(feature = "testbed")]
pub mod bench;
pub mod cli;
pub mod cli_admin;
pub mod config;
pub mod conn;
pub mod control;
#[cfg(feature = "testbed")]
pub mod demo;
pub mod discovery;
pub mod dispatch;
pub mod fasthash;
pub mod frontend;
pub mod hs2;
#[cfg(feature = "testbed")]
pub mod hs2client;
pub mod http;
pub mod identity;
pub mod kerberos;
pub mod limits;
pub mod logfmt;
pub mod metrics;
pub mod migrate;
pub mod misses;
#[cfg(feature = "testbed")]
pub mod mock;
pub mod placement;
pub mod proxy;
pub mod recover;
pub mod routing;
pub mod rules;
pub mod sasl;
pub mod server;
#[cfg(feature = "testbed")]
pub mod soak;
pub mod splice;
pub mod thrift;
pub mod timefmt;
pub mod tls;
