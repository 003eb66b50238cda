//! SASL GSSAPI (RFC 4752) over TSasl negotiation messages, as sans-I/O state machines: [`GssapiServer`]
//! (clients authenticating to the proxy, or to the mock impalad) and [`GssapiClient`] (the proxy
//! authenticating upstream). No I/O: the caller reads and writes the [`SaslMessage`]s (see `crate::sasl`).
//!
//! The exchange, after the client's `START "GSSAPI"`:
//! ```text
//! C: OK  AP-REQ                 S: OK  AP-REP            (context tokens until established)
//! C: OK  (empty)                S: OK  wrap([layers, max_buf:3])
//! C: OK|COMPLETE  wrap([layer, max_buf:3, authzid])      S: COMPLETE (empty)
//! ```
//! Java clients send the last message with COMPLETE and an empty authzid, pure-sasl (impyla) with OK and
//! authzid = their principal: both are accepted. Only the security layer "none" (QOP `auth`, what Impala
//! supports) is offered and accepted; after it, Thrift frames travel unwrapped.
//!
//! The machines are generic over [`SecurityContext`] so that they are tested with a fake; the real one is
//! `kerberos::gss`.

use super::context::{ClientContext, ServerContext, Step};
use super::gss::GssError;
use crate::thrift::framing::{SaslMessage, SaslStatus};

/// The SASL mechanism name in START.
pub const MECHANISM: &str = "GSSAPI";

/// Security layer bits of RFC 4752 section 3.3.
pub const LAYER_NONE: u8 = 0x01;
pub const LAYER_INTEGRITY: u8 = 0x02;
pub const LAYER_CONFIDENTIALITY: u8 = 0x04;

/// The largest wrapped message the server says it receives (Java's default). Unused with layer "none",
/// but Java and Cyrus servers send a non-zero value and clients expect one.
const SERVER_MAX_BUFFER: u32 = 65536;

/// One side of a GSS-API security context, as the machines need it.
pub trait SecurityContext {
    /// Processes the peer's token (empty for an initiator's first call).
    fn step(&mut self, token: &[u8]) -> Result<Step, GssError>;
    /// Integrity-protects a message (no confidentiality).
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError>;
    fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError>;
}

impl SecurityContext for ServerContext {
    fn step(&mut self, token: &[u8]) -> Result<Step, GssError> {
        ServerContext::step(self, token)
    }
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        ServerContext::wrap(self, plain)
    }
    fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        ServerContext::unwrap(self, wrapped)
    }
}

impl SecurityContext for ClientContext {
    fn step(&mut self, token: &[u8]) -> Result<Step, GssError> {
        ClientContext::step(self, token)
    }
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        ClientContext::wrap(self, plain)
    }
    fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        ClientContext::unwrap(self, wrapped)
    }
}

/// Why a GSSAPI negotiation failed. The text is what the peer is told (server side) or shown.
#[derive(Debug, thiserror::Error)]
pub enum GssapiError {
    #[error("GSSAPI: {0}")]
    Gss(#[from] GssError),
    #[error("GSSAPI negotiation: {0}")]
    Protocol(String),
    #[error(
        "GSSAPI: only SASL QOP auth (no security layer) is supported; the {side} asked for {layer} \
         (use hive.server2.thrift.sasl.qop=auth / sasl_qop auth)"
    )]
    Layer { side: &'static str, layer: &'static str },
    #[error(
        "GSSAPI: authorization id {authzid:?} is not the authenticated principal {principal:?} (to act for \
         another user, delegate with impala.doas.user)"
    )]
    Authzid { authzid: String, principal: String },
    /// The peer sent BAD or ERROR; the text is the peer's.
    #[error("authentication refused: {0}")]
    Refused(String),
}

fn protocol(text: impl Into<String>) -> GssapiError {
    GssapiError::Protocol(text.into())
}

/// What the security-layer byte asks for, for errors.
fn layer_name(bits: u8) -> &'static str {
    if bits & LAYER_CONFIDENTIALITY != 0 {
        "confidentiality (auth-conf)"
    } else if bits & LAYER_INTEGRITY != 0 {
        "integrity (auth-int)"
    } else {
        "no layer at all"
    }
}

/// A peer's BAD/ERROR becomes `Refused`; anything but OK/COMPLETE is a protocol error.
fn check_status(msg: &SaslMessage) -> Result<(), GssapiError> {
    match msg.status {
        SaslStatus::Ok | SaslStatus::Complete => Ok(()),
        SaslStatus::Bad | SaslStatus::Error => Err(GssapiError::Refused(String::from_utf8_lossy(&msg.payload).into())),
        SaslStatus::Start => Err(protocol("unexpected START")),
    }
}

/// What the server sends next.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerOutput {
    /// An OK challenge; more client messages follow.
    Send(SaslMessage),
    /// The final COMPLETE; `principal` is the authenticated client (`alice@EXAMPLE.TEST`). `ending` is how
    /// the client ended (for logs: Java and pure-sasl differ).
    Complete { reply: SaslMessage, principal: String, ending: Ending },
}

#[derive(Debug)]
enum ServerState {
    Accepting,
    /// Established with a last token sent; the client answers with an empty message.
    AwaitEmpty {
        principal: String,
    },
    /// The security-layer offer was sent.
    AwaitLayer {
        principal: String,
    },
    Finished,
}

/// How a client sent its last message: the status it used and the authzid (empty or its principal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub status: SaslStatus,
    pub authzid: String,
}

/// The server side; feed it every client message after START.
pub struct GssapiServer<C> {
    ctx: C,
    state: ServerState,
}

impl<C: SecurityContext> GssapiServer<C> {
    pub fn new(ctx: C) -> GssapiServer<C> {
        GssapiServer { ctx, state: ServerState::Accepting }
    }

    /// Takes one client message; after an error the machine is finished (send BAD with the error text).
    pub fn step(&mut self, msg: &SaslMessage) -> Result<ServerOutput, GssapiError> {
        let state = std::mem::replace(&mut self.state, ServerState::Finished);
        check_status(msg)?;
        match state {
            ServerState::Accepting => match self.ctx.step(&msg.payload)? {
                Step::Continue(token) => {
                    self.state = ServerState::Accepting;
                    Ok(ServerOutput::Send(SaslMessage::new(SaslStatus::Ok, &token)))
                }
                Step::Established { token, peer } if !token.is_empty() => {
                    self.state = ServerState::AwaitEmpty { principal: peer };
                    Ok(ServerOutput::Send(SaslMessage::new(SaslStatus::Ok, &token)))
                }
                // No last token (no mutual authentication): the offer follows at once (RFC 4752 3.1).
                Step::Established { peer, .. } => self.offer(peer),
            },
            // The client's answer to the last context token carries nothing we use.
            ServerState::AwaitEmpty { principal } => self.offer(principal),
            ServerState::AwaitLayer { principal } => self.choose(msg, principal),
            ServerState::Finished => Err(protocol("message after the negotiation finished")),
        }
    }

    fn offer(&mut self, principal: String) -> Result<ServerOutput, GssapiError> {
        let mut offer = vec![LAYER_NONE];
        offer.extend_from_slice(&SERVER_MAX_BUFFER.to_be_bytes()[1..]);
        let wrapped = self.ctx.wrap(&offer)?;
        self.state = ServerState::AwaitLayer { principal };
        Ok(ServerOutput::Send(SaslMessage::new(SaslStatus::Ok, &wrapped)))
    }

    fn choose(&mut self, msg: &SaslMessage, principal: String) -> Result<ServerOutput, GssapiError> {
        let answer = self.ctx.unwrap(&msg.payload)?;
        let (&layer, rest) = answer.split_first().ok_or_else(|| protocol("empty security-layer answer"))?;
        if rest.len() < 3 {
            return Err(protocol(format!("security-layer answer of {} bytes (at least 4 expected)", answer.len())));
        }
        if layer != LAYER_NONE {
            return Err(GssapiError::Layer { side: "client", layer: layer_name(layer & !LAYER_NONE) });
        }
        let authzid = String::from_utf8_lossy(&rest[3..]).into_owned();
        // As Hive: the authzid may repeat the principal but not name someone else.
        if !authzid.is_empty() && authzid != principal {
            return Err(GssapiError::Authzid { authzid, principal });
        }
        let ending = Ending { status: msg.status, authzid };
        Ok(ServerOutput::Complete { reply: SaslMessage::new(SaslStatus::Complete, b""), principal, ending })
    }
}

/// What the client sends next.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOutput {
    Send(SaslMessage),
    /// The server said COMPLETE: Thrift frames follow.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum ClientState {
    Initial,
    Negotiating,
    AwaitOffer,
    AwaitComplete,
    Finished,
}

/// The client side: [`GssapiClient::start`] gives the opening messages, then feed it every server message.
pub struct GssapiClient<C> {
    ctx: C,
    state: ClientState,
}

impl<C: SecurityContext> GssapiClient<C> {
    pub fn new(ctx: C) -> GssapiClient<C> {
        GssapiClient { ctx, state: ClientState::Initial }
    }

    /// `START "GSSAPI"` and the first context token, to be written together.
    pub fn start(&mut self) -> Result<[SaslMessage; 2], GssapiError> {
        if self.state != ClientState::Initial {
            return Err(protocol("start called twice"));
        }
        let (token, state) = match self.ctx.step(b"")? {
            Step::Continue(token) => (token, ClientState::Negotiating),
            Step::Established { token, .. } => (token, ClientState::AwaitOffer),
        };
        self.state = state;
        Ok([SaslMessage::new(SaslStatus::Start, MECHANISM.as_bytes()), SaslMessage::new(SaslStatus::Ok, &token)])
    }

    /// Takes one server message.
    pub fn step(&mut self, msg: &SaslMessage) -> Result<ClientOutput, GssapiError> {
        let state = std::mem::replace(&mut self.state, ClientState::Finished);
        check_status(msg)?;
        let complete = msg.status == SaslStatus::Complete;
        match state {
            ClientState::Negotiating if !complete => {
                let (token, next) = match self.ctx.step(&msg.payload)? {
                    Step::Continue(token) => (token, ClientState::Negotiating),
                    Step::Established { token, .. } => (token, ClientState::AwaitOffer),
                };
                self.state = next;
                Ok(ClientOutput::Send(SaslMessage::new(SaslStatus::Ok, &token)))
            }
            ClientState::AwaitOffer if !complete => {
                let offer = self.ctx.unwrap(&msg.payload)?;
                if offer.len() != 4 {
                    return Err(protocol(format!("security-layer offer of {} bytes (4 expected)", offer.len())));
                }
                if offer[0] & LAYER_NONE == 0 {
                    return Err(GssapiError::Layer { side: "server", layer: layer_name(offer[0]) });
                }
                // Layer none, max buffer 0 (RFC 4752: 0 without a layer), empty authzid (as Java).
                let wrapped = self.ctx.wrap(&[LAYER_NONE, 0, 0, 0])?;
                self.state = ClientState::AwaitComplete;
                // COMPLETE, as Java's client does: this side is done.
                Ok(ClientOutput::Send(SaslMessage::new(SaslStatus::Complete, &wrapped)))
            }
            ClientState::AwaitComplete if complete => Ok(ClientOutput::Done),
            ClientState::Initial => Err(protocol("step before start")),
            ClientState::Finished => Err(protocol("message after the negotiation finished")),
            other => Err(protocol(format!("unexpected {:?} while in {other:?}", msg.status))),
        }
    }
}

#[cfg(test)]
#[path = "sasl_gssapi_tests.rs"]
mod tests;
