//! Kerberos: GSS-API loaded at run time, SASL GSSAPI (RFC 4752) as sans-I/O state machines, SPNEGO for
//! HTTP `Authorization: Negotiate`, and principal-to-short-name rules.
//!
//! - [`ffi`]: the C declarations, opened from `libgssapi_krb5.so.2` at run time (no build-time Kerberos).
//! - [`gss`] and [`context`]: safe credentials and security contexts over it; the only code that calls
//!   GSS-API.
//! - [`sasl_gssapi`]: the SASL GSSAPI exchange over TSasl messages, both sides. No I/O.
//! - [`spnego`]: one HTTP Negotiate token in, the principal and the reply token out.
//! - [`delegation`]: who may act for whom, and the OpenSession keys that say it. No I/O.
//! - [`principal`]: `alice@REALM` -> `alice`, by `auth_to_local`-style rules. No I/O.
//! - [`testkdc`]: a private MIT realm for tests (shells out to MIT's tools).

pub mod context;
pub mod delegation;
pub mod ffi;
pub mod gss;
pub mod principal;
pub mod sasl_gssapi;
pub mod spnego;
#[doc(hidden)]
pub mod testkdc;

pub use context::{ClientContext, ServerContext, Step};
pub use gss::{Credential, Gss, GssError};
