//! Security contexts over GSS-API: one authentication each, stepped with the peer's tokens, then wrap and
//! unwrap. Made from a [`Credential`] (`server_context`, `client_context`); deleted on drop.

use std::ptr;

use super::ffi::{self, oid, BufferDesc};
use super::gss::{Credential, Gss, GssError, OwnedName};

/// One round of context establishment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token to the peer and wait for its answer.
    Continue(Vec<u8>),
    /// Established; `token` (maybe empty) still goes to the peer. `peer` is the other side's principal
    /// (for an acceptor the client, for an initiator the target).
    Established { token: Vec<u8>, peer: String },
}

/// A context handle with per-message calls; deleted on drop.
pub(super) struct Context {
    gss: Gss,
    raw: ffi::Ctx,
}

// SAFETY: a GSS context is not tied to the thread that made it; `&mut self` keeps its use exclusive.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            let mut minor = 0;
            // SAFETY: the handle came from the library and is deleted once.
            unsafe { (self.gss.api.delete_sec_context)(&mut minor, &mut self.raw, ptr::null_mut()) };
        }
    }
}

impl Context {
    pub(super) fn new(gss: Gss) -> Context {
        Context { gss, raw: ptr::null_mut() }
    }

    /// `gss_wrap` with integrity only (SASL's security-layer negotiation messages).
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        let mut input = BufferDesc::borrowing(plain);
        let mut out = BufferDesc::empty();
        let (mut minor, mut conf) = (0, 0);
        // SAFETY: an established context, valid buffers; the output is released by take_buffer.
        let major = unsafe {
            (self.gss.api.wrap)(&mut minor, self.raw, 0, ffi::GSS_C_QOP_DEFAULT, &mut input, &mut conf, &mut out)
        };
        let taken = self.gss.take_buffer(&mut out);
        self.gss.check("wrapping a message", major, minor)?;
        Ok(taken)
    }

    fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        let mut input = BufferDesc::borrowing(wrapped);
        let mut out = BufferDesc::empty();
        let (mut minor, mut conf, mut qop) = (0, 0, 0);
        // SAFETY: an established context, valid buffers; the output is released by take_buffer.
        let major = unsafe { (self.gss.api.unwrap)(&mut minor, self.raw, &mut input, &mut out, &mut conf, &mut qop) };
        let taken = self.gss.take_buffer(&mut out);
        self.gss.check("unwrapping a message", major, minor)?;
        Ok(taken)
    }
}

/// The acceptor side of one authentication.
pub struct ServerContext {
    cred: Credential,
    ctx: Context,
    done: bool,
}

impl ServerContext {
    pub(super) fn new(cred: Credential) -> ServerContext {
        let ctx = Context::new(cred.inner.gss.clone());
        ServerContext { cred, ctx, done: false }
    }

    /// Accepts the client's next token.
    pub fn step(&mut self, token: &[u8]) -> Result<Step, GssError> {
        if self.done {
            return Err(GssError::Invalid("the security context is already established".into()));
        }
        let gss = self.ctx.gss.clone();
        let mut input = BufferDesc::borrowing(token);
        let mut out = BufferDesc::empty();
        let mut src: ffi::Name = ptr::null_mut();
        let mut minor = 0;
        // SAFETY: valid pointers for the call; outputs (token, name) are released below.
        let major = unsafe {
            (gss.api.accept_sec_context)(
                &mut minor,
                &mut self.ctx.raw,
                self.cred.inner.raw,
                &mut input,
                ptr::null_mut(),
                &mut src,
                ptr::null_mut(),
                &mut out,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let token = gss.take_buffer(&mut out);
        let src = OwnedName { gss: gss.clone(), raw: src };
        let major = gss.check("accepting a Kerberos security context", major, minor)?;
        if major & ffi::GSS_S_CONTINUE_NEEDED != 0 {
            return Ok(Step::Continue(token));
        }
        self.done = true;
        Ok(Step::Established { token, peer: gss.display_name(src.raw)? })
    }

    pub fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        self.ctx.wrap(plain)
    }

    pub fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        self.ctx.unwrap(wrapped)
    }
}

/// Contexts move between tokio tasks (and the blocking pool); credentials are shared by many.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<ServerContext>();
    send::<ClientContext>();
    send_sync::<Credential>();
    send_sync::<Gss>();
};

/// The initiator side of one authentication.
pub struct ClientContext {
    cred: Credential,
    target: OwnedName,
    target_text: String,
    ctx: Context,
    done: bool,
}

impl ClientContext {
    pub(super) fn new(cred: Credential, target: OwnedName, target_text: &str) -> ClientContext {
        let ctx = Context::new(cred.inner.gss.clone());
        ClientContext { cred, target, target_text: target_text.to_string(), ctx, done: false }
    }

    /// The next token for the server; `server_token` is empty on the first call.
    pub fn step(&mut self, server_token: &[u8]) -> Result<Step, GssError> {
        if self.done {
            return Err(GssError::Invalid("the security context is already established".into()));
        }
        let gss = self.ctx.gss.clone();
        let mut mech = ffi::oid_desc(oid::KRB5_MECH);
        let mut input = BufferDesc::borrowing(server_token);
        // The first call takes GSS_C_NO_BUFFER.
        let input_ptr: *mut BufferDesc = if server_token.is_empty() { ptr::null_mut() } else { &mut input };
        let mut out = BufferDesc::empty();
        let mut minor = 0;
        // SAFETY: valid pointers for the call; the output token is released by take_buffer.
        let major = unsafe {
            (gss.api.init_sec_context)(
                &mut minor,
                self.cred.inner.raw,
                &mut self.ctx.raw,
                self.target.raw,
                &mut mech,
                ffi::GSS_C_MUTUAL_FLAG,
                0,
                ptr::null_mut(),
                input_ptr,
                ptr::null_mut(),
                &mut out,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let token = gss.take_buffer(&mut out);
        let what = format!("initiating a Kerberos security context with {}", self.target_text);
        let major = gss.check(&what, major, minor)?;
        if major & ffi::GSS_S_CONTINUE_NEEDED != 0 {
            return Ok(Step::Continue(token));
        }
        self.done = true;
        Ok(Step::Established { token, peer: self.target_text.clone() })
    }

    pub fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        self.ctx.wrap(plain)
    }

    pub fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        self.ctx.unwrap(wrapped)
    }
}
